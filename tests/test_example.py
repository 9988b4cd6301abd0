"""The bundled example capture, end to end through the installed `medsentry` command: every device the
testbed labelled is found with its labelled class and vendor, and every packet is counted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from medsentry.identify.oui import normalize_vendor
from tests import pcaputil

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PCAP = EXAMPLES / "hospital-ward.pcap"
LABELS = [json.loads(line) for line in (EXAMPLES / "hospital-ward.pcap.labels.jsonl").open()]
DEVICES = [r for r in LABELS if r["type"] == "device"]


def _medsentry() -> list[str]:
    # The console script is what users run; without an installed script, call its target directly.
    script = Path(sys.executable).with_name("medsentry")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from medsentry.cli.entry import main; main()"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("example")
    out = tmp / "out.json"
    # --db keeps the run away from the user's inventory.
    cmd = [*_medsentry(), "analyze", str(PCAP), "--json", str(out), "--db", str(tmp / "inv.db"), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_labels_cover_the_whole_ward() -> None:
    # Guards the example itself: a re-generated capture must keep devices of every kind and the attacks.
    classes = {d["device_class"] for d in DEVICES}
    assert len(DEVICES) == 17
    assert {"imaging_modality", "patient_monitor", "infusion_pump", "pacs", "lab_analyzer"} <= classes
    assert sum(r["type"] == "attack" for r in LABELS) == 8


def test_every_packet_is_counted(report: dict[str, Any]) -> None:
    assert report["stats"]["packets"] == sum(1 for _ in pcaputil.frames(PCAP))


@pytest.mark.parametrize("label", DEVICES, ids=[d["name"] for d in DEVICES])
def test_labelled_device_identified(report: dict[str, Any], label: dict[str, Any]) -> None:
    found = [d for d in report["devices"] if d["mac"] == label["mac"]]
    assert len(found) == 1, f"{label['name']} ({label['mac']}) reported {len(found)} times"
    device = found[0]
    assert label["ip"] in device["ips"]
    assert device["device_class"] == label["device_class"]
    assert normalize_vendor(device["vendor"]) == normalize_vendor(label["vendor"])
