"""The default store: one SQLite file (stdlib sqlite3) in WAL mode, so readers never block an analysis run.

Schema changes are numbered SQL files in `migrations/` (`NNNN_name.sql`), applied in order inside one
transaction when a database is opened; `schema_version` records what was applied. Values only ever travel
as parameters. The SQL sticks to what PostgreSQL also accepts where that is free (ON CONFLICT upserts,
CASE instead of two-argument MAX, `x IS NULL` ordering instead of NULLS LAST); the remaining differences
are noted where they occur. Needs SQLite >= 3.24 (upsert) with JSON1 (migration 0002).
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from medsentry.detect.engine import SEVERITIES, Alert
from medsentry.identify.device import Device, Evidence, Service
from medsentry.store.base import (
    ALERT_STATES,
    AlertChange,
    AlertFilter,
    AlertUpsert,
    DeviceChange,
    DeviceFilter,
    Run,
    RunStats,
    SchemaTooNew,
    StoredAlert,
    StoreError,
    UpsertResult,
)
from medsentry.store.merge import canonical_json, merge_device

ENV_VAR = "MEDSENTRY_DB"
DEFAULT_PATH = "~/.local/share/medsentry/medsentry.db"
EVIDENCE_PER_ATTRIBUTE = 20  # kept per device and attribute: the strongest, then the newest
MAX_IPS = 32  # DHCP churn would otherwise grow a long-lived device's address list without bound
ALERT_EVIDENCE = 32  # evidence items kept per alert across runs; the rest are counted in a "truncated" item
EVIDENCE_LIST_ITEMS = 16  # as the detector bounds list-valued evidence (field names, hashes)
RUN_ACTOR = "medsentry"  # the actor of state changes that a run made


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


def migrate(
    conn: sqlite3.Connection, migrations: Sequence[Migration], version_table: str = "schema_version"
) -> int:
    """Bring the database to the last of `migrations`, all in one transaction; returns that version.
    `conn` must be in autocommit mode (isolation_level=None) so BEGIN/COMMIT here are the only ones.
    `version_table` lets several sets of migrations share one file, each with its own version."""
    latest = migrations[-1].version
    with transaction(conn):
        # DDL is transactional in SQLite and PostgreSQL alike, so a failed step leaves the old schema.
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {version_table} (version INTEGER PRIMARY KEY, applied REAL)"
        )
        current = conn.execute(f"SELECT MAX(version) FROM {version_table}").fetchone()[0] or 0
        if current > latest:
            raise SchemaTooNew(
                f"database schema version {current} is newer than this medsentry knows ({latest}): "
                f"upgrade medsentry or use another database ({version_table})"
            )
        for migration in migrations[current:]:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {version_table} (version, applied) VALUES (?, ?)",
                (migration.version, time.time()),
            )
    return max(current, latest)


def open_database(
    path: str | Path,
    migrations: Sequence[Migration],
    version_table: str = "schema_version",
    foreign_keys: bool = False,
) -> tuple[sqlite3.Connection, int]:
    """A connection in autocommit mode (the sqlite3 module's implicit transactions commit DDL piecemeal;
    ours are explicit), WAL, rows by name, migrated: (connection, schema version)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: still consistent after a crash
        if foreign_keys:
            conn.execute("PRAGMA foreign_keys = ON")
        return conn, migrate(conn, migrations, version_table)
    except BaseException:
        conn.close()
        raise


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """All or nothing. IMMEDIATE takes the write lock up front: two writers queue, neither fails halfway."""
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
                     first_seen, last_seen, mac_randomized, identities, evidence, first_run, last_run)
VALUES (:key, :mac, :ips, :device_class, :vendor, :model, :firmware, :os, :hostname, :label, :confidence,
        :first_seen, :last_seen, :mac_randomized, :identities, :evidence, :run_id, :run_id)
ON CONFLICT (key) DO UPDATE SET
    mac = excluded.mac, ips = excluded.ips, device_class = excluded.device_class, vendor = excluded.vendor,
    model = excluded.model, firmware = excluded.firmware, os = excluded.os, hostname = excluded.hostname,
    label = excluded.label, confidence = excluded.confidence, first_seen = excluded.first_seen,
    last_seen = excluded.last_seen, mac_randomized = excluded.mac_randomized,
    identities = excluded.identities, evidence = excluded.evidence, last_run = excluded.last_run
