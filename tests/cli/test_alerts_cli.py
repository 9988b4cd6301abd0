"""`analyze --alerts` and `medsentry alerts`: the contract, stored state, export to a real syslog listener."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from medsentry.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospital-ward.pcap"
ALERT_KEYS = {
    "id", "rule", "technique", "severity", "attacker", "victims", "first_seen", "last_seen", "evidence",
    "explanation",
}  # fmt: skip


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("alerts")
    db, out = folder / "inv.db", folder / "alerts.json"
    result = run("analyze", EXAMPLE, "--alerts", out, "--db", db, "-q")
    assert result.exit_code == 0, result.output
    return db, json.loads(out.read_text())


def labelled_attacker() -> dict:
    labels = [json.loads(line) for line in EXAMPLE.with_name(EXAMPLE.name + ".labels.jsonl").open()]
    return next(row for row in labels if row["type"] == "device" and row.get("attacker"))


def test_analyze_alerts_contract(analysed: tuple[Path, dict]) -> None:
    _, document = analysed
    alerts = document["alerts"]
    assert alerts and all(a.keys() >= ALERT_KEYS for a in alerts)
    assert all(isinstance(a["first_seen"], float | int) and a["first_seen"] <= a["last_seen"] for a in alerts)
    attacker = labelled_attacker()
    by_attacker = {a["rule"] for a in alerts if a["attacker"]["mac"] == attacker["mac"]}
    assert {"recon.port_scan", "abuse.mqtt_wildcard"} <= by_attacker


def test_stored_alerts_listed_acknowledged_and_closed(analysed: tuple[Path, dict]) -> None:
    db, document = analysed
    listed = json.loads(run("alerts", "--json", "-", "--db", db).stdout)["alerts"]
    assert sorted(a["id"] for a in listed) == sorted(a["id"] for a in document["alerts"])
    first = document["alerts"][0]["id"]
    assert run("alerts", "--db", db, "ack", first[:8], "--note", "seen").exit_code == 0
    acknowledged = json.loads(run("alerts", "--state", "acknowledged", "--json", "-", "--db", db).stdout)
    assert [a["id"] for a in acknowledged["alerts"]] == [first]
    assert run("alerts", "--db", db, "close", first).exit_code == 0
    shown = run("alerts", "--db", db, "show", first)
    assert shown.exit_code == 0 and "seen" in shown.output and "closed" in shown.output
    assert run("alerts", "--db", db, "show", "ffffffffffff").exit_code == 1


def test_alerts_to_a_real_syslog_listener(analysed: tuple[Path, dict]) -> None:
    db, _ = analysed
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]
        result = run("alerts", "--rule", "recon", "--syslog", f"127.0.0.1:{port}", "--db", db)
        assert result.exit_code == 0
        message = listener.recv(65535).decode()
    assert "CEF:0|" in message and "recon." in message


def test_no_detect_with_alerts_is_a_usage_error(tmp_path: Path) -> None:
    assert run("analyze", EXAMPLE, "--no-detect", "--alerts", tmp_path / "a.json").exit_code == 2


def test_accept_as_normal_silences_that_alert_in_later_runs(tmp_path: Path) -> None:
    db, out = tmp_path / "inv.db", tmp_path / "alerts.json"
    assert run("analyze", EXAMPLE, "--alerts", out, "--db", db, "-q").exit_code == 0
    first = json.loads(out.read_text())["alerts"]
    wildcard = next(a for a in first if a["rule"] == "abuse.mqtt_wildcard")
    assert run("alerts", "--db", db, "accept", wildcard["id"], "--note", "our bridge").exit_code == 0
    assert "abuse.mqtt_wildcard" in (tmp_path / "accepted.yaml").read_text()
    closed = json.loads(run("alerts", "--state", "closed", "--json", "-", "--db", db).stdout)["alerts"]
    assert [a["id"] for a in closed] == [wildcard["id"]]
    assert run("analyze", EXAMPLE, "--alerts", out, "--db", db, "-q").exit_code == 0
    again = {(a["rule"], a["attacker"]["ip"]) for a in json.loads(out.read_text())["alerts"]}
    assert ("abuse.mqtt_wildcard", wildcard["attacker"]["ip"]) not in again
    assert len(again) >= len(first) - 2  # everything else is still raised
