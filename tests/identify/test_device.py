"""The device record's hand-written constructors keep what the dataclass's generated ones gave."""

from __future__ import annotations

import dataclasses

from medsentry.identify.device import Device, Evidence, Service


def test_a_device_s_lists_and_dicts_are_its_own() -> None:
    a, b = Device(mac="00:09:fb:00:00:01"), Device(mac="00:09:fb:00:00:02")
    a.ips.append("10.0.0.1")
    a.services.append(Service("tcp", 104, "dicom", "offers"))
    a.identities["dicom_ae"] = ["CT1"]
    a.evidence.append(Evidence("vendor", "Philips", "oui", "IEEE MA-L", None, 0.6))
    assert (b.ips, b.services, b.identities, b.evidence) == ([], [], {}, [])
    assert (b.device_class, b.confidence, b.mac_randomized) == ("unknown", 0.0, False)


def test_every_field_is_a_keyword_and_replace_copies_them() -> None:
    values = {
        "mac": "00:09:fb:00:00:01", "ips": ["10.0.0.1"], "device_class": "patient_monitor",
        "vendor": "Philips", "model": "IntelliVue MX450", "firmware": "L.01", "os": "Linux",
        "hostname": "mon1", "label": "monitor", "confidence": 0.9, "first_seen": 1.0, "last_seen": 2.0,
        "mac_randomized": True, "services": [Service("tcp", 2575, "hl7", "uses", peers=1)],
        "identities": {"hl7_app": ["MX450"]},
        "evidence": [Evidence("model", "IntelliVue MX450", "hl7", "MSH-3", 1.0, 0.9, count=3)],
    }  # fmt: skip
    device = Device(**values)
    assert {f.name for f in dataclasses.fields(Device)} == set(values)
    assert {f.name: getattr(device, f.name) for f in dataclasses.fields(Device)} == values
    moved = dataclasses.replace(device, ips=["10.0.0.2"])
    assert moved.ips == ["10.0.0.2"] and moved.model == device.model and moved != device
    assert dataclasses.replace(moved, ips=["10.0.0.1"]) == device
    assert Service("udp", 53, None, "offers").peers == 0
