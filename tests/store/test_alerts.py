from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medsentry.detect import Alert, detect_files
from medsentry.store import AlertFilter, RunStats, SQLiteStore, StoreError
from medsentry.store.sqlite import ALERT_EVIDENCE, load_migrations, migrate

T0 = 1_764_000_000.0  # a bucket boundary of the default 3600 s id bucket
SCANNER = {"mac": "02:00:00:00:00:66", "ip": "10.77.0.66"}
MONITOR = {"mac": "00:09:fb:72:00:ff", "ip": "10.77.0.111"}
PACS = {"mac": "00:1b:21:aa:bb:cc", "ip": "10.77.0.20"}
HL7_PCAP = Path("captures/ndpi/cfgs/default/pcap/hl7.pcap")
PATIENT_VALUES = (b"MICKEY", b"MINNIE", b"135769", b"19281118")


def _alert(
    rule: str = "recon.port_scan",
    first: float = T0 + 10,
    last: float = T0 + 20,
    count: int = 5,
    attacker: dict[str, str | None] | None = None,
    victims: list[dict[str, Any]] | None = None,
    severity: str = "medium",
    evidence: list[dict[str, Any]] | None = None,
) -> Alert:
    return Alert(
        rule=rule,
        technique={"id": "T1046", "name": "Network Service Discovery", "matrix": "enterprise"},
        severity=severity,
        attacker=dict(attacker or SCANNER),
        victims=[dict(v) for v in (victims if victims is not None else [MONITOR])],
        first_seen=first,
        last_seen=last,
        evidence=evidence
        if evidence is not None
        else [
            {"kind": "tcp.syn", "flow": "a", "ports": ["22"], "first": first, "last": last, "count": count}
        ],
        explanation=f"{count} probes",
        count=count,
    )


