"""The default store: one SQLite file (stdlib sqlite3) in WAL mode, so readers never block an analysis run.

Schema changes are numbered SQL files in `migrations/` (`NNNN_name.sql`), applied in order inside one
transaction when a database is opened; `schema_version` records what was applied. Values only ever travel
as parameters. The SQL sticks to what PostgreSQL also accepts where that is free (ON CONFLICT upserts,
CASE instead of two-argument MAX, `x IS NULL` ordering instead of NULLS LAST); the remaining differences
are noted where they occur. Needs SQLite >= 3.24 (upsert) with JSON1 (migration 0002).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from medsentry.identify.device import Device, Evidence, Service
from medsentry.store.base import (
    DeviceChange,
    DeviceFilter,
    Run,
    RunStats,
    SchemaTooNew,
    StoreError,
    UpsertResult,
)
from medsentry.store.merge import canonical_json, merge_device

ENV_VAR = "MEDSENTRY_DB"
DEFAULT_PATH = "~/.local/share/medsentry/medsentry.db"
EVIDENCE_PER_ATTRIBUTE = 20  # kept per device and attribute: the strongest, then the newest
MAX_IPS = 32  # DHCP churn would otherwise grow a long-lived device's address list without bound


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def default_db_path(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get(ENV_VAR) or DEFAULT_PATH).expanduser()


def load_migrations() -> list[Migration]:
    folder = resources.files("medsentry.store").joinpath("migrations")
    migrations = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            number, _, name = entry.name.removesuffix(".sql").partition("_")
            migrations.append(Migration(int(number), name, tuple(_statements(entry.read_text("utf-8")))))
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise StoreError(f"migrations are not numbered 1..n: {[m.version for m in migrations]}")
    return migrations


def _statements(script: str) -> Iterator[str]:
    """Split a script into statements; SQLite's own tokenizer knows about quotes and triggers."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement.strip()
            statement = ""
    if statement.strip():
        yield statement  # only comments, or an unterminated statement that fails its migration


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Bring the database to the last of `migrations`, all in one transaction; returns that version.
    `conn` must be in autocommit mode (isolation_level=None) so BEGIN/COMMIT here are the only ones."""
    latest = migrations[-1].version
    with _transaction(conn):
        # DDL is transactional in SQLite and PostgreSQL alike, so a failed step leaves the old schema.
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied REAL)")
        current = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        if current > latest:
            raise SchemaTooNew(
                f"database schema version {current} is newer than this medsentry knows ({latest}): "
                "upgrade medsentry or use another database"
            )
        for migration in migrations[current:]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                (migration.version, time.time()),
            )
    return max(current, latest)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: two writers queue instead of failing halfway.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create_private(path: Path) -> None:
    """The database holds the PHI-hash salt: create it readable by its owner only (-wal/-shm follow)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


_UPSERT_DEVICE = """
INSERT INTO devices (key, mac, ips, device_class, vendor, model, firmware, os, hostname, label, confidence,
                     first_seen, last_seen, mac_randomized, identities, first_run, last_run)
VALUES (:key, :mac, :ips, :device_class, :vendor, :model, :firmware, :os, :hostname, :label, :confidence,
        :first_seen, :last_seen, :mac_randomized, :identities, :run_id, :run_id)
ON CONFLICT (key) DO UPDATE SET
    mac = excluded.mac, ips = excluded.ips, device_class = excluded.device_class, vendor = excluded.vendor,
    model = excluded.model, firmware = excluded.firmware, os = excluded.os, hostname = excluded.hostname,
    label = excluded.label, confidence = excluded.confidence, first_seen = excluded.first_seen,
    last_seen = excluded.last_seen, mac_randomized = excluded.mac_randomized,
    identities = excluded.identities, last_run = excluded.last_run
"""

_UPSERT_SERVICE = """
INSERT INTO services (device_key, transport, port, role, app, peers) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (device_key, transport, port, role) DO UPDATE SET app = excluded.app, peers = excluded.peers
"""

_UPSERT_EVIDENCE = """
INSERT INTO evidence (device_key, attribute, value, protocol, detail, ts, weight, run_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (device_key, attribute, protocol, detail, value) DO UPDATE SET
    ts = CASE WHEN evidence.ts IS NULL OR excluded.ts > evidence.ts THEN excluded.ts ELSE evidence.ts END,
    weight = CASE WHEN excluded.weight > evidence.weight THEN excluded.weight ELSE evidence.weight END,
    run_id = excluded.run_id
"""

