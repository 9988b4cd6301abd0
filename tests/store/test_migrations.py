from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from medsentry.store import SchemaTooNew, SQLiteStore, default_db_path, open_store
from medsentry.store.sqlite import Migration, _statements, load_migrations, migrate

LATEST = len(load_migrations())
MAC = "00:09:fb:72:00:ff"


def _version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrations_are_numbered_without_gaps() -> None:
    assert [m.version for m in load_migrations()] == list(range(1, LATEST + 1))
    assert LATEST >= 2


def test_empty_database_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with SQLiteStore(path) as store:
        assert store.schema_version == LATEST
        mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert _version(path) == LATEST
    assert {"meta", "runs", "devices", "services", "device_changes", "device_ips"} <= _tables(path)
    assert "evidence" not in _tables(path)  # 0004 moved it into the devices' rows
    # Holds the PHI-hash salt: owner-only.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_reopening_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    SQLiteStore(path).close()
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == LATEST


def _old_device(conn: sqlite3.Connection, key: str, mac: str | None, ips: list[str], device_class: str,
                confidence: float) -> None:
    """A device row as every schema version has the columns."""
    conn.execute(
        "INSERT INTO devices (key, mac, ips, device_class, confidence, mac_randomized, identities)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (key, mac, json.dumps(ips), device_class, confidence, 0, "{}"),
    )


def test_version_1_database_is_upgraded_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, load_migrations()[:1]) == 1
    _old_device(conn, MAC, MAC, ["10.77.0.111", "10.77.0.99"], "patient_monitor", 0.9)
    conn.close()
    assert "device_ips" not in _tables(path)

    with SQLiteStore(path) as store:
        assert store.schema_version == LATEST
        device = store.get_device(MAC)
        assert device is not None and device.device_class == "patient_monitor"
        # 0002 back-filled the address index from the version-1 JSON lists.
        found = store.get_device("10.77.0.99")
        assert found is not None and found.key == MAC
    assert _version(path) == LATEST


def test_version_3_evidence_moves_into_its_devices_rows_in_id_order(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, load_migrations()[:3]) == 3
    _old_device(conn, MAC, MAC, ["10.77.0.111"], "patient_monitor", 0.9)
    _old_device(conn, "10.9.9.9", None, ["10.9.9.9"], "unknown", 0.0)
    rows = [  # ids out of rank order; a time stamp that needs 17 digits; a value of JSON text
        (7, "vendor", '"Philips"', "oui", "IEEE MA-L", 1796069660.2315419, 0.6),
        (3, "vendor", '"Philips"', "dhcp", "option 60", None, 0.9),
        (9, "model", '{"name": "MX450"}', "http", "Server: \"MX450\"", 1000.25, 1.0),
    ]
    conn.executemany(
        "INSERT INTO evidence (id, device_key, attribute, value, protocol, detail, ts, weight, run_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        [(i, MAC, a, v, p, d, ts, w) for i, a, v, p, d, ts, w in rows],
    )
    conn.close()
    with SQLiteStore(path) as store:
        assert store.schema_version == LATEST
        text = store._conn.execute("SELECT evidence FROM devices WHERE key = ?", (MAC,)).fetchone()[0]
        stored = json.loads(text)
        assert [c[:6] for c in stored] == [[a, v, p, d, ts, w] for _, a, v, p, d, ts, w in sorted(rows)]
        assert all(isinstance(c[5], float) for c in stored)
        device = store.get_device(MAC)
        assert device is not None
        assert [(e.attribute, e.value, e.ts, e.weight) for e in device.evidence] == [
            ("model", {"name": "MX450"}, 1000.25, 1.0),
            ("vendor", "Philips", None, 0.9),
            ("vendor", "Philips", 1796069660.2315419, 0.6),
        ]
        other = store.get_device("10.9.9.9")
        assert other is not None and other.evidence == []
    assert "evidence" not in _tables(path)


def test_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied) VALUES (?, ?)", (LATEST + 7, 0.0))
        conn.execute("CREATE TABLE from_the_future (x)")
    with pytest.raises(SchemaTooNew, match=rf"version {LATEST + 7} is newer .*\({LATEST}\)"):
        SQLiteStore(path)
    assert _version(path) == LATEST + 7
    assert "from_the_future" in _tables(path)


def test_failing_migration_rolls_back_every_step(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:1])
    broken = Migration(LATEST + 1, "broken", ("CREATE TABLE half_done (a)", "CREATE TABLE oops ("))
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, [*load_migrations(), broken])
    conn.close()
    # Neither 0002 nor the first statement of the broken one survived: same transaction.
    assert _version(path) == 1
    assert not {"device_ips", "half_done"} & _tables(path)


def test_statement_splitting_respects_quotes_and_triggers() -> None:
    script = """
    CREATE TABLE a (x TEXT DEFAULT ';');  -- a comment; with a semicolon
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        UPDATE a SET x = 'y;z';
        UPDATE a SET x = x;
    END;
    -- trailing comment only
    """
    statements = list(_statements(script))
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn, [Migration(1, "t", tuple(statements))])
    conn.execute("INSERT INTO a DEFAULT VALUES")
    assert conn.execute("SELECT x FROM a").fetchone()[0] == "y;z"


def test_default_path_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    default = tmp_path / ".local/share/medsentry/medsentry.db"
    assert default_db_path({}) == default
    assert default_db_path({"MEDSENTRY_DB": str(tmp_path / "env.db")}) == tmp_path / "env.db"

    open_store(env={}).close()  # created on demand, parents included
    assert default.is_file()
    assert stat.S_IMODE(default.parent.stat().st_mode) == 0o700

    env = {"MEDSENTRY_DB": str(tmp_path / "deep/er/env.db")}
    open_store(env=env).close()
    assert (tmp_path / "deep/er/env.db").is_file()
    open_store(tmp_path / "explicit.db", env=env).close()  # the CLI option wins over the environment
    assert (tmp_path / "explicit.db").is_file()