def _run(store: SQLiteStore) -> int:
    now = time.time()
    return store.record_run(RunStats(started=now, ended=now), ["test.pcap"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "alerts.db")
    yield s
    s.close()


def test_stored_alert_reads_back_as_it_was(store: SQLiteStore) -> None:
    alert = _alert()
    run = _run(store)
    result = store.upsert_alerts([alert], run)
    assert (result.new, result.updated, result.reopened) == (1, 0, 0)
    stored = store.get_alert(alert.id)
    assert stored is not None
    assert stored.alert.to_dict() == alert.to_dict()  # the id is recomputed from the stored fields
    assert (stored.state, stored.first_run, stored.last_run) == ("new", run, run)
    assert stored.to_dict()["state"] == "new"
    [created] = stored.history
    assert (created.old_state, created.new_state, created.actor, created.run_id) == (
        None,
        "new",
        "medsentry",
        run,
    )


def test_repeat_in_a_later_run_extends_and_adds(store: SQLiteStore) -> None:
    store.upsert_alerts([_alert(count=5)], _run(store))
    later = _alert(first=T0 + 100, last=T0 + 200, count=3)
    later.evidence = [
        {"kind": "tcp.syn", "flow": "a", "ports": ["80"], "first": T0 + 100, "last": T0 + 200, "count": 3},
        {"kind": "tcp.syn", "flow": "b", "ports": ["443"], "first": T0 + 150, "last": T0 + 150, "count": 1},
    ]
    assert later.id == _alert().id  # same rule, attacker, victims and first-seen hour
    run2 = _run(store)
    result = store.upsert_alerts([later], run2)
    assert (result.new, result.updated) == (0, 1)
    stored = store.get_alert(later.id)
    assert stored is not None
    a = stored.alert
    assert (a.first_seen, a.last_seen, a.count) == (T0 + 10, T0 + 200, 8)
    assert stored.last_run == run2 and stored.first_run != run2
    flow_a = next(e for e in a.evidence if e["flow"] == "a")
    assert flow_a["count"] == 8 and flow_a["ports"] == ["22", "80"]
    assert (flow_a["first"], flow_a["last"]) == (T0 + 10, T0 + 200)
    assert {e["flow"] for e in a.evidence} == {"a", "b"}
    assert a.explanation == "3 probes"  # the latest wording


def test_the_same_capture_again_is_not_counted_twice(store: SQLiteStore) -> None:
    store.upsert_alerts([_alert(count=5)], _run(store))
    store.upsert_alerts([_alert(count=5)], _run(store))
    stored = store.get_alert(_alert().id)
    assert stored is not None and stored.alert.count == 5
    assert stored.alert.evidence[0]["count"] == 5


def test_a_run_saving_its_growing_alert_again_replaces_its_own_count(store: SQLiteStore) -> None:
    store.upsert_alerts([_alert(count=5)], _run(store))
    live = _run(store)
    store.upsert_alerts([_alert(first=T0 + 10, last=T0 + 300, count=2)], live)
    store.upsert_alerts([_alert(first=T0 + 10, last=T0 + 400, count=7)], live)  # cumulative within the run
    stored = store.get_alert(_alert().id)
    assert stored is not None
    assert stored.alert.count == 5 + 7
    assert stored.alert.last_seen == T0 + 400


def test_closed_alert_that_fires_again_is_new_with_a_history_row(store: SQLiteStore) -> None:
    alert = _alert()
    store.upsert_alerts([alert], _run(store))
    assert store.set_alert_state(alert.id, "closed", note="maintenance scan", actor="alice") is not None
    # Nothing new: the same traffic again leaves it closed.
    assert store.upsert_alerts([_alert()], _run(store)).reopened == 0
    assert store.get_alert(alert.id).state == "closed"  # type: ignore[union-attr]

    run = _run(store)
    result = store.upsert_alerts([_alert(last=T0 + 900)], run)
    assert (result.updated, result.reopened) == (1, 1)
    stored = store.get_alert(alert.id)
    assert stored is not None and stored.state == "new"
    steps = [(c.old_state, c.new_state, c.actor) for c in stored.history]
    assert steps == [(None, "new", "medsentry"), ("new", "closed", "alice"), ("closed", "new", "medsentry")]
    assert stored.history[1].note == "maintenance scan"
    assert stored.history[2].run_id == run and str(run) in (stored.history[2].note or "")


def test_acknowledged_alert_stays_acknowledged_but_is_updated(store: SQLiteStore) -> None:
    store.upsert_alerts([_alert(count=5)], _run(store))
    store.set_alert_state(_alert().id, "acknowledged", actor="bob")
    result = store.upsert_alerts([_alert(last=T0 + 999, count=4)], _run(store))
    assert result.reopened == 0
    stored = store.get_alert(_alert().id)
    assert stored is not None
    assert (stored.state, stored.alert.last_seen, stored.alert.count) == ("acknowledged", T0 + 999, 9)
    assert [c.new_state for c in stored.history] == ["new", "acknowledged"]


def test_state_changes_record_who_when_and_why(store: SQLiteStore) -> None:
    alert = _alert()
    store.upsert_alerts([alert], None)
    before = time.time()
    stored = store.set_alert_state(alert.id[:6], "acknowledged", note="ticket 4711", actor="carol")
    assert stored is not None and stored.state == "acknowledged" and stored.state_changed >= before
    change = stored.history[-1]
    assert (change.alert_id, change.actor, change.note, change.run_id) == (
        alert.id,
        "carol",
        "ticket 4711",
        None,
    )
    assert change.ts >= before
    # Without an actor the OS user is recorded.
    closed = store.set_alert_state(alert.id, "closed")
    assert closed is not None and closed.history[-1].actor not in ("", "carol")
    # The same state again without a note is no change.
    assert len(store.set_alert_state(alert.id, "closed").history) == len(closed.history)  # type: ignore[union-attr]
    assert store.set_alert_state("ffffffffffffffff", "closed") is None
    with pytest.raises(ValueError):
        store.set_alert_state(alert.id, "resolved")


def test_short_id_lookup_refuses_an_ambiguous_prefix(store: SQLiteStore) -> None:
    alerts = [_alert(attacker={"mac": None, "ip": f"10.77.1.{i}"}) for i in range(40)]
    store.upsert_alerts(alerts, None)
    ids = [a.id for a in alerts]
    first_chars = {i[0] for i in ids}
    shared = next(c for c in first_chars if sum(i.startswith(c) for i in ids) > 1)
    with pytest.raises(StoreError, match="ambiguous"):
        store.get_alert(shared)
    found = store.get_alert(ids[7][:12])
    assert found is not None and found.id == ids[7]
    assert store.get_alert("") is None
    assert store.get_alert("%") is None  # LIKE wildcards are escaped, not matched


def test_list_filters(store: SQLiteStore) -> None:
    scan = _alert()
    brute = _alert(rule="recon.login_bruteforce", severity="high", last=T0 + 500)
    arp = _alert(rule="spoof.arp", severity="critical", attacker=PACS, victims=[SCANNER], first=T0 + 4000)
    arp.last_seen = T0 + 4100
    store.upsert_alerts([scan, brute, arp], None)
    store.set_alert_state(brute.id, "closed")

    def ids(**kw: Any) -> list[str]:
        return [s.id for s in store.list_alerts(AlertFilter(**kw))]

    assert ids() == [arp.id, brute.id, scan.id]  # most recently seen first
    assert ids(state="closed") == [brute.id]
    assert ids(state="new") == [arp.id, scan.id]
    assert sorted(ids(rule="recon")) == sorted([scan.id, brute.id])
    assert ids(rule="recon.port_scan") == [scan.id]
    assert ids(rule="recon.port") == []  # a family is a whole dotted prefix
    assert ids(severity="high") == [arp.id, brute.id]
    assert ids(since=T0 + 400) == [arp.id, brute.id]
    assert ids(device=MONITOR["mac"].upper()) == [brute.id, scan.id]  # as a victim, typed in capitals
    assert ids(device=PACS["ip"]) == [arp.id]  # as the attacker
    assert ids(device=SCANNER["ip"], severity="critical") == [arp.id]
    with pytest.raises(ValueError):
        store.list_alerts(AlertFilter(severity="urgent"))


def test_filter_values_travel_as_parameters(store: SQLiteStore) -> None:
    store.upsert_alerts([_alert()], None)
    hostile = "x' OR '1'='1"
    assert store.list_alerts(AlertFilter(rule=hostile)) == []
    assert store.list_alerts(AlertFilter(device="'; DROP TABLE alerts; --")) == []
    assert len(store.list_alerts()) == 1


def test_evidence_stays_bounded_across_runs(store: SQLiteStore) -> None:
    for run in range(3):
        base = T0 + 10 + run * 100
        evidence = [
            {"kind": "tcp.syn", "flow": f"{run}-{i}", "first": base, "last": base, "count": 1}
            for i in range(20)
        ]
        alert = _alert(first=T0 + 10, last=base, evidence=evidence)
        store.upsert_alerts([alert], _run(store))
    stored = store.get_alert(_alert().id)
    assert stored is not None
    kept = [e for e in stored.alert.evidence if e["kind"] != "truncated"]
    [truncated] = [e for e in stored.alert.evidence if e["kind"] == "truncated"]
    assert len(kept) == ALERT_EVIDENCE
    assert truncated["evidence_dropped"] == 60 - ALERT_EVIDENCE


class _Unstorable:
    """An alert whose explanation is NULL, which the schema refuses (a compiled `Alert` refuses it itself)."""

    def __init__(self, alert: Alert) -> None:
        for f in dataclasses.fields(alert):
            setattr(self, f.name, getattr(alert, f.name))
        self.id = alert.id
        self.explanation = None


def test_upsert_is_all_or_nothing(store: SQLiteStore) -> None:
    bad = _Unstorable(_alert(rule="recon.host_sweep"))
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert_alerts([_alert(), bad], None)  # type: ignore[list-item]
    assert store.list_alerts() == []


def test_version_2_database_gets_the_alert_tables(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, load_migrations()[:2]) == 2
    conn.close()
    with SQLiteStore(path) as store:
        assert store.schema_version >= 3
        assert store.upsert_alerts([_alert()], None).new == 1


def test_alerts_of_a_real_hl7_capture_store_no_patient_values(tmp_path: Path, shared_data: Path) -> None:
    pcap = shared_data / HL7_PCAP
    if not pcap.is_file():
        pytest.skip(f"{HL7_PCAP} is not in ../shared/data")
    raw = pcap.read_bytes()
    assert all(v in raw for v in PATIENT_VALUES)  # the capture really carries them in clear
    _, alerts = detect_files([pcap])
    assert any(a.rule == "phi.cleartext" for a in alerts)

    path = tmp_path / "phi.db"
    with SQLiteStore(path) as store:
        store.upsert_alerts(alerts, _run(store))
        stored = store.list_alerts(AlertFilter(rule="phi"))
        assert stored and "PID-5" in str(stored[0].alert.evidence)  # field names are kept
        store.set_alert_state(stored[0].id, "acknowledged", note="seen")
        # Read while open too: the WAL may hold what the main file does not yet.
        written = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("phi.db"))
    written += path.read_bytes()
    for value in PATIENT_VALUES:
        assert value not in written, value
        assert value.lower() not in written.lower(), value
