from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from medsentry.detect import Alert, output
from medsentry.report import alert_detail, alert_dicts, alert_table, render_alerts, write_alerts_json
from medsentry.store import SQLiteStore, StoredAlert

T0 = 1_764_000_000.0
ATTACKER_V6 = {"mac": "02:00:00:00:00:66", "ip": "2001:db8:1234:5678:9abc:def0:1234:5678"}
ATTACKER = {"mac": "02:00:00:00:00:67", "ip": "10.77.0.66"}
CONTRACT = {
    "id",
    "rule",
    "technique",
    "severity",
    "attacker",
    "victims",
    "first_seen",
    "last_seen",
    "evidence",
    "explanation",
}


def _alert(rule: str, attacker: dict[str, str | None], victims: int = 3, **kw: Any) -> Alert:
    fields: dict[str, Any] = {
        "technique": {
            "id": "T1557.003",
            "name": "Adversary-in-the-Middle: DHCP Spoofing",
            "matrix": "enterprise",
        },
        "severity": "critical",
        "victims": [{"mac": f"00:09:fb:72:00:{i:02x}", "ip": f"10.77.0.{100 + i}"} for i in range(victims)],
        "first_seen": T0,
        "last_seen": T0 + 90_000,
        "evidence": [
            {
                "kind": "hl7.message",
                "flow": "a->b:2575",
                "phi_fields": ["PID-5", "PID-7"],
                "first": T0,
                "last": T0,
                "count": 2,
            }
        ],
        "explanation": "patient data in clear text",
        "count": 12,
    }
    return Alert(rule=rule, attacker=dict(attacker), **(fields | kw))


