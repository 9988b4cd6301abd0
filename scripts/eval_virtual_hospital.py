"""Identification accuracy on the virtual-hospital captures (../shared/data/captures/virtual-hospital).

Runs the packet pipeline and the `Identifier` on each capture and compares the devices with the
capture's `*.labels.jsonl` (type=device rows). Per labelled device: found (a device record with its MAC),
class, vendor (normalised by `oui.normalize_vendor`), model and firmware.

Model and firmware only count where they are on the wire: the labels describe the real product
("PowerEdge R650", "RHEL 8.8") even where nothing the device sends names it. A label value is on the
wire when one of its distinctive tokens (a product token: containing a digit, or five letters or more
and not a generic word; for firmware a version token) appears in a text field of what the device sent.
A model is right when our tokens are all in the label's (ours may omit a word, as the device itself
does: "Color LaserJet MFP M479fdw" for "Color LaserJet Pro MFP M479fdw"); a firmware is right when
equal (after dropping punctuation and case), "prefix" when ours is a leading run of the label's version
components (the device announced only those: "L.01" of "L.01.14"); a prefix is not counted as right.

    .venv/bin/python scripts/eval_virtual_hospital.py [capture.pcap ...]
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsentry.identify.device import Device
from medsentry.identify.inventory import Identifier
from medsentry.identify.oui import normalize_vendor
from medsentry.observe import Observation
from medsentry.pipeline import analyze_files

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "captures" / "virtual-hospital"

# Words of label descriptions that name no product.
_GENERIC = frozenset(
    [
        "system",
        "systems",
        "infusion",
        "analyzer",
        "sensor",
        "gateway",
        "archive",
        "server",
        "laptop",
        "workstation",
        "engine",
        "interface",
        "radiology",
        "broker",
        "linux",
        "enterprise",
        "windows",
    ]
)
_TOKEN = re.compile(r"[a-z0-9]+")
_HEXLIKE = re.compile(r"^[0-9a-f:.\-]{16,}$", re.IGNORECASE)
_MAX_TEXTS = 4000  # distinct strings kept per sender


def _squash(text: str) -> str:
    return "".join(_TOKEN.findall(text.lower()))


def _core(label: str) -> str:
    """The product part of a label value: what precedes a parenthesised note."""
    return label.split(" (", 1)[0].strip()


def _product_tokens(value: str) -> list[str]:
    return [
        t
        for t in _TOKEN.findall(_core(value).lower())
        if (any(c.isdigit() for c in t) and len(t) >= 3) or (len(t) >= 5 and t not in _GENERIC)
    ]


def _version_tokens(value: str) -> list[str]:
    """Version-like parts of a firmware label ("24.1.0", "XA50", "002_2306A"), squashed."""
    out = []
    for part in re.split(r"[\s/]+", _core(value)):
        s = _squash(part)
        if any(c.isdigit() for c in s) and len(s) >= 3:
            out.append(s)
    return out


@dataclass
class Wire:
    """Text fields each sender put on the wire, for the "on the wire" test."""

    texts: dict[str, set[str]] = field(default_factory=dict)

    def add(self, obs: Observation) -> None:
        keys = {k for k in (obs.src_mac, obs.src_ip, obs.fields.get("client_mac")) if isinstance(k, str)}
        strings = set()
        _strings(obs.fields, strings)
        for key in keys:
            bucket = self.texts.setdefault(key, set())
            if len(bucket) < _MAX_TEXTS:
                bucket |= strings

    def of(self, mac: str | None, ip: str | None) -> set[str]:
        return self.texts.get(mac or "", set()) | self.texts.get(ip or "", set())


def _strings(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        if any(c.isalpha() for c in value) and not _HEXLIKE.match(value):
            out.add(value.lower())
    elif isinstance(value, dict):
        for k, v in value.items():
            if not any(x in k for x in ("hash", "ja3", "ja4", "sha", "serial", "uid", "control_id")):
                _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def model_on_wire(label: str, texts: set[str]) -> bool:
    words = {w for t in texts for w in _TOKEN.findall(t)}
    # a product token may be glued to the next word on the wire ("SpectrumIQ")
    return any(any(w.startswith(t) for w in words) for t in _product_tokens(label))


def firmware_on_wire(label: str, texts: set[str]) -> bool:
    squashed = [_squash(t) for t in texts]
    return any(any(v in s for s in squashed) for v in _version_tokens(label))


def model_right(ours: str | None, label: str) -> bool:
    if not ours:
        return False
    a, b = _TOKEN.findall(ours.lower()), _TOKEN.findall(_core(label).lower())
    return _squash(ours) in _squash(_core(label)) or (bool(a) and set(a) <= set(b))


def firmware_match(ours: str | None, label: str) -> str:
    """ "exact", "prefix" (ours is a leading run of the label's version components: the device announced
    only those, "10.12" of "AXIS OS 10.12.182") or ""."""
    if not ours:
        return ""
    if _squash(ours) == _squash(label):
        return "exact"
    comps_o = [c for c in re.split(r"[.\s_/-]+", ours.lower()) if c]
    comps_l = [c for c in re.split(r"[.\s_/-]+", label.lower()) if c]
    for i in range(len(comps_l) - len(comps_o)):
        if comps_l[i : i + len(comps_o)] == comps_o:
            return "prefix"
    return ""


@dataclass
class Row:
    name: str
    label: dict[str, Any]
    device: Device | None
    found: bool = False
    class_ok: bool = False
    vendor_ok: bool = False
    model_wire: bool = False
    model_ok: bool = False
    firmware_wire: bool = False
    firmware: str = ""  # "exact" | "prefix" | ""


@dataclass
class Report:
    capture: str
    rows: list[Row]
    extra: list[Device]
    seconds: float
    observations: int

    def totals(self) -> dict[str, Any]:
        rows = self.rows
        return {
            "devices": len(rows),
            "found": sum(r.found for r in rows),
            "class": sum(r.class_ok for r in rows),
            "confidently_wrong_class": sum(
                r.found and not r.class_ok and r.device is not None and r.device.device_class != "unknown"
                for r in rows
            ),
            "vendor": sum(r.vendor_ok for r in rows),
            "model_on_wire": sum(r.model_wire for r in rows),
            "model_right_on_wire": sum(r.model_wire and r.model_ok for r in rows),
            "model_right_off_wire": sum(not r.model_wire and r.model_ok for r in rows),
            "firmware_on_wire": sum(r.firmware_wire for r in rows),
            "firmware_right_on_wire": sum(r.firmware_wire and r.firmware == "exact" for r in rows),
            "firmware_prefix": sum(r.firmware == "prefix" for r in rows),
            "firmware_wrong": sum(
                r.device is not None and bool(r.device.firmware) and not r.firmware for r in rows
            ),
            "model_wrong": sum(
                r.device is not None and bool(r.device.model) and not r.model_ok for r in rows
            ),
            "extra_devices": len(self.extra),
        }


def evaluate(capture: Path) -> Report:
    labels = [json.loads(line) for line in Path(f"{capture}.labels.jsonl").read_text().splitlines() if line]
    wanted = [d for d in labels if d.get("type") == "device"]
    ident, wire = Identifier(), Wire()

    def emit(obs: Observation) -> None:
        ident.add(obs)
        wire.add(obs)

    started = time.perf_counter()
    analyze_files([capture], emit)
    devices = ident.devices()
    seconds = time.perf_counter() - started
    by_mac = {d.mac: d for d in devices if d.mac}
    rows, matched = [], set()
    for lab in wanted:
        d = by_mac.get(lab["mac"].lower())
        row = Row(lab["name"], lab, d)
        texts = wire.of(lab["mac"].lower(), lab.get("ip"))
        row.model_wire = bool(lab.get("model")) and model_on_wire(lab["model"], texts)
        row.firmware_wire = bool(lab.get("firmware")) and firmware_on_wire(lab["firmware"], texts)
        if d is not None:
            matched.add(d.key)
            row.found = not lab.get("ip") or lab["ip"] in d.ips
            row.class_ok = d.device_class == lab["device_class"]
            row.vendor_ok = normalize_vendor(d.vendor) == normalize_vendor(lab.get("vendor"))
            row.model_ok = model_right(d.model, lab.get("model") or "")
            row.firmware = firmware_match(d.firmware, lab.get("firmware") or "")
        rows.append(row)
    extra = [d for d in devices if d.key not in matched]
    return Report(capture.name, rows, extra, seconds, ident.observations)


def _cell(ok: bool, ours: Any, wire: bool | None = None) -> str:
    mark = "ok" if ok else ("--" if ours in (None, "", "unknown") else "XX")
    where = "" if wire is None else (" w" if wire else "  ")
    return f"{mark}{where} {ours or '-'}"


def print_report(rep: Report) -> None:
    print(f"\n== {rep.capture}: {rep.observations} observations, {rep.seconds:.1f} s")
    head = f"{'device':9} {'class':34} {'vendor':32} {'model (w = on the wire)':42} firmware / label"
    print(head)
    for r in rep.rows:
        d = r.device
        if d is None:
            print(f"{r.name:9} NOT FOUND ({r.label['mac']})")
            continue
        fw_mark = {"exact": "ok", "prefix": "~ "}.get(r.firmware, "--" if not d.firmware else "XX")
        print(
            f"{r.name:9} {_cell(r.class_ok, d.device_class)[:33]:34} {_cell(r.vendor_ok, d.vendor)[:31]:32} "
            f"{_cell(r.model_ok, d.model, r.model_wire)[:41]:42} "
            f"{fw_mark}{' w' if r.firmware_wire else '  '} {d.firmware or '-'} / {r.label.get('firmware')}"
        )
    for d in rep.extra:
        print(
            f"  extra: {d.key} {d.ips[:2]} {d.device_class} vendor={d.vendor} randomized={d.mac_randomized}"
        )
    print("totals:", json.dumps(rep.totals()))


def main(argv: list[str]) -> int:
    captures = [Path(a) for a in argv] or sorted(DATA.glob("*.pcap"))
    if not captures:
        print(f"no captures in {DATA}", file=sys.stderr)
        return 2
    for cap in captures:
        print_report(evaluate(cap))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
