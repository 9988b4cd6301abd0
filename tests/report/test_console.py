from __future__ import annotations

import io

from rich.console import Console, RenderableType

from medsentry.identify.device import Device, Evidence, Service
from medsentry.report import device_detail, device_table, run_summary
from medsentry.store import DeviceChange, RunStats, UpsertResult

HOSTILE = "[bold red]pwn[/bold red]\x1b]0;owned\x07\x1b[2J"


def devices() -> list[Device]:
    return [
        Device(
            mac="00:09:fb:72:00:ff",
            ips=["10.77.0.111", "10.77.0.99", "10.77.0.98"],
            device_class="patient_monitor",
            vendor="Dräger",
            model="Infinity M540",
            firmware="VG2.4",
            hostname=HOSTILE,
            confidence=0.91,
            last_seen=1796069722.0,
            services=[Service("tcp", 2575, "hl7", "uses", 2)],
            identities={"hl7_sending_application": ["M540"]},
            evidence=[
                Evidence("vendor", "Dräger", "oui", "OUI 00:09:FB", 1.0, 0.3),
                Evidence("vendor", "Philips", "dhcp", "option 60 guess", 2.0, 0.1),
                Evidence("hostname", HOSTILE, "dhcp", f"option 12 {HOSTILE}", 3.0, 0.5),
                Evidence("ae_title", "M540", "dicom", "calling AE", 4.0, 0.9),
            ],
        ),
        Device(mac=None, ips=["192.168.9.9"], device_class="lab_analyzer", vendor="Siemens Healthineers"),
    ]


def render(renderable: RenderableType, terminal: bool = False) -> str:
    out = io.StringIO()
    Console(
        file=out, width=220, force_terminal=terminal, color_system="truecolor" if terminal else None
    ).print(renderable)
    return out.getvalue()


def test_table_shows_device_values() -> None:
    text = render(device_table(devices()))
    expected = (
        "00:09:fb:72:00:ff",
        "10.77.0.111 +2",
        "patient_monitor",
        "Dräger",
        "VG2.4",
        "Infinity M540",
        "0.91",
        "2026-11-30T20:15:22Z",
        "192.168.9.9",
        "lab_analyzer",
    )
    for value in expected:
        assert value in text


def test_narrow_table_keeps_keys_and_addresses_whole() -> None:
    out = io.StringIO()
    Console(file=out, width=80).print(device_table(devices(), width=80))
    text = out.getvalue()
    assert "00:09:fb:72:00:ff" in text and "10.77.0.111 +2" in text and "192.168.9.9" in text
    assert "Last seen" not in text and max(len(line) for line in text.splitlines()) <= 80
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]
    classes, made = {row[1] for row in cells}, {row[2] for row in cells}
    assert {"patient_monitor", "lab_analyzer"} <= classes  # never folded
    # vendor, model and firmware on lines of their own; words whole
    assert {"Dräger", "Infinity M540", "fw VG2.4"} <= made and "Healthineers" in " ".join(made)


def test_the_wide_table_is_chosen_only_where_no_class_or_word_is_cut() -> None:
    chosen = []
    for width in range(80, 261, 10):
        out = io.StringIO()
        Console(file=out, width=width).print(device_table(devices(), width=width))
        text = out.getvalue()
        assert max(len(line) for line in text.splitlines()) <= width
        cells = {c.strip() for line in text.splitlines() for c in line.split("│")}
        assert {"patient_monitor", "lab_analyzer", "00:09:fb:72:00:ff"} <= cells
        if "Last seen" in text:
            chosen.append(width)
            for word in ("Dräger", "Infinity", "M540", "VG2.4", "Siemens", "Healthineers"):  # lines, not cuts
                assert word in text
    assert chosen and chosen == list(range(chosen[0], 261, 10)) and chosen[0] > 80


def test_network_strings_are_neither_markup_nor_terminal_controls() -> None:
    device = devices()[0]
    for renderable in (device_table([device]), device_detail(device)):
        raw = render(renderable, terminal=True)
        assert "\x1b]0;owned" not in raw and "\x1b[2J" not in raw and "\x07" not in raw
    plain = render(device_detail(device))
    assert "[bold red]pwn[/bold red]\\x1b]0;owned\\x07\\x1b[2J" in plain


def test_detail_shows_evidence_services_identities_history() -> None:
    device = devices()[0]
    history = [
        DeviceChange(device.key, "firmware", "VG2.3", "VG2.4", 1796069000.0, 7),
        DeviceChange(device.key, "ip", None, "10.77.0.111", 1796069001.0, None),
    ]
    text = render(device_detail(device, history))
    expected = (
        "0.30 oui: OUI 00:09:FB",
        "0.10 dhcp: option 60 guess -> Philips",
        "ae_title",
        "0.90 dicom",
        "tcp/2575 hl7 (uses)",
        "hl7_sending_application",
        '["M540"]',
        "VG2.3",
        "VG2.4",
        "2026-11-30T20:03:20Z",
        "IPs 10.77.0.111",
    )
    for value in expected:
        assert value in text
    assert "History" not in render(device_detail(devices()[1]))


def test_run_summary() -> None:
    stats = RunStats(
        started=0.0,
        ended=2.5,
        packets=1_250_000,
        bytes=9 * 10**8,
        flows=4321,
        observations=777,
        malformed={"hl7": 12, "dicom": 3},
    )
    text = render(run_summary(stats, devices(), UpsertResult(new=1, updated=1, changes=4)))
    expected = (
        "1,250,000",
        "4,321",
        "2.50 s",
        "500,000",
        "patient_monitor",
        "lab_analyzer",
        "hl7",
        "12",
        "dicom",
        "15",
        "1 new, 1 updated, 4 changes",
    )
    for value in expected:
        assert value in text
    assert "Malformed" not in render(run_summary(RunStats(started=0.0, ended=0.0), []))
