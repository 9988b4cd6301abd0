from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import medsentry
from medsentry.identify.device import Device, Evidence, Service
from medsentry.store import DeviceFilter, RunStats, SQLiteStore
from medsentry.store import sqlite as store_sqlite

MAC = "00:09:fb:72:00:ff"
OTHER = "58:46:e1:47:5c:04"


def monitor(**changes: object) -> Device:
    device = Device(
        mac=MAC,
        ips=["10.77.0.111"],
        device_class="patient_monitor",
        vendor="Philips",
        model="IntelliVue MX450",
        firmware="L.01.14",
        hostname="mx450-icu-1",
        confidence=0.9,
        first_seen=1000.0,
        last_seen=1060.0,
        services=[Service("tcp", 2575, "hl7", "uses", 1), Service("udp", 24005, None, "offers", 3)],
        identities={"hl7_sending_application": ["MX450"]},
        evidence=[
            Evidence("vendor", "Philips", "oui", "OUI 00:09:FB Philips", 1000.0, 0.3),
            Evidence("model", "IntelliVue MX450", "dhcp", 'DHCP option 60 "IntelliVue"', 1001.0, 0.8),
            Evidence("firmware", "L.01.14", "hl7", "MSH-3 MX450^L.01.14", 1002.0, 0.7),
        ],
    )
    return replace(device, **changes)


def pump(**changes: object) -> Device:
    device = Device(
        mac=OTHER,
        ips=["10.77.0.121"],
        device_class="infusion_pump",
        vendor="Baxter",
        confidence=0.6,
        first_seen=1010.0,
        last_seen=1050.0,
    )
    return replace(device, **changes)