def _text(renderable: RenderableType, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


@pytest.fixture
def stored(tmp_path: Path) -> list[StoredAlert]:
    with SQLiteStore(tmp_path / "r.db") as store:
        alerts = [
            _alert("abuse.hl7_unexpected_message", ATTACKER_V6),
            _alert("recon.dicom_association_scan", ATTACKER, severity="medium", last_seen=T0 + 60),
            _alert("spoof.arp", {"mac": "02:00:00:00:00:68", "ip": None}, victims=1),
        ]
        store.upsert_alerts(alerts, None)
        store.set_alert_state(alerts[0].id, "acknowledged", note="ticket [bold]42[/bold]", actor="alice")
        return [s for a in alerts if (s := store.get_alert(a.id)) is not None]


def test_narrow_table_fits_80_columns_without_cutting_ids_or_addresses(stored: list[StoredAlert]) -> None:
    text = _text(alert_table(stored, wide=False))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    for s in stored:
        assert s.id[:8] in text
        assert s.alert.attacker["mac"] in text  # whole on one line
    attacker_cells = [line.split("│")[3].strip() for line in lines if line.startswith("│")]
    assert ATTACKER_V6["ip"] in "".join(attacker_cells)  # folded over lines, never cut
    assert "10.77.0.66" in text
    assert "acked" in text and "new" in text
    assert "T1557.003" in text and "critical" in text
    # A rule too long for the column breaks after its family, not inside a word.
    rule_cells = [line.split("│")[2].strip() for line in lines if line.startswith("│")]
    assert "recon." in rule_cells and "dicom_association_scan" in rule_cells
    assert "abuse." in rule_cells and "hl7_unexpected_message" in rule_cells
    assert "spoof.arp" in rule_cells  # a short one stays on one line


def test_every_rule_name_fits_the_narrow_rule_column_after_its_family() -> None:
    from medsentry.detect.engine import RULES
    from medsentry.report.alerts import _NARROW_RULE

    assert max(len(rule.partition(".")[2]) for rule in RULES) <= _NARROW_RULE


def test_wide_table_has_a_column_each(stored: list[StoredAlert]) -> None:
    text = _text(alert_table(stored, wide=True), width=220)
    for header in (
        "ID",
        "Rule",
        "Technique",
        "Severity",
        "Attacker",
        "Victims",
        "First seen",
        "Last seen",
        "State",
    ):
        assert header in text
    assert "acknowledged" in text
    assert "2025-11-24T16:00:00Z" in text  # epoch T0, UTC
    assert "T1557.003 Adversary-in-the-Middle:" in text and "Spoofing" in text  # only the technique wraps
    row = next(line for line in text.splitlines() if stored[1].id[:8] in line)
    assert " 3 " in row and "12" in row and "medium" in row


def test_a_runs_bare_alerts_render_without_state() -> None:
    text = _text(alert_table([_alert("spoof.arp", ATTACKER)], wide=False))
    row = next(line for line in text.splitlines() if "T1557.003" in line)
    assert "│ -" in row


def test_detail_shows_evidence_explanation_and_history(stored: list[StoredAlert]) -> None:
    text = _text(alert_detail(stored[0]), width=120)
    assert stored[0].id in text
    assert "patient data in clear text" in text
    assert "phi_fields: PID-5, PID-7" in text
    assert "a->b:2575" in text and "2 time(s)" in text
    assert "Victims (3)" in text and "10.77.0.102" in text
    assert "alice" in text and "acknowledged" in text and "medsentry" in text
    assert "ticket [bold]42[/bold]" in text  # a note is text, not rich markup


def test_network_strings_cannot_inject_markup_or_control_sequences() -> None:
    alert = _alert("spoof.arp", ATTACKER, explanation="host [red]evil[/red]\x1b[2J named")
    text = _text(alert_detail(alert))
    assert "[red]evil[/red]" in text
    assert "\x1b" not in text and "\\x1b" in text


def test_json_export_is_the_contract_document(tmp_path: Path, stored: list[StoredAlert]) -> None:
    path = tmp_path / "alerts.json"
    write_alerts_json(path, stored)
    doc = json.loads(path.read_text())
    assert [a["id"] for a in doc["alerts"]] == [s.id for s in stored]
    for entry in doc["alerts"]:
        assert set(entry) >= CONTRACT
        assert isinstance(entry["first_seen"], float) and entry["first_seen"] == T0  # epoch seconds
        assert set(entry["attacker"]) == {"mac", "ip"}
    # The same document as the detector writes for a run.
    direct = tmp_path / "direct.json"
    output.write_json(direct, [s.alert for s in stored])
    assert direct.read_text() == path.read_text()


def test_text_exports_reuse_detect_output(stored: list[StoredAlert]) -> None:
    rows = list(csv.DictReader(io.StringIO(render_alerts(stored, "csv"))))
    assert [r["id"] for r in rows] == [s.id for s in stored]
    assert rows[0]["attacker_ip"] == ATTACKER_V6["ip"] and rows[0]["count"] == "12"
    lines = render_alerts(stored, "jsonl").splitlines()
    assert [json.loads(line)["state"] for line in lines] == [s.state for s in stored]
    cef = render_alerts(stored, "cef").splitlines()
    assert len(cef) == 3 and all(line.startswith("CEF:0|medsentry|") for line in cef)
    assert f"cs2={stored[1].id}" in cef[1]
    assert alert_dicts(stored)[0]["state"] == "acknowledged"
    with pytest.raises(ValueError):
        render_alerts(stored, "xml")


def test_a_summary_keeps_the_gravest_alerts_then_the_oldest() -> None:
    from medsentry.report import most_severe

    alerts = [
        _alert("a.low_old", ATTACKER, severity="low", first_seen=T0),
        _alert("a.high_new", ATTACKER, severity="high", first_seen=T0 + 20),
        _alert("a.critical", ATTACKER, severity="critical", first_seen=T0 + 30),
        _alert("a.high_old", ATTACKER, severity="high", first_seen=T0 + 10),
    ]
    assert [a.rule for a in most_severe(alerts, 3)] == ["a.critical", "a.high_old", "a.high_new"]
    assert len(most_severe(alerts, 10)) == 4


@pytest.mark.parametrize("attacker", [ATTACKER, ATTACKER_V6], ids=["ipv4", "ipv6"])
def test_the_wide_table_is_chosen_only_where_nothing_in_it_is_cut(attacker: dict[str, str | None]) -> None:
    from medsentry.report import fitting_alert_table

    alerts = [_alert("recon.dicom_aet_bruteforce", attacker), _alert("spoof.arp", attacker, severity="high")]
    widths = range(80, 260, 5)
    wide_from = next(w for w in widths if "Technique" in _text(fitting_alert_table(alerts, w), width=w))
    assert wide_from > 120  # a 120-column terminal used to get the wide table with its Rule column cut away
    for w in widths:
        text = _text(fitting_alert_table(alerts, w), width=w)
        if w >= wide_from:  # every id, rule, address and time whole on its line
            assert "recon.dicom_aet_bruteforce" in text and str(attacker["ip"]) in text
            assert "…" not in text and "2025-11-24T16:00:00Z" in text
        else:  # the narrow layout: a long rule breaks after its family
            assert "Alert " in text and "│ recon. " in text and "│ dicom_aet_bruteforce " in text
