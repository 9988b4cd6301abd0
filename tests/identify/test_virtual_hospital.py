"""Identification on the virtual-hospital captures against their labels (scripts/eval_virtual_hospital.py):
every labelled device found, class and vendor all right, model and firmware right wherever the device
puts them on the wire, and no wrong value anywhere."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from eval_virtual_hospital import Report, evaluate

CAPTURES = ("general-hospital-60s.pcap", "general-hospital-normal-60s.pcap")


@pytest.fixture(scope="module", params=CAPTURES)
def report(request: pytest.FixtureRequest, shared_data: Path) -> Report:
    capture = shared_data / "captures" / "virtual-hospital" / request.param
    if not capture.is_file():
        pytest.skip(f"{capture.name} absent")
    return evaluate(capture)


def test_every_device_found_with_class_and_vendor(report: Report) -> None:
    t = report.totals()
    assert t["devices"] >= 16
    missing = [r.name for r in report.rows if not r.found]
    assert not missing
    wrong = [(r.name, r.device.device_class if r.device else None) for r in report.rows if not r.class_ok]
    assert not wrong
    assert t["confidently_wrong_class"] == 0
    assert [r.name for r in report.rows if not r.vendor_ok] == []


def test_model_and_firmware_right_where_on_the_wire(report: Report) -> None:
    t = report.totals()
    assert t["model_on_wire"] >= 10 and t["firmware_on_wire"] >= 6  # the check itself finds them
    assert [r.name for r in report.rows if r.model_wire and not r.model_ok] == []
    assert [r.name for r in report.rows if r.firmware_wire and r.firmware != "exact"] == []
    assert t["model_wrong"] == 0 and t["firmware_wrong"] == 0


def test_routed_and_unlabelled_devices_stay_apart(report: Report) -> None:
    gateway = next(r for r in report.rows if r.label["device_class"] == "network_infrastructure")
    assert gateway.device is not None and gateway.device.ips[0] == gateway.label["ip"]
    for d in report.extra:
        assert d.device_class == "unknown"  # nothing unlabelled is given a class it cannot back
        assert d.mac is None or d.mac_randomized
    assert len(report.extra) <= 2


def test_runtime(report: Report) -> None:
    assert report.seconds < 10