def normalised(device: Device) -> Device:
    """Order-free comparison: the store returns services and evidence in its own order."""
    return replace(
        device,
        services=sorted(device.services, key=lambda s: (s.role, s.transport, s.port)),
        evidence=sorted(device.evidence, key=lambda e: (e.attribute, e.protocol, e.detail)),
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    with SQLiteStore(tmp_path / "inventory.db") as s:
        yield s


def run(store: SQLiteStore) -> int:
    return store.record_run(RunStats(started=1.0, ended=2.0, packets=10), ["x.pcap"])


def test_device_round_trips_every_field(store: SQLiteStore) -> None:
    device = monitor(
        mac_randomized=True, os="VxWorks", label="intellivue", identities={"ae": "X", "n": [1, 2]}
    )
    result = store.upsert_devices([device, pump()], run(store))
    assert (result.new, result.updated, result.changes) == (2, 0, 0)
    assert normalised(store.get_device(MAC)) == normalised(device)
    assert [d.key for d in store.list_devices()] == sorted([MAC, OTHER])


def test_merge_widens_first_and_last_seen(store: SQLiteStore) -> None:
    store.upsert_devices([monitor()], run(store))
    store.upsert_devices([monitor(first_seen=900.0, last_seen=950.0)], run(store))  # older traffic
    device = store.get_device(MAC)
    assert (device.first_seen, device.last_seen) == (900.0, 1060.0)
    store.upsert_devices([monitor(first_seen=2000.0, last_seen=2100.0)], run(store))
    device = store.get_device(MAC)
    assert (device.first_seen, device.last_seen) == (900.0, 2100.0)
    assert store.device_history(MAC) == []  # nothing but time changed


def test_changes_become_history_rows(store: SQLiteStore) -> None:
    first = run(store)
    store.upsert_devices([monitor()], first)
    second = run(store)
    upgraded = monitor(
        ips=["10.77.0.140"],
        firmware="L.01.15",
        first_seen=3000.0,
        last_seen=3100.0,
        services=[Service("tcp", 80, "http", "offers", 2), Service("tcp", 2575, "hl7", "uses", 4)],
        evidence=[Evidence("firmware", "L.01.15", "hl7", "MSH-3 MX450^L.01.15", 3042.0, 0.7)],
    )
    result = store.upsert_devices([upgraded], second)
    assert (result.new, result.updated, result.changes) == (0, 1, 3)

    history = {(c.attribute, c.old, c.new): c for c in store.device_history(MAC)}
    assert set(history) == {
        ("firmware", "L.01.14", "L.01.15"),
        ("ip", None, "10.77.0.140"),
        ("service", None, "tcp/80 http (offers)"),
    }
    assert {c.run_id for c in history.values()} == {second}
    assert history["firmware", "L.01.14", "L.01.15"].ts == 3042.0  # when the traffic first showed it
    assert history["ip", None, "10.77.0.140"].ts == 3000.0

    device = store.get_device(MAC)
    assert device.firmware == "L.01.15"
    assert device.ips == ["10.77.0.140", "10.77.0.111"]  # newest first, the old one kept
    assert {(s.port, s.peers) for s in device.services} == {(80, 2), (2575, 4), (24005, 3)}
    # Evidence accumulates: both firmware claims are kept, the new one first at equal weight.
    assert [e.value for e in device.evidence if e.attribute == "firmware"] == ["L.01.15", "L.01.14"]


def test_absent_or_unknown_values_do_not_erase(store: SQLiteStore) -> None:
    store.upsert_devices([monitor()], run(store))
    sparse = Device(mac=MAC, ips=["10.77.0.111"], confidence=0.2, first_seen=1100.0, last_seen=1200.0)
    result = store.upsert_devices([sparse], run(store))
    assert result.changes == 0
    device = store.get_device(MAC)
    assert (device.device_class, device.vendor, device.firmware, device.hostname) == (
        "patient_monitor",
        "Philips",
        "L.01.14",
        "mx450-icu-1",
    )
    assert device.confidence == 0.9  # a weaker run does not lower an unchanged identification
    assert len(device.services) == 2 and device.identities == {"hl7_sending_application": ["MX450"]}


def test_reidentification_and_identities(store: SQLiteStore) -> None:
    store.upsert_devices([monitor()], run(store))
    other = monitor(
        device_class="clinical_workstation",
        confidence=0.4,
        identities={"hl7_sending_application": ["MX450", "CENTRAL"], "dicom_ae": "WS01"},
        services=[Service("tcp", 2575, "mllp", "uses", 1)],
    )
    store.upsert_devices([other], run(store))
    changes = {(c.attribute, c.old, c.new) for c in store.device_history(MAC)}
    assert changes == {
        ("device_class", "patient_monitor", "clinical_workstation"),
        ("identities.hl7_sending_application", '["MX450"]', '["MX450","CENTRAL"]'),
        ("identities.dicom_ae", None, '"WS01"'),
        ("service", "tcp/2575 hl7 (uses)", "tcp/2575 mllp (uses)"),
    }
    assert store.get_device(MAC).confidence == 0.4  # the new identification's own confidence


def test_rerun_of_same_traffic_is_idempotent(store: SQLiteStore) -> None:
    for _ in range(3):
        store.upsert_devices([monitor(), pump()], run(store))
    assert store.device_history(MAC) == []
    assert normalised(store.get_device(MAC)) == normalised(monitor())
    stored = store._conn.execute("SELECT evidence FROM devices WHERE key = ?", (MAC,)).fetchone()[0]
    assert len(json.loads(stored)) == len(monitor().evidence)


def test_evidence_is_bounded_keeping_the_strongest(store: SQLiteStore) -> None:
    claims = [
        Evidence("hostname", f"h{i}", "dhcp", f"option 12 #{i}", 1000.0 + i, i / 100) for i in range(60)
    ]
    store.upsert_devices([monitor(evidence=claims[:30])], run(store))
    first = [e.value for e in store.get_device(MAC).evidence if e.attribute == "hostname"]
    assert sorted(first) == sorted(f"h{i}" for i in range(10, 30))  # a new device is bounded too
    store.upsert_devices([monitor(evidence=claims[30:])], run(store))
    kept = [e for e in store.get_device(MAC).evidence if e.attribute == "hostname"]
    assert len(kept) == store_sqlite.EVIDENCE_PER_ATTRIBUTE
    assert [e.value for e in kept] == [
        f"h{i}" for i in range(59, 59 - store_sqlite.EVIDENCE_PER_ATTRIBUTE, -1)
    ]


def test_routed_only_device_keyed_by_first_ip(store: SQLiteStore) -> None:
    remote = Device(mac=None, ips=["192.168.5.5"], device_class="lab_analyzer", first_seen=1.0, last_seen=2.0)
    store.upsert_devices([remote], run(store))
    store.upsert_devices([replace(remote, ips=["192.168.5.5", "192.168.5.6"], last_seen=9.0)], run(store))
    assert [d.key for d in store.list_devices()] == ["192.168.5.5"]
    device = store.get_device("192.168.5.6")
    assert device is not None and device.key == "192.168.5.5" and device.last_seen == 9.0


def test_device_without_anchor_is_rejected_before_writing(store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="without MAC or IP"):
        store.upsert_devices([pump(), Device(mac=None)], None)
    assert store.list_devices() == []


def test_failure_mid_upsert_keeps_previous_inventory(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.upsert_devices([monitor(), pump()], run(store))
    before = [normalised(d) for d in store.list_devices()]

    calls = 0
    real_merge = store_sqlite.merge_device

    def failing_merge(*args: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real_merge(*args)

    monkeypatch.setattr(store_sqlite, "merge_device", failing_merge)
    newcomer = Device(mac="aa:bb:cc:00:00:01", ips=["10.77.0.200"])
    with pytest.raises(KeyboardInterrupt):
        store.upsert_devices([monitor(firmware="L.02.00"), newcomer, pump(vendor="Other")], run(store))

    assert [normalised(d) for d in store.list_devices()] == before
    assert store.device_history(MAC) == []
    monkeypatch.undo()
    assert store.upsert_devices([newcomer], None).new == 1  # the store is still usable


_KILLER = """
import os, sys
from medsentry.identify.device import Device
from medsentry.store import sqlite as store_sqlite
def die(*args):
    os._exit(3)  # no rollback, no close: like a kill -9 or a power cut
store_sqlite.merge_device = die
store = store_sqlite.SQLiteStore(sys.argv[1])
newcomer = Device(mac="aa:bb:cc:00:00:09", ips=["10.0.0.9"])
store.upsert_devices([newcomer, Device(mac=sys.argv[2], firmware="X")], None)
"""


def test_killed_process_leaves_previous_inventory(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    with SQLiteStore(path) as store:
        store.upsert_devices([monitor()], None)
    env = {**os.environ, "PYTHONPATH": str(Path(medsentry.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", _KILLER, str(path), MAC], env=env, timeout=60)
    assert done.returncode == 3
    with SQLiteStore(path) as store:
        assert [d.key for d in store.list_devices()] == [MAC]
        assert store.get_device(MAC).firmware == "L.01.14"


def test_hostile_strings_round_trip_as_data(store: SQLiteStore) -> None:
    nasty = "x'); DROP TABLE devices;--"
    device = monitor(
        hostname=nasty,
        vendor='O\'Brien "Medical" 100%_\\',
        model="?; DELETE FROM evidence WHERE 1=1; --",
        identities={nasty: [nasty]},
        services=[Service("tcp", 104, nasty, "offers", 1)],
        evidence=[Evidence("hostname", nasty, "dhcp", f"option 12 {nasty}", 1.0, 0.5)],
    )
    routed = Device(mac=None, ips=["1.2.3.4'; DROP TABLE device_ips;--"], vendor="%")
    store.upsert_devices([device, routed, pump()], run(store))
    assert normalised(store.get_device(MAC)) == normalised(device)
    assert store.get_device(routed.key) == routed
    # Filter values are data too: quotes and LIKE wildcards match only literally.
    assert [d.key for d in store.list_devices(DeviceFilter(vendor='brien "medical" 100%_\\'))] == [MAC]
    assert [d.key for d in store.list_devices(DeviceFilter(vendor="%"))] == [MAC, routed.key]  # literal %
    assert store.list_devices(DeviceFilter(vendor="' OR '1'='1")) == []
    assert [d.key for d in store.list_devices(DeviceFilter(ip=routed.ips[0]))] == [routed.key]
    tables = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"devices", "device_ips"} <= tables


def test_list_filters(store: SQLiteStore) -> None:
    store.upsert_devices([monitor(), pump()], run(store))
    store.upsert_devices([monitor(ips=["10.77.0.150"], last_seen=5000.0)], run(store))

    def keys(**criteria: object) -> list[str]:
        return [d.key for d in store.list_devices(DeviceFilter(**criteria))]

    assert keys(device_class="infusion_pump") == [OTHER]
    assert keys(vendor="PHIL") == [MAC]
    assert keys(ip="10.77.0.111") == [MAC]  # a former address still finds the device
    assert keys(seen_since=2000.0) == [MAC]
    assert keys(min_confidence=0.7) == [MAC]
    assert keys(device_class="infusion_pump", vendor="philips") == []
    assert keys() == sorted([MAC, OTHER])


def test_get_device_by_ip_prefers_the_latest_holder(store: SQLiteStore) -> None:
    store.upsert_devices([monitor(ips=["10.77.0.50"]), pump(ips=["10.77.0.50"], last_seen=9999.0)], None)
    assert store.get_device("10.77.0.50").key == OTHER
    assert store.get_device("10.99.99.99") is None


def test_salt_is_per_installation_and_stable(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "a.db") as a:
        salt = a.get_or_create_salt()
        assert len(salt) == 16 and a.get_or_create_salt() == salt
    with SQLiteStore(tmp_path / "a.db") as a, SQLiteStore(tmp_path / "b.db") as b:
        assert a.get_or_create_salt() == salt
        assert b.get_or_create_salt() != salt


def test_runs_are_recorded(store: SQLiteStore) -> None:
    stats = RunStats(
        started=100.0,
        ended=104.0,
        packets=2000,
        bytes=10**6,
        flows=30,
        observations=400,
        malformed={"hl7": 2, "dicom": 1},
    )
    first = store.record_run(stats, ["ward.pcap", "live:eth0"])
    second = store.record_run(RunStats(started=200.0, ended=200.0), [])
    assert second > first
    latest, earlier = store.list_runs()
    assert latest.id == second and latest.stats.packets_per_s == 0.0
    assert earlier.inputs == ["ward.pcap", "live:eth0"] and earlier.stats == stats
    assert earlier.stats.packets_per_s == 500.0
    with pytest.raises(sqlite3.IntegrityError):  # a run id must exist
        store.upsert_devices([pump()], 12345)


def _labelled_devices(labels: Path) -> tuple[list[Device], dict]:
    lines = [json.loads(line) for line in labels.read_text().splitlines()]
    capture = next(x for x in lines if x["type"] == "capture")
    devices = []
    for d in (x for x in lines if x["type"] == "device"):
        dicom = d["protocols"].get("dicom") or {}
        devices.append(
            Device(
                mac=d["mac"],
                ips=[d["ip"]],
                device_class=d["device_class"],
                vendor=d["vendor"],
                model=d["model"],
                firmware=d["firmware"],
                confidence=1.0,
                first_seen=capture["t_start"],
                last_seen=capture["t_end"],
                services=[Service("tcp", dicom["port"], "dicom", "offers")] if "port" in dicom else [],
                identities={"dicom_ae": [dicom["ae_title"]]} if "ae_title" in dicom else {},
                evidence=[
                    Evidence("vendor", d["oui_owner"], "oui", f"OUI {d['oui']}", capture["t_start"], 0.3)
                ],
            )
        )
    return devices, capture


def test_two_captures_of_one_ward_merge_into_one_inventory(shared_data: Path, store: SQLiteStore) -> None:
    folder = shared_data / "captures/virtual-hospital"
    normal, normal_capture = _labelled_devices(folder / "general-hospital-normal-60s.pcap.labels.jsonl")
    attack, attack_capture = _labelled_devices(folder / "general-hospital-60s.pcap.labels.jsonl")
    assert attack_capture["t_end"] < normal_capture["t_start"]  # the attack capture is the older one

    store.upsert_devices(normal, run(store))
    result = store.upsert_devices(attack, run(store))
    expected = {d.mac: d for d in normal} | {d.mac: d for d in attack}
    assert (result.new, result.updated, result.changes) == (len(expected) - len(normal), len(normal), 0)

    stored = {d.key: d for d in store.list_devices()}
    assert stored.keys() == expected.keys() and len(stored) == 17
    for mac, device in stored.items():
        truth = expected[mac]
        assert (device.device_class, device.vendor, device.model, device.firmware, device.ips) == (
            truth.device_class,
            truth.vendor,
            truth.model,
            truth.firmware,
            truth.ips,
        )
        in_normal = any(d.mac == mac for d in normal)
        assert device.first_seen == attack_capture["t_start"]
        assert device.last_seen == (normal_capture["t_end"] if in_normal else attack_capture["t_end"])
    pacs = store.list_devices(DeviceFilter(device_class="pacs"))
    assert [(s.port, s.app) for s in pacs[0].services] == [(11112, "dicom")]
    assert pacs[0].identities == {"dicom_ae": ["PACS01"]}


def test_update_run_replaces_end_and_counters(store: SQLiteStore) -> None:
    first, live = run(store), store.record_run(RunStats(started=5.0, ended=5.0), ["live:eth1"])
    store.update_run(live, RunStats(started=5.0, ended=65.0, packets=7, flows=3, malformed={"hl7": 1}))
    latest, earlier = store.list_runs()
    assert latest.id == live and latest.inputs == ["live:eth1"]
    s = latest.stats
    assert (s.started, s.ended, s.packets, s.flows) == (5.0, 65.0, 7, 3)
    assert latest.stats.malformed == {"hl7": 1}
    assert earlier.id == first and earlier.stats.packets == 10  # the other run untouched


def _tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every inventory row but the ones a timestamp or insertion order tells apart."""
    conn = sqlite3.connect(path)
    try:
        return {
            "devices": conn.execute("SELECT * FROM devices ORDER BY key").fetchall(),
            # a claim a row, as the evidence table held them before schema version 4
            "evidence": sorted(
                (key, *claim)
                for key, text in conn.execute("SELECT key, evidence FROM devices")
                for claim in json.loads(text)
            ),
            "device_ips": conn.execute("SELECT device_key, ip FROM device_ips ORDER BY 1, 2").fetchall(),
            "services": conn.execute("SELECT * FROM services ORDER BY 1, 2, 3, 4").fetchall(),
            "changes": conn.execute(
                "SELECT device_key, attribute, old, new, run_id FROM device_changes ORDER BY 1, 2, 3, 4"
            ).fetchall(),
        }
    finally:
        conn.close()


def test_one_call_writes_what_one_call_per_device_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sqlite, "_KEYS_PER_QUERY", 2)  # the stored records come in several queries
    claims = [
        Evidence("hostname", f"h{i}", "dhcp", f"option 12 #{i}", 1000.0 + i, i / 100) for i in range(40)
    ]
    first = [monitor(evidence=claims[:25]), pump(), Device(mac=None, ips=["192.168.5.5"], first_seen=1.0)]
    # seen again (one of them twice in the batch: the second merges over the first), and a newcomer
    second = [
        monitor(firmware="L.02.00", ips=["10.77.0.112"], evidence=claims[25:]),
        pump(vendor="Baxter Healthcare", services=[Service("tcp", 80, "http", "offers", 2)]),
        monitor(hostname="mx450-icu-2", last_seen=2000.0),
        Device(mac="aa:bb:cc:00:00:01", ips=["10.77.0.200"], first_seen=5.0, last_seen=6.0),
        replace(first[2], ips=["192.168.5.5", "192.168.5.6"], last_seen=9.0),
    ]
    results = []
    for name, batched in (("batched", True), ("single", False)):
        with SQLiteStore(tmp_path / f"{name}.db") as s:
            for devices in (first, second):
                run_id = run(s)
                calls = [devices] if batched else [[d] for d in devices]
                results.append([s.upsert_devices(c, run_id) for c in calls])
    batched_results, single_results = results[:2], results[2:]
    totals = [
        (sum(r.new for r in rs), sum(r.updated for r in rs), sum(r.changes for r in rs))
        for rs in single_results
    ]
    assert [(r[0].new, r[0].updated, r[0].changes) for r in batched_results] == totals
    batched, single = _tables(tmp_path / "batched.db"), _tables(tmp_path / "single.db")
    assert batched["evidence"] and batched["changes"]
    assert len([e for e in batched["evidence"] if e[0] == MAC and e[1] == "hostname"]) == (
        store_sqlite.EVIDENCE_PER_ATTRIBUTE
    )
    assert batched == single
