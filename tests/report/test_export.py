from __future__ import annotations

import csv
import io
import json
from dataclasses import fields

from medsentry.identify.device import Device, Evidence, Service
from medsentry.report import device_from_dict, device_to_dict, evidence_summary, render_csv, render_json
from medsentry.report.export import CSV_COLUMNS
from medsentry.store import RunStats

CONTRACT_KEYS = {
    "mac",
    "ips",
    "device_class",
    "vendor",
    "model",
    "firmware",
    "label",
    "confidence",
    "evidence",
}


def sample() -> Device:
    return Device(
        mac="00:09:fb:72:00:ff",
        ips=["10.77.0.111", "10.77.0.99"],
        device_class="patient_monitor",
        vendor="Philips",
        model="IntelliVue MX450",
        firmware="L.01.14",
        hostname='=HYPERLINK("http://evil","x"), with comma\nand newline',
        label="intellivue",
        confidence=0.87,
        first_seen=1796069661.5,
        last_seen=1796069722.0,
        services=[Service("tcp", 2575, "hl7", "uses", 1)],
        identities={"hl7_sending_application": ["MX450"]},
        evidence=[
            Evidence("vendor", "Philips", "oui", "OUI 00:09:FB", 1796069661.5, 0.3),
            Evidence("vendor", "Philips", "dhcp", 'option 60 "IntelliVue"', 1796069662.0, 0.6),
            Evidence("vendor", "Draeger", "fingerprint", "ttl 64", None, 0.1),
            Evidence("model", "IntelliVue MX450", "dhcp", 'option 60 "IntelliVue"', 1796069662.0, 0.8),
            Evidence("mqtt_topics", ["a/b", "c"], "mqtt", "SUBSCRIBE", 1796069663.0, 0.2),
        ],
    )


def routed() -> Device:
    return Device(mac=None, ips=["192.168.9.9"], device_class="lab_analyzer")


def test_device_dict_has_contract_keys_and_every_field() -> None:
    data = device_to_dict(sample())
    assert data.keys() >= CONTRACT_KEYS
    assert data.keys() == {f.name for f in fields(Device)} | {"key"}
    assert data["evidence"][0] == {
        "attribute": "vendor",
        "value": "Philips",
        "protocol": "oui",
        "detail": "OUI 00:09:FB",
        "ts": 1796069661.5,
        "weight": 0.3,
        "count": 1,
    }
    assert data["key"] == "00:09:fb:72:00:ff" and device_to_dict(routed())["key"] == "192.168.9.9"


def test_device_dict_round_trips_through_json() -> None:
    for device in (sample(), routed()):
        text = json.dumps(device_to_dict(device))  # JSON-able without any default=
        assert device_from_dict(json.loads(text)) == device
    assert device_from_dict({"mac": "aa:bb:cc:dd:ee:ff", "future_field": 1}) == Device(
        mac="aa:bb:cc:dd:ee:ff"
    )


def test_json_document_shape() -> None:
    stats = RunStats(started=10.0, ended=14.0, packets=1000, flows=12, malformed={"hl7": 3, "dicom": 1})
    document = json.loads(render_json([sample(), routed()], stats, ["ward.pcap"]))
    assert document.keys() == {"devices", "stats"}
    assert [d["key"] for d in document["devices"]] == ["00:09:fb:72:00:ff", "192.168.9.9"]
    assert all(d.keys() >= CONTRACT_KEYS for d in document["devices"])
    s = document["stats"]
    assert (s["packets"], s["flows"], s["malformed"], s["malformed_by_protocol"]) == (
        1000,
        12,
        4,
        {"hl7": 3, "dicom": 1},
    )
    assert (s["elapsed"], s["packets_per_s"], s["inputs"]) == (4.0, 250.0, ["ward.pcap"])
    assert json.loads(render_json([]))["stats"] == {}
    detailed = json.loads(render_json([], stats, details={"fragments": 2, "packets": -1}))["stats"]
    assert (detailed["fragments"], detailed["packets"]) == (2, 1000)  # details never override the contract


def test_json_document_devices_are_device_to_dict() -> None:
    """The document is written straight from the dataclasses; it must say what `device_to_dict` says,
    also for evidence values JSON has no type for (a set, a tuple, non-string keys)."""
    odd = sample()
    odd.evidence.append(Evidence("ports", {2575, 104}, "flow", "seen", None, 0.1))
    odd.identities["by_port"] = {104: ("STORESCP",)}
    devices = [odd, routed()]
    document = json.loads(render_json(devices))
    assert document["devices"] == json.loads(json.dumps([device_to_dict(d) for d in devices], default=str))
    assert render_json(devices).startswith('{\n  "devices": [\n    {\n      "key"')  # indented for people


def test_csv_one_row_per_device() -> None:
    text = render_csv([sample(), routed()])
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    first, second = list(reader)
    assert first["key"] == "00:09:fb:72:00:ff" and first["ips"] == "10.77.0.111 10.77.0.99"
    assert (first["vendor"], first["model"], first["confidence"]) == ("Philips", "IntelliVue MX450", "0.87")
    assert first["first_seen"] == "2026-11-30T20:14:21Z"
    assert first["services"] == "tcp/2575 hl7 (uses)"
    assert json.loads(first["identities"]) == {"hl7_sending_application": ["MX450"]}
    # Quoting keeps commas and newlines in one cell; a leading "=" can no longer run as a formula.
    assert first["hostname"] == "'" + sample().hostname
    assert second["mac"] == "" and second["key"] == "192.168.9.9" and second["evidence"] == ""


def test_evidence_summary_groups_protocols_per_value() -> None:
    assert evidence_summary(sample()) == (
        'model=IntelliVue MX450 (dhcp); mqtt_topics=["a/b","c"] (mqtt); '
        "vendor=Philips (dhcp, oui); vendor=Draeger (fingerprint)"
    )