"""

_UPSERT_SERVICE = """
INSERT INTO services (device_key, transport, port, role, app, peers) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (device_key, transport, port, role) DO UPDATE SET app = excluded.app, peers = excluded.peers
"""

_INSERT_CHANGE = """
INSERT INTO device_changes (device_key, attribute, old, new, ts, run_id) VALUES (?, ?, ?, ?, ?, ?)
"""

_INSERT_RUN = """
INSERT INTO runs (started, ended, inputs, packets, bytes, flows, observations, malformed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""

_UPDATE_RUN = """
UPDATE runs SET ended = ?, packets = ?, bytes = ?, flows = ?, observations = ?, malformed = ? WHERE id = ?
"""

_UPSERT_ALERT = """
INSERT INTO alerts (id, rule, technique, severity, attacker_mac, attacker_ip, victims, first_seen, last_seen,
                    count, run_count, evidence, explanation, id_bucket_s, state, state_changed, first_run,
                    last_run)
VALUES (:id, :rule, :technique, :severity, :attacker_mac, :attacker_ip, :victims, :first_seen, :last_seen,
        :count, :run_count, :evidence, :explanation, :id_bucket_s, :state, :state_changed, :run_id, :run_id)
ON CONFLICT (id) DO UPDATE SET
    rule = excluded.rule, technique = excluded.technique, severity = excluded.severity,
    attacker_mac = excluded.attacker_mac, attacker_ip = excluded.attacker_ip, victims = excluded.victims,
    first_seen = excluded.first_seen, last_seen = excluded.last_seen, count = excluded.count,
    run_count = excluded.run_count, evidence = excluded.evidence, explanation = excluded.explanation,
    state = excluded.state, state_changed = excluded.state_changed, last_run = excluded.last_run
"""

_INSERT_ALERT_CHANGE = """
INSERT INTO alert_history (alert_id, ts, old_state, new_state, actor, note, run_id)
VALUES (?, ?, ?, ?, ?, ?, ?)
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

# SQLite's default limit is 32,766 parameters a statement (999 before 3.32)
_KEYS_PER_QUERY = 500


class _DeviceRows:
    """The rows that write a batch of devices, gathered to run one statement per table. `claims`: the
    stored evidence of the devices that have a record (`devices.evidence`), which `add` adds to."""

    def __init__(self, claims: dict[str, list[list[Any]]]) -> None:
        self.devices: list[dict[str, Any]] = []
        self.ips: dict[str, list[str]] = {}
        self.services: list[tuple[Any, ...]] = []
        self.changes: list[tuple[Any, ...]] = []
        self.claims = claims

    def add(self, device: Device, run_id: int | None) -> None:
        """`device` replaces its stored record, adding (not replacing) its evidence."""
        key = device.key
        ips = list(dict.fromkeys(device.ips))[:MAX_IPS]
        claims = self.claims[key] = _claims_added(self.claims.get(key, []), device.evidence, run_id)
        row = {name: getattr(device, name) for name in _DEVICE_COLUMNS}
        row |= {
            "key": key,
            "ips": json.dumps(ips),
            "mac_randomized": int(device.mac_randomized),
            "identities": canonical_json(device.identities),
            "evidence": orjson.dumps(claims).decode(),
            "run_id": run_id,
        }
        self.devices.append(row)
        self.ips[key] = ips
        self.services += [(key, s.transport, s.port, s.role, s.app, s.peers) for s in device.services]

    def write(self, conn: sqlite3.Connection) -> None:
        """Run the gathered rows (the caller has dropped the stored records' addresses)."""
        conn.executemany(_UPSERT_DEVICE, self.devices)
        conn.executemany(
            "INSERT INTO device_ips (device_key, ip) VALUES (?, ?)",
            [(key, ip) for key, ips in self.ips.items() for ip in ips],
        )
        conn.executemany(_UPSERT_SERVICE, self.services)
        conn.executemany(_INSERT_CHANGE, self.changes)


# A device's evidence is one JSON list in its row, a claim an entry [attribute, value (its canonical JSON),
# protocol, detail, ts, weight, run_id], in the order claims were first made. (A table row a claim, as
# before schema version 4, made SQLite's own work most of the cost of writing an inventory: 21,148 claims
# of the bench capture's 1,219 devices were 0.09 s of 0.15.)
_ATTRIBUTE, _VALUE, _PROTOCOL, _DETAIL, _TS, _WEIGHT, _RUN = range(7)


def _claims_added(old: list[list[Any]], new: Sequence[Evidence], run_id: int | None) -> list[list[Any]]:
    """`old` with `new` added: a claim already held (same attribute, value, protocol and detail) keeps its
    place and takes the later time stamp, the larger weight and this run; the others follow in their order.
    Then each attribute keeps its EVIDENCE_PER_ATTRIBUTE strongest (`_claim_rank`)."""
    claims = list(old)
    held = {(c[_ATTRIBUTE], c[_VALUE], c[_PROTOCOL], c[_DETAIL]): c for c in claims}
    for e in new:
        # numbers as a REAL column keeps them: an int weight or time stamp reads back as a float
        ts = None if e.ts is None else float(e.ts)
        weight = float(e.weight)
        key = (e.attribute, canonical_json(e.value), e.protocol, e.detail)
        have = held.get(key)
        if have is None:
            held[key] = claim = [*key, ts, weight, run_id]
            claims.append(claim)
            continue
        if have[_TS] is None or (ts is not None and ts > have[_TS]):
            have[_TS] = ts
        have[_WEIGHT] = max(have[_WEIGHT], weight)
        have[_RUN] = run_id
    if max(Counter(c[_ATTRIBUTE] for c in claims).values(), default=0) <= EVIDENCE_PER_ATTRIBUTE:
        return claims
    kept: set[int] = set()
    per_attribute: Counter[str] = Counter()
    for i in sorted(range(len(claims)), key=lambda i: _claim_rank(claims, i)):
        attribute = claims[i][_ATTRIBUTE]
        if per_attribute[attribute] < EVIDENCE_PER_ATTRIBUTE:
            per_attribute[attribute] += 1
            kept.add(i)
    return [c for i, c in enumerate(claims) if i in kept]


def _claim_rank(claims: list[list[Any]], i: int) -> tuple[Any, ...]:
    """A claim's place among its attribute's: the strongest first, then having a time stamp, the newest,
    the first made."""
    c = claims[i]
    ts = c[_TS]
    return c[_ATTRIBUTE], -c[_WEIGHT], ts is None, -(ts or 0.0), i


def _evidence(text: str) -> list[Evidence]:
    """A stored evidence list, each attribute's claims in `_claim_rank` order."""
    claims = orjson.loads(text)
    return [
        Evidence(c[_ATTRIBUTE], json.loads(c[_VALUE]), c[_PROTOCOL], c[_DETAIL], c[_TS], c[_WEIGHT])
        for c in (claims[i] for i in sorted(range(len(claims)), key=lambda i: _claim_rank(claims, i)))
    ]


class OwnsConnection:
    """A store on one SQLite connection (`_conn`): `close()` closes it, and so does leaving a `with` block."""

    _conn: sqlite3.Connection

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SQLiteStore(OwnsConnection):
    """`Store` on one SQLite file; `path` may be ":memory:". Not shared between threads."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            _create_private(Path(path))
        self.path = path
        self._conn, self.schema_version = open_database(path, load_migrations(), foreign_keys=True)

    def get_or_create_salt(self) -> bytes:
        with transaction(self._conn):
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

    def update_run(self, run_id: int, stats: RunStats) -> None:
        with transaction(self._conn):
            self._conn.execute(
                _UPDATE_RUN,
                (
                    stats.ended,
                    stats.packets,
                    stats.bytes,
                    stats.flows,
                    stats.observations,
                    json.dumps(stats.malformed, sort_keys=True),
                    run_id,
                ),
            )

    def list_runs(self, limit: int = 20) -> list[Run]:
        rows = self._conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [_run(row) for row in rows]

    def upsert_devices(self, devices: Sequence[Device], run_id: int | None) -> UpsertResult:
        for device in devices:
            if device.mac is None and not device.ips:
                raise ValueError(f"device without MAC or IP cannot be stored: {device!r}")
        now = time.time()
        new = updated = 0
        # Statements are gathered and run once per table: one to four statements a device (1,219 devices:
        # 0.19 -> 0.05 s) cost more than the analysis of a capture's last 100,000 packets.
        with transaction(self._conn):
            keys = [d.key for d in devices]
            stored, claims = self._stored(keys)
            rows = _DeviceRows(claims)
            before = set(stored)
            repeated = {key for key, n in Counter(keys).items() if n > 1}
            for device in devices:
                old = stored.get(device.key)
                if old is not None:
                    merged, history = merge_device(old, device, run_id, now)
                    updated += 1
                else:
                    merged, history = device, []
                    new += 1
                rows.add(merged, run_id)
                rows.changes += [(c.device_key, c.attribute, c.old, c.new, c.ts, c.run_id) for c in history]
                if device.key in repeated:  # the next one merges over this one, as it would in two calls
                    stored[device.key] = replace(merged, evidence=[])  # its evidence: in `rows.claims`
            self._conn.executemany("DELETE FROM device_ips WHERE device_key = ?", [(k,) for k in before])
            rows.write(self._conn)
        return UpsertResult(new, updated, len(rows.changes))

    def _stored(self, keys: Sequence[str]) -> tuple[dict[str, Device], dict[str, list[list[Any]]]]:
        """The stored records (without evidence) of `keys`, and their evidence as stored, a few hundred keys
        a query."""
        found: dict[str, Device] = {}
        claims: dict[str, list[list[Any]]] = {}
        for i in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[i : i + _KEYS_PER_QUERY]
            # only placeholders are formatted into the statement; the keys are its parameters
            where = f"key IN ({','.join('?' * len(chunk))})"
            for device in self._select(where, chunk, evidence=False):
                found[device.key] = device
            for key, text in self._conn.execute(f"SELECT key, evidence FROM devices WHERE {where}", chunk):
                claims[key] = orjson.loads(text)
        return found, claims

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

    def forget_devices(self, keys: Sequence[str]) -> int:
        with transaction(self._conn):  # services, addresses and changes go with it (CASCADE)
            return sum(self._conn.execute("DELETE FROM devices WHERE key = ?", (k,)).rowcount for k in keys)

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

    def upsert_alerts(self, alerts: Sequence[Alert], run_id: int | None) -> AlertUpsert:
        now = time.time()
        new = updated = reopened = 0
        with transaction(self._conn):
            for alert in alerts:
                alert_id = alert.id
                row = self._conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
                if row is None:
                    self._write_alert(alert, "new", now, alert.count, run_id)
                    self._conn.execute(
                        _INSERT_ALERT_CHANGE, (alert_id, now, None, "new", RUN_ACTOR, None, run_id)
                    )
                    new += 1
                    continue
                stored = _stored_alert(row)
                merged, run_count, fresh = _merge_alert(
                    stored.alert, alert, row["run_count"], row["last_run"], run_id
                )
                state, changed = stored.state, stored.state_changed
                if state == "closed" and fresh:
                    state, changed = "new", now
                    note = "fired again" + ("" if run_id is None else f" in run {run_id}")
                    self._conn.execute(
                        _INSERT_ALERT_CHANGE, (alert_id, now, "closed", "new", RUN_ACTOR, note, run_id)
                    )
                    reopened += 1
                self._write_alert(merged, state, changed, run_count, run_id)
                updated += 1
        return AlertUpsert(new, updated, reopened)

    def _write_alert(
        self, alert: Alert, state: str, changed: float, run_count: int, run_id: int | None
    ) -> None:
        alert_id = alert.id  # a hash over the victims: computed once
        row = {
            "id": alert_id,
            "rule": alert.rule,
            "technique": canonical_json(alert.technique),
            "severity": alert.severity,
            "attacker_mac": alert.attacker.get("mac"),
            "attacker_ip": alert.attacker.get("ip"),
            "victims": canonical_json(alert.victims),
            "first_seen": alert.first_seen,
            "last_seen": alert.last_seen,
            "count": alert.count,
            "run_count": run_count,
            "evidence": canonical_json(alert.evidence),
            "explanation": alert.explanation,
            "id_bucket_s": alert.id_bucket_s,
            "state": state,
            "state_changed": changed,
            "run_id": run_id,
        }
        self._conn.execute(_UPSERT_ALERT, row)
        addresses = {(a, "attacker") for a in (alert.attacker.get("mac"), alert.attacker.get("ip")) if a}
        addresses |= {(a, "victim") for v in alert.victims for a in (v.get("mac"), v.get("ip")) if a}
        self._conn.executemany(
            "INSERT INTO alert_addresses (alert_id, address, role) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(alert_id, address, role) for address, role in sorted(addresses)],
        )

    def list_alerts(self, filters: AlertFilter | None = None) -> list[StoredAlert]:
        f = filters or AlertFilter()
        clauses: list[str] = []
        params: list[Any] = []
        if f.state is not None:
            clauses.append("state = ?")
            params.append(_check_state(f.state))
        if f.rule is not None:
            clauses.append("(rule = ? OR rule LIKE ? ESCAPE '\\')")
            params += [f.rule, _like_escape(f.rule.rstrip(".")) + ".%"]
        if f.severity is not None:
            if f.severity not in SEVERITIES:
                raise ValueError(f"severity must be one of {SEVERITIES}, not {f.severity!r}")
            at_least = SEVERITIES[SEVERITIES.index(f.severity) :]
            clauses.append(f"severity IN ({', '.join('?' * len(at_least))})")
            params += at_least
        if f.since is not None:
            clauses.append("last_seen >= ?")
            params.append(f.since)
        if f.device is not None:
            # MACs are stored lower-case by the pipeline; accept what a person types.
            clauses.append("id IN (SELECT alert_id FROM alert_addresses WHERE address = ? OR address = ?)")
            params += [f.device, f.device.lower()]
        where = " AND ".join(clauses) or "1 = 1"
        rows = self._conn.execute(f"SELECT * FROM alerts WHERE {where} ORDER BY last_seen DESC, id", params)
        return [_stored_alert(r) for r in rows]

    def get_alert(self, alert_id: str) -> StoredAlert | None:
        row = self._alert_row(alert_id)
        if row is None:
            return None
        history = self._conn.execute(
            "SELECT alert_id, ts, old_state, new_state, actor, note, run_id FROM alert_history"
            " WHERE alert_id = ? ORDER BY ts, id",
            (row["id"],),
        )
        return _stored_alert(row, tuple(AlertChange(*h) for h in history))

    def set_alert_state(
        self, alert_id: str, state: str, note: str | None = None, actor: str | None = None
    ) -> StoredAlert | None:
        _check_state(state)
        with transaction(self._conn):
            row = self._alert_row(alert_id)
            if row is None:
                return None
            if row["state"] != state or note:
                now = time.time()
                self._conn.execute(
                    "UPDATE alerts SET state = ?, state_changed = ? WHERE id = ?", (state, now, row["id"])
                )
                self._conn.execute(
                    _INSERT_ALERT_CHANGE, (row["id"], now, row["state"], state, actor or _user(), note, None)
                )
        return self.get_alert(row["id"])

    def _alert_row(self, alert_id: str) -> sqlite3.Row | None:
        """By id, else by a prefix that only one id has."""
        row = self._conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is not None or not alert_id:
            return row
        rows = self._conn.execute(
            "SELECT * FROM alerts WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 2",
            (_like_escape(alert_id.lower()) + "%",),
        ).fetchall()
        if len(rows) > 1:
            raise StoreError(f"alert id {alert_id!r} is ambiguous: give more of it")
        return rows[0] if rows else None

    def _select(self, where: str, params: Sequence[Any], evidence: bool = True) -> list[Device]:
        """Devices matching `where`, one of this module's constant fragments (or `key IN` a list of
        placeholders), in two queries."""
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
        return [
            Device(
                **{name: r[name] for name in _DEVICE_COLUMNS},
                ips=json.loads(r["ips"]),
                mac_randomized=bool(r["mac_randomized"]),
                identities=json.loads(r["identities"]),
                services=services[r["key"]],
                evidence=_evidence(r["evidence"]) if evidence else [],
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


def _stored_alert(r: sqlite3.Row, history: tuple[AlertChange, ...] = ()) -> StoredAlert:
    alert = Alert(
        rule=r["rule"],
        technique=json.loads(r["technique"]),
        severity=r["severity"],
        attacker={"mac": r["attacker_mac"], "ip": r["attacker_ip"]},
        victims=json.loads(r["victims"]),
        first_seen=r["first_seen"],
        last_seen=r["last_seen"],
        evidence=json.loads(r["evidence"]),
        explanation=r["explanation"],
        count=r["count"],
        id_bucket_s=r["id_bucket_s"],
    )
    return StoredAlert(alert, r["state"], r["state_changed"], r["first_run"], r["last_run"], history)


def _merge_alert(
    old: Alert, new: Alert, run_count: int, last_run: int | None, run_id: int | None
) -> tuple[Alert, int, bool]:
    """The stored alert with a repeat merged in; returns it, the count `run_id` contributed, and whether
    the repeat brought traffic the store had not seen (which re-opens a closed alert).

    Counting: a run that stores the same alert again (a live run saving periodically) replaces its own
    earlier contribution; traffic inside the stored first..last window (the same capture analysed again)
    is not counted twice; anything else adds."""
    fresh = new.last_seen > old.last_seen or new.first_seen < old.first_seen
    same_run = run_id is not None and run_id == last_run
    if not fresh:
        count = old.count
        run_count = run_count if same_run else 0
    elif same_run:
        count = old.count - run_count + new.count
        run_count = new.count
    else:
        count = old.count + new.count
        run_count = new.count
    worse = _rank(new.severity) > _rank(old.severity)
    evidence = _merge_evidence(old.evidence, new.evidence, add=not same_run) if fresh else old.evidence
    merged = Alert(
        rule=old.rule,
        technique=new.technique,
        severity=new.severity if worse else old.severity,
        attacker=old.attacker,
        victims=new.victims or old.victims,  # the id covers the victim set: they are the same
        first_seen=min(old.first_seen, new.first_seen),
        last_seen=max(old.last_seen, new.last_seen),
        evidence=evidence,
        explanation=new.explanation if new.last_seen >= old.last_seen else old.explanation,
        count=count,
        id_bucket_s=old.id_bucket_s,
    )
    return merged, run_count, fresh


def _merge_evidence(old: list[dict[str, Any]], new: list[dict[str, Any]], add: bool) -> list[dict[str, Any]]:
    """Items keyed by (kind, flow) as the detector keys them: times widened, counts added (`add`) or the
    larger kept (the same run again), list values united; at most ALERT_EVIDENCE items plus one counting
    what did not fit."""
    items: dict[tuple[Any, Any], dict[str, Any]] = {}
    dropped = {"victims_dropped": 0, "evidence_dropped": 0}
    for e in old:
        if e.get("kind") == "truncated":
            for k in dropped:
                dropped[k] = max(dropped[k], int(e.get(k, 0)))
        else:
            items[(e.get("kind"), e.get("flow"))] = dict(e)
    for e in new:
        if e.get("kind") == "truncated":
            for k in dropped:
                dropped[k] = dropped[k] + int(e.get(k, 0)) if add else max(dropped[k], int(e.get(k, 0)))
            continue
        key = (e.get("kind"), e.get("flow"))
        have = items.get(key)
        if have is None:
            if len(items) >= ALERT_EVIDENCE:
                dropped["evidence_dropped"] += 1
            else:
                items[key] = dict(e)
            continue
        for k, v in e.items():
            mine = have.get(k)
            if k == "first" and isinstance(mine, int | float):
                have[k] = min(mine, v)
            elif k == "last" and isinstance(mine, int | float):
                have[k] = max(mine, v)
            elif k == "count" and isinstance(mine, int):
                have[k] = mine + v if add else max(mine, v)
            elif isinstance(v, list) and isinstance(mine, list):
                have[k] = sorted({*map(str, mine), *map(str, v)})[:EVIDENCE_LIST_ITEMS]
            else:
                have[k] = v
    out = sorted(items.values(), key=lambda e: e.get("first") or 0.0)
    if any(dropped.values()):
        out.append({"kind": "truncated", **dropped})
    return out


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def _check_state(state: str) -> str:
    if state not in ALERT_STATES:
        raise ValueError(f"alert state must be one of {ALERT_STATES}, not {state!r}")
    return state


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (containers)
        return "unknown"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