_EVIDENCE_ORDER = "weight DESC, ts IS NULL, ts DESC, id"

_PRUNE_EVIDENCE = f"""
DELETE FROM evidence WHERE device_key = ? AND attribute = ? AND id NOT IN (
    SELECT id FROM evidence WHERE device_key = ? AND attribute = ? ORDER BY {_EVIDENCE_ORDER} LIMIT ?
)
"""

_INSERT_CHANGE = """
INSERT INTO device_changes (device_key, attribute, old, new, ts, run_id) VALUES (?, ?, ?, ?, ?, ?)
"""

_INSERT_RUN = """
INSERT INTO runs (started, ended, inputs, packets, bytes, flows, observations, malformed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

# Device fields stored as they are; ips, identities and mac_randomized need converting.
_DEVICE_COLUMNS = (
    "mac",
    "device_class",
    "vendor",
    "model",
    "firmware",
    "os",
    "hostname",
    "label",
    "confidence",
    "first_seen",
    "last_seen",
)

# Constant WHERE fragments for device queries; only their parameters come from the caller.
_BY_KEY = "key = ?"
_BY_IP = "key IN (SELECT device_key FROM device_ips WHERE ip = ?)"


class SQLiteStore:
    """`Store` on one SQLite file; `path` may be ":memory:". Not shared between threads."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            _create_private(Path(path))
        self.path = path
        # Autocommit mode: the sqlite3 module's implicit transactions commit DDL piecemeal; ours are explicit.
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._conn.row_factory = sqlite3.Row
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")  # WAL: still consistent after a crash
            self._conn.execute("PRAGMA foreign_keys = ON")
            self.schema_version = migrate(self._conn, load_migrations())
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def get_or_create_salt(self) -> bytes:
        with _transaction(self._conn):
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                ("phi_salt", os.urandom(16).hex()),
            )
            (salt,) = self._conn.execute("SELECT value FROM meta WHERE key = ?", ("phi_salt",)).fetchone()
        return bytes.fromhex(salt)

    def record_run(self, stats: RunStats, inputs: Sequence[str]) -> int:
        cursor = self._conn.execute(
            _INSERT_RUN,
            (
                stats.started,
                stats.ended,
                json.dumps(list(inputs)),
                stats.packets,
                stats.bytes,
                stats.flows,
                stats.observations,
                json.dumps(stats.malformed, sort_keys=True),
            ),
        )
        return int(cursor.lastrowid or 0)  # PostgreSQL: INSERT ... RETURNING id

    def list_runs(self, limit: int = 20) -> list[Run]:
        rows = self._conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_run(row) for row in rows]

    def upsert_devices(self, devices: Sequence[Device], run_id: int | None) -> UpsertResult:
        for device in devices:
            if device.mac is None and not device.ips:
                raise ValueError(f"device without MAC or IP cannot be stored: {device!r}")
        now = time.time()
        new = updated = changes = 0
        with _transaction(self._conn):
            for device in devices:
                stored = self._select(_BY_KEY, (device.key,), evidence=False)
                if stored:
                    merged, history = merge_device(stored[0], device, run_id, now)
                    updated += 1
                else:
                    merged, history = device, []
                    new += 1
                self._write(merged, run_id)
                self._conn.executemany(
                    _INSERT_CHANGE,
                    [(c.device_key, c.attribute, c.old, c.new, c.ts, c.run_id) for c in history],
                )
                changes += len(history)
        return UpsertResult(new, updated, changes)

    def _write(self, device: Device, run_id: int | None) -> None:
        """Replace the stored record with `device`, adding (not replacing) its evidence."""
        key = device.key
        ips = list(dict.fromkeys(device.ips))[:MAX_IPS]
        row = {name: getattr(device, name) for name in _DEVICE_COLUMNS}
        row |= {
            "key": key,
            "ips": json.dumps(ips),
            "mac_randomized": int(device.mac_randomized),
            "identities": canonical_json(device.identities),
            "run_id": run_id,
        }
        self._conn.execute(_UPSERT_DEVICE, row)
        self._conn.execute("DELETE FROM device_ips WHERE device_key = ?", (key,))
        self._conn.executemany(
            "INSERT INTO device_ips (device_key, ip) VALUES (?, ?)", [(key, ip) for ip in ips]
        )
        self._conn.executemany(
            _UPSERT_SERVICE, [(key, s.transport, s.port, s.role, s.app, s.peers) for s in device.services]
        )
        self._conn.executemany(
            _UPSERT_EVIDENCE,
            [
                (key, e.attribute, canonical_json(e.value), e.protocol, e.detail, e.ts, e.weight, run_id)
                for e in device.evidence
            ],
        )
        for attribute in {e.attribute for e in device.evidence}:
            self._conn.execute(_PRUNE_EVIDENCE, (key, attribute, key, attribute, EVIDENCE_PER_ATTRIBUTE))

    def list_devices(self, filters: DeviceFilter | None = None) -> list[Device]:
        f = filters or DeviceFilter()
        clauses: list[str] = []
        params: list[Any] = []
        if f.device_class is not None:
            clauses.append("device_class = ?")
            params.append(f.device_class)
        if f.vendor is not None:
            # LOWER + LIKE rather than SQLite's case-blind LIKE: PostgreSQL's LIKE is case-sensitive.
            clauses.append("LOWER(vendor) LIKE ? ESCAPE '\\'")
            params.append("%" + _like_escape(f.vendor.lower()) + "%")
        if f.ip is not None:
            clauses.append(_BY_IP)
            params.append(f.ip)
        if f.seen_since is not None:
            clauses.append("last_seen >= ?")
            params.append(f.seen_since)
        if f.min_confidence is not None:
            clauses.append("confidence >= ?")
            params.append(f.min_confidence)
        return self._select(" AND ".join(clauses) or "1 = 1", params)

    def get_device(self, key: str) -> Device | None:
        found = self._select(_BY_KEY, (key,)) or self._select(_BY_IP, (key,))
        # An address can have passed between devices (DHCP): the one seen last holds it now.
        return max(found, key=lambda d: d.last_seen or 0.0, default=None)

    def device_history(self, key: str) -> list[DeviceChange]:
        rows = self._conn.execute(
            "SELECT device_key, attribute, old, new, ts, run_id FROM device_changes"
            " WHERE device_key = ? ORDER BY ts, id",
            (key,),
        )
        return [DeviceChange(*row) for row in rows]

    def _select(self, where: str, params: Sequence[Any], evidence: bool = True) -> list[Device]:
        """Devices matching `where`, one of this module's constant fragments, in three queries."""
        rows = self._conn.execute(f"SELECT * FROM devices WHERE {where} ORDER BY key", params).fetchall()
        if not rows:
            return []
        keys = f"SELECT key FROM devices WHERE {where}"
        services: dict[str, list[Service]] = defaultdict(list)
        for r in self._conn.execute(
            f"SELECT * FROM services WHERE device_key IN ({keys}) ORDER BY device_key, role, transport, port",
            params,
        ):
            services[r["device_key"]].append(
                Service(r["transport"], r["port"], r["app"], r["role"], r["peers"])
            )
        claims: dict[str, list[Evidence]] = defaultdict(list)
        if evidence:
            for r in self._conn.execute(
                f"SELECT * FROM evidence WHERE device_key IN ({keys})"
                f" ORDER BY device_key, attribute, {_EVIDENCE_ORDER}",
                params,
            ):
                claims[r["device_key"]].append(
                    Evidence(
                        r["attribute"],
                        json.loads(r["value"]),
                        r["protocol"],
                        r["detail"],
                        r["ts"],
                        r["weight"],
                    )
                )
        return [
            Device(
                **{name: r[name] for name in _DEVICE_COLUMNS},
                ips=json.loads(r["ips"]),
                mac_randomized=bool(r["mac_randomized"]),
                identities=json.loads(r["identities"]),
                services=services[r["key"]],
                evidence=claims[r["key"]],
            )
            for r in rows
        ]


def _run(r: sqlite3.Row) -> Run:
    stats = RunStats(
        started=r["started"],
        ended=r["ended"],
        packets=r["packets"],
        bytes=r["bytes"],
        flows=r["flows"],
        observations=r["observations"],
        malformed=json.loads(r["malformed"]),
    )
    return Run(r["id"], json.loads(r["inputs"]), stats)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
