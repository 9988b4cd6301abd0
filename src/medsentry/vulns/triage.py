"""Triage decisions: VEX statements that persist in the vulnerability store, with their history.

A decision says what one vulnerability means for one subject (a finding's bom-ref, purl, CPE or component
name; a device's anchor, address or "vendor model"), in the neutral `vex.VexStatement` model. Decisions
are never updated in place: every change (a person deciding, a VEX file imported, a re-open) adds a row, and
the newest row per (subject, vulnerability, version) is the current decision; "" is every version, else a
version or a `vers:` range, as VEX statements narrow it. `load_triage` hands the decisions for every version
to `scan.scan_sbom` / `scan.scan_devices` (whose lookup has no version); `TriageStore.reconcile` then applies
the most specific decision for each finding's version (exact, range, every version).

Evidence and re-opening. A decision is bound to the evidence it was made on: the finding's match evidence
(matched range / CPE criteria / CNA rule / advisory product and range), the record's `modified` time (NVD/CVE
record, CSAF `current_release_date`, OSV `modified`) and the subject's version. `reconcile` compares each
finding of a scan with the decision that applies to it; a different fingerprint re-opens the decision: a new
row with status `under_investigation`, the reason (what changed) and the previous decision in its impact
statement. The old decision stays in the history; nothing is silently dropped. A decision made without
evidence (imported from a VEX file) is bound to the evidence of the first scan that applies it.

Network-aware drafts. For a device finding whose vulnerability lives in a network service (said by the
record's description, with a network attack vector) and the inventory saw the device offer no such service,
`propose_drafts` proposes `not_affected` / `vulnerable_code_not_in_execute_path`; when the service is offered
but the device has no public address, `protected_by_mitigating_control` (reachable from the hospital network
only), with lower confidence. A draft is a proposal with its evidence: it is kept apart from decisions and
applies only once `accept_draft` turns it into one.

Storage: tables on the vulnerability store's SQLite file, with their own schema version table
(`triage_schema_version`), so the feed schema's numbering is not touched.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medsentry.identify.device import Device
from medsentry.store.base import StoreError
from medsentry.store.sqlite import Migration, OwnsConnection, open_database, transaction
from medsentry.vulns.match.versions import InvalidVersion, purl_range_contains
from medsentry.vulns.records import iso
from medsentry.vulns.store import VulnStore
from medsentry.vulns.vex import VexStatement, dump_vex, read_vex

__all__ = [
    "Decision",
    "Draft",
    "Reopened",
    "TriageStore",
    "applies",
    "apply_triage",
    "evidence_of",
    "load_triage",
    "network_drafts",
    "subject_names",
    "subject_of",
]


MIGRATIONS = (
    Migration(
        1,
        "triage",
        (
            """CREATE TABLE triage_decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            subject TEXT NOT NULL,
            vulnerability TEXT NOT NULL,
            version TEXT NOT NULL,
            statement TEXT NOT NULL,
            origin TEXT NOT NULL,
            fingerprint TEXT,
            evidence TEXT,
            reason TEXT NOT NULL DEFAULT '',
            recorded REAL NOT NULL
        )""",
            "CREATE INDEX triage_decisions_key ON triage_decisions (subject, vulnerability, version, id)",
            """CREATE TABLE triage_drafts (
            subject TEXT NOT NULL,
            vulnerability TEXT NOT NULL,
            statement TEXT NOT NULL,
            evidence TEXT NOT NULL,
            confidence REAL NOT NULL,
            state TEXT NOT NULL,
            proposed REAL NOT NULL,
            PRIMARY KEY (subject, vulnerability)
        )""",
            """CREATE TABLE monitor_snapshots (
            scope TEXT NOT NULL,
            key TEXT NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (scope, key)
        ) WITHOUT ROWID""",
            """CREATE TABLE monitor_runs (
            scope TEXT PRIMARY KEY,
            last_run REAL NOT NULL,
            findings INTEGER NOT NULL
        )""",
        ),
    ),
)
_VERSION_TABLE = "triage_schema_version"


@dataclass(frozen=True, slots=True)
class Decision:
    id: int
    statement: VexStatement
    origin: str  # "manual", "vex:<file>", "reopened", "draft"
    fingerprint: str | None
    evidence: dict[str, Any] | None
    reason: str
    recorded: datetime

    @property
    def key(self) -> tuple[str, str, str]:
        """What a newer decision supersedes: the same subject, vulnerability and version (range)."""
        return (self.statement.subject, self.statement.vulnerability.upper(), self.statement.version)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "statement": self.statement.as_dict(),
            "origin": self.origin,
            "fingerprint": self.fingerprint,
            "evidence": self.evidence,
            "reason": self.reason,
            "recorded": iso(self.recorded),
        }


@dataclass(frozen=True, slots=True)
class Reopened:
    subject: str
    vulnerability: str
    previous: Decision
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "vulnerability": self.vulnerability,
            "previous": self.previous.to_json(),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Draft:
    statement: VexStatement
    evidence: dict[str, Any]
    confidence: float  # how far the inventory supports the proposal (passive observation can miss a service)
    state: str = "proposed"  # proposed | accepted | rejected | withdrawn (its evidence no longer holds)

    def to_json(self) -> dict[str, Any]:
        return {
            "statement": self.statement.as_dict(),
            "evidence": self.evidence,
            "confidence": self.confidence,
            "state": self.state,
        }


@dataclass(slots=True)
class ImportResult:
    source: str
    recorded: int = 0
    unchanged: int = 0  # same content as the current decision: nothing added
    problems: list[str] = field(default_factory=list)


# -- subjects of findings ------------------------------------------------------------------------------


def subject_names(label: Mapping[str, Any]) -> tuple[str, ...]:
    """Identifiers a decision may use for a finding's subject (the ones `scan` looks triage up by)."""
    if label.get("type") == "device":
        names = [label.get("id"), *(label.get("ips") or ())]
        if label.get("vendor") and label.get("model"):
            names.append(f"{label['vendor']} {label['model']}")
    else:
        names = [label.get("ref"), label.get("purl"), label.get("cpe"), label.get("name")]
    return tuple(dict.fromkeys(str(n) for n in names if n))


def subject_of(label: Mapping[str, Any]) -> str:
    """The subject a new decision on this finding is recorded under: the device anchor, or the component's
    bom-ref (stable across versions of an SBOM, unlike a purl with its version)."""
    return subject_names(label)[0]


def _subject_version(label: Mapping[str, Any]) -> str:
    return str((label.get("firmware") if label.get("type") == "device" else label.get("version")) or "")


def applies(spec: str, version: str) -> int | None:
    """How specifically a statement's `version` ("" = every version, a version, or a `vers:` range) covers
    a subject at `version`: 2 exactly, 1 by range, 0 as every version; None: it does not apply."""
    if not spec:
        return 0
    if not version:
        return None
    if spec.startswith("vers:"):
        try:
            return 1 if purl_range_contains(spec, version) else None
        except InvalidVersion:
            return None
    return 2 if spec == version else None


# -- evidence fingerprints -----------------------------------------------------------------------------

# match fields that restate a score, not what was matched: a new confidence formula is no new evidence
_VOLATILE = frozenset({"confidence", "why", "note"})


def evidence_of(store: VulnStore, finding: Any) -> dict[str, Any]:
    """What a decision on `finding` (a `scan.Finding`) rests on: match evidence, record time, version."""
    match = {k: v for k, v in (finding.match or {}).items() if k not in _VOLATILE}
    return {
        "match": match,
        "modified": _record_time(store, finding),
        "version": _subject_version(finding.subject),
    }


def fingerprint(evidence: Mapping[str, Any]) -> str:
    text = json.dumps(evidence, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _record_time(store: VulnStore, finding: Any) -> str | None:
    source = str(finding.source or "")
    cve = finding.vulnerability
    if source.startswith("csaf:"):
        tracking = source.removeprefix("csaf:")
        docs = store.csaf_documents(store.csaf_for_cve(cve))
        times = [iso(d.current_release_date) for d in docs if d.tracking_id == tracking]
        return max((t for t in times if t), default=None)
    if source == "osv":
        advisory = (finding.match or {}).get("advisory")
        times = [iso(a.modified) for a in store.osv_for_alias(cve) if a.id == advisory]
        if not times and advisory:  # an OSV id without CVE alias is its own key
            times = [iso(a.modified) for a in store.osv_for_alias(advisory) if a.id == advisory]
        return max((t for t in times if t), default=None)
    record = store.vulnerability(cve)
    return None if record is None else iso(record.modified)


def _changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    """What differs, in words (the re-open reason)."""
    if not old:
        return "evidence changed"
    said = []
    if old.get("modified") != new.get("modified"):
        said.append(f"record modified {old.get('modified') or '?'} -> {new.get('modified') or '?'}")
    if old.get("version") != new.get("version"):
        said.append(f"version {old.get('version') or '?'} -> {new.get('version') or '?'}")
    old_match, new_match = old.get("match") or {}, new.get("match") or {}
    keys = sorted(k for k in set(old_match) | set(new_match) if old_match.get(k) != new_match.get(k))
    if keys:
        said.append(f"match evidence changed ({', '.join(keys)})")
    return "; ".join(said) or "evidence changed"


# -- the store -----------------------------------------------------------------------------------------


def open_extension(path: str | Path) -> sqlite3.Connection:
    """A connection to the vulnerability store's file with the triage/monitor tables migrated."""
    if str(path) == ":memory:":
        raise StoreError("triage needs a vulnerability store on a file (it opens its own connection)")
    # Its own version table: the file's `schema_version` belongs to the feeds (vulns.store).
    return open_database(path, MIGRATIONS, version_table=_VERSION_TABLE)[0]


class TriageStore(OwnsConnection):
    """Decisions and drafts on the file of `store` (a `VulnStore` or its path)."""

    def __init__(self, store: VulnStore | str | Path) -> None:
        self.vulns = store if isinstance(store, VulnStore) else None
        self._conn = open_extension(store.path if isinstance(store, VulnStore) else store)

    # .. decisions ........................................................................................

    def record(
        self,
        statement: VexStatement,
        *,
        origin: str = "manual",
        evidence: Mapping[str, Any] | None = None,
        reason: str = "",
    ) -> Decision:
        """Add a decision (the newest one per subject, vulnerability and version is current)."""
        with transaction(self._conn):
            return self._insert(statement, origin, evidence, reason)

    def _insert(
        self, statement: VexStatement, origin: str, evidence: Mapping[str, Any] | None, reason: str
    ) -> Decision:
        if statement.timestamp is None:
            statement = _stamped(statement)
        now = time.time()
        fp = None if evidence is None else fingerprint(evidence)
        cur = self._conn.execute(
            "INSERT INTO triage_decisions (subject, vulnerability, version, statement, origin, fingerprint, "
            "evidence, reason, recorded) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                statement.subject,
                statement.vulnerability.upper(),
                statement.version,
                json.dumps(statement.as_dict()),
                origin,
                fp,
                None if evidence is None else json.dumps(evidence, default=str),
                reason,
                now,
            ),
        )
        return Decision(
            int(cur.lastrowid or 0),
            statement,
            origin,
            fp,
            None if evidence is None else dict(evidence),
            reason,
            datetime.fromtimestamp(now, UTC),
        )

    def decide(
        self,
        finding: Any,
        status: str,
        *,
        justification: str = "",
        impact_statement: str = "",
        action_statement: str = "",
        responses: Sequence[str] = (),
        author: str = "",
        subject: str | None = None,
        version: str = "",
    ) -> Decision:
        """Record a decision on a scan finding, bound to the evidence the finding shows now (its version
        among it: a new version re-opens the decision). `version` narrows it to a version or `vers:` range,
        as a VEX statement can."""
        if self.vulns is None:
            raise StoreError("deciding on a finding needs the VulnStore (for the record's evidence)")
        statement = VexStatement(
            vulnerability=finding.vulnerability,
            subject=subject or subject_of(finding.subject),
            status=status,
            version=version,
            justification=justification,
            impact_statement=impact_statement,
            action_statement=action_statement,
            responses=tuple(responses),
            author=author,
        )
        return self.record(statement, evidence=evidence_of(self.vulns, finding))

    def current(self) -> list[Decision]:
        rows = self._conn.execute(
            "SELECT d.* FROM triage_decisions d JOIN (SELECT MAX(id) AS id FROM triage_decisions "
            "GROUP BY subject, vulnerability, version) last ON last.id = d.id "
            "ORDER BY d.vulnerability, d.subject, d.version"
        )
        return [_decision(r) for r in rows]

    def history(self, subject: str | None = None, vulnerability: str | None = None) -> list[Decision]:
        """Every decision, oldest first, optionally of one subject and/or vulnerability."""
        sql, args = "SELECT * FROM triage_decisions WHERE 1 = 1", []
        if subject is not None:
            sql += " AND subject = ?"
            args.append(subject)
        if vulnerability is not None:
            sql += " AND vulnerability = ?"
            args.append(vulnerability.upper())
        return [_decision(r) for r in self._conn.execute(sql + " ORDER BY id", args)]

    def triage(self) -> dict[tuple[str, str], VexStatement]:
        """Current decisions for every version of their subject, in the shape `scan` takes. Decisions
        narrowed to a version or range need the finding's version: `reconcile` applies them."""
        return {
            (d.statement.subject, d.statement.vulnerability.upper()): d.statement
            for d in self.current()
            if not d.statement.version
        }

    # .. VEX files ........................................................................................

    def import_vex(self, path: str | Path, author: str = "") -> ImportResult:
        """Every statement of a CycloneDX VEX, OpenVEX or CSAF VEX file as a decision, in one transaction.
        A statement equal to the current decision adds nothing (re-importing a file is idempotent)."""
        result = ImportResult(str(path))
        statements = read_vex(path, result.problems)
        current = {d.key: d.statement for d in self.current()}
        origin = f"vex:{Path(path).name}"
        with transaction(self._conn):
            for st in statements:
                if not st.subject:
                    result.problems.append(
                        f"{st.vulnerability}: a statement without subject is not a decision"
                    )
                    continue
                if author and not st.author:
                    st = replace(st, author=author)
                key = (st.subject, st.vulnerability.upper(), st.version)
                if _same(current.get(key), st):
                    result.unchanged += 1
                    continue
                self._insert(st, origin, None, "")
                current[key] = st
                result.recorded += 1
        return result

    def export_vex(self, fmt: str, subjects: Iterable[str] | None = None, **kw: Any) -> str:
        """The current decisions as a CycloneDX ("cyclonedx"), OpenVEX ("openvex") or CSAF ("csaf") VEX
        document (text)."""
        wanted = None if subjects is None else set(subjects)
        statements = [d.statement for d in self.current() if wanted is None or d.statement.subject in wanted]
        return dump_vex(statements, fmt, **kw)

    # .. re-opening .......................................................................................

    def applicable(self, finding: Any, current: Iterable[Decision] | None = None) -> Decision | None:
        """The decision that applies to a finding: by the subject's names in `scan`'s order, the most
        specific version match (exact, then range, then every version), the newest on a tie."""
        names = subject_names(finding.subject)
        version = _subject_version(finding.subject)
        vuln = finding.vulnerability.upper()
        best: tuple[int, int, int] | None = None
        chosen = None
        for d in self.current() if current is None else current:
            st = d.statement
            if st.vulnerability.upper() != vuln or st.subject not in names:
                continue
            level = applies(st.version, version)
            if level is None:
                continue
            rank = (-names.index(st.subject), level, d.id)
            if best is None or rank > best:
                best, chosen = rank, d
        return chosen

    def reconcile(self, findings: Iterable[Any]) -> list[Reopened]:
        """Apply to each finding of a scan the decision that fits it (version-specific ones included, which
        `triage()` cannot hand to the scan) and re-open decisions whose evidence changed. Findings are
        updated in place (status and triage), so a report made after this call shows what the store says."""
        if self.vulns is None:
            raise StoreError("reconciling findings needs the VulnStore (for the record's evidence)")
        by_vuln: dict[str, list[Decision]] = {}
        for d in self.current():
            by_vuln.setdefault(d.statement.vulnerability.upper(), []).append(d)
        reopened: list[Reopened] = []
        with transaction(self._conn):
            for f in findings:
                decision = self.applicable(f, by_vuln.get(f.vulnerability.upper(), []))
                if decision is None:
                    continue
                evidence = evidence_of(self.vulns, f)
                fp = fingerprint(evidence)
                if decision.fingerprint is None:
                    # made without evidence (imported): bind it to what it is first applied to
                    self._conn.execute(
                        "UPDATE triage_decisions SET fingerprint = ?, evidence = ? WHERE id = ?",
                        (fp, json.dumps(evidence, default=str), decision.id),
                    )
                elif fp != decision.fingerprint:
                    reason = _changes(decision.evidence, evidence)
                    old = decision.statement
                    previous = f"{old.status}" + (f" ({old.justification})" if old.justification else "")
                    st = VexStatement(
                        vulnerability=old.vulnerability,
                        subject=old.subject,
                        status="under_investigation",
                        version=old.version,  # the same key: this supersedes the old decision
                        impact_statement=f"re-opened: {reason}; previous decision: {previous}",
                        author="medsentry",
                    )
                    new = self._insert(st, "reopened", evidence, reason)
                    bucket = by_vuln[f.vulnerability.upper()]
                    bucket[bucket.index(decision)] = new
                    reopened.append(Reopened(old.subject, old.vulnerability, decision, reason))
                    f.status = "under_investigation"
                    f.triage = {**new.statement.as_dict(), "reopened": reason}
                    continue
                f.status = decision.statement.status
                f.triage = decision.statement.as_dict()
        return reopened

    # .. drafts ...........................................................................................

    def propose(self, drafts: Iterable[Draft], subjects: Iterable[str] = ()) -> int:
        """Store drafts; returns how many are newly proposed. A proposed draft gets the newest evidence; a
        key already decided, or whose draft was accepted or rejected, is not proposed again. Proposed drafts
        of `subjects` (the devices just looked at) that this batch no longer proposes are withdrawn: their
        evidence no longer holds (the service has been seen since)."""
        decided = {(d.statement.subject, d.statement.vulnerability.upper()) for d in self.current()}
        states = {
            (r["subject"], r["vulnerability"]): r["state"]
            for r in self._conn.execute("SELECT subject, vulnerability, state FROM triage_drafts")
        }
        fresh = 0
        keep: set[tuple[str, str]] = set()
        with transaction(self._conn):
            for d in drafts:
                key = (d.statement.subject, d.statement.vulnerability.upper())
                keep.add(key)
                if key in decided or states.get(key) in ("accepted", "rejected"):
                    continue
                fresh += states.get(key) != "proposed"
                self._conn.execute(
                    "INSERT INTO triage_drafts (subject, vulnerability, statement, evidence, confidence, "
                    "state, proposed) VALUES (?, ?, ?, ?, ?, 'proposed', ?) "
                    "ON CONFLICT (subject, vulnerability) DO UPDATE SET statement = excluded.statement, "
                    "evidence = excluded.evidence, confidence = excluded.confidence, "
                    "state = 'proposed', proposed = excluded.proposed",
                    (
                        *key,
                        json.dumps(d.statement.as_dict()),
                        json.dumps(d.evidence, default=str),
                        d.confidence,
                        time.time(),
                    ),
                )
            looked_at = set(subjects)
            self._conn.executemany(
                "UPDATE triage_drafts SET state = 'withdrawn' WHERE subject = ? AND vulnerability = ?",
                [k for k, st in states.items() if st == "proposed" and k[0] in looked_at and k not in keep],
            )
        return fresh

    def drafts(self, state: str | None = "proposed") -> list[Draft]:
        sql = "SELECT * FROM triage_drafts" + (" WHERE state = ?" if state else "")
        rows = self._conn.execute(sql + " ORDER BY vulnerability, subject", (state,) if state else ())
        return [
            Draft(
                VexStatement.from_dict(json.loads(r["statement"])),
                json.loads(r["evidence"]),
                r["confidence"],
                r["state"],
            )
            for r in rows
        ]

    def accept_draft(self, subject: str, vulnerability: str, author: str = "") -> Decision:
        """Turn a proposed draft into a decision (the only way a draft ever applies)."""
        draft = self._draft(subject, vulnerability)
        st = replace(draft.statement, author=author or draft.statement.author)
        with transaction(self._conn):
            self._set_draft_state(subject, vulnerability, "accepted")
            return self._insert(st, "draft", draft.evidence.get("finding"), "accepted draft")

    def reject_draft(self, subject: str, vulnerability: str) -> None:
        """Dismiss a proposed draft for good: `propose` does not offer it again."""
        self._draft(subject, vulnerability)
        with transaction(self._conn):
            self._set_draft_state(subject, vulnerability, "rejected")

    def _draft(self, subject: str, vulnerability: str) -> Draft:
        found = [
            d
            for d in self.drafts()
            if d.statement.subject == subject and d.statement.vulnerability.upper() == vulnerability.upper()
        ]
        if not found:
            raise KeyError(f"no proposed draft for {subject} {vulnerability}")
        return found[0]

    def _set_draft_state(self, subject: str, vulnerability: str, state: str) -> None:
        self._conn.execute(
            "UPDATE triage_drafts SET state = ? WHERE subject = ? AND vulnerability = ?",
            (state, subject, vulnerability.upper()),
        )


def load_triage(store: VulnStore | str | Path) -> dict[tuple[str, str], VexStatement]:
    """The current decisions, in the `Triage` shape `scan_sbom` / `scan_devices` take. Drafts are not
    decisions and are not included."""
    with TriageStore(store) as ts:
        return ts.triage()


def apply_triage(store: VulnStore, findings: Iterable[Any]) -> list[Reopened]:
    """After `scan_sbom(store, sbom, triage=load_triage(store))`: apply version-specific decisions and
    re-open those whose evidence changed (findings updated in place); returns the re-opened ones."""
    with TriageStore(store) as ts:
        return ts.reconcile(findings)


def _decision(r: sqlite3.Row) -> Decision:
    return Decision(
        r["id"],
        VexStatement.from_dict(json.loads(r["statement"])),
        r["origin"],
        r["fingerprint"],
        None if r["evidence"] is None else json.loads(r["evidence"]),
        r["reason"],
        datetime.fromtimestamp(r["recorded"], UTC),
    )


def _same(stored: VexStatement | None, new: VexStatement) -> bool:
    """Equal content; a statement without timestamp was stamped when stored, so its time is not compared."""
    if stored is None:
        return False
    return stored == (new if new.timestamp is not None else replace(new, timestamp=stored.timestamp))


def _stamped(st: VexStatement) -> VexStatement:
    # whole seconds: every VEX format carries them, so an exported decision reads back equal
    now = datetime.now(UTC).replace(microsecond=0)
    return replace(st, timestamp=now)


# -- network-aware drafts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NetworkService:
    name: str
    said: re.Pattern[str]  # how a description names it
    ports: frozenset[tuple[str, int]]
    apps: frozenset[str]  # `Service.app` values of the pipeline's dissectors


def _svc(
    name: str, pattern: str, tcp: Iterable[int] = (), udp: Iterable[int] = (), apps: Iterable[str] = ()
) -> NetworkService:
    ports = {("tcp", p) for p in tcp} | {("udp", p) for p in udp}
    return NetworkService(name, re.compile(pattern, re.IGNORECASE), frozenset(ports), frozenset(apps))


# Network services a CVE description can pin a flaw to. Only services with well-known ports or a dissector:
# a flaw "in the web interface" can only be ruled out if no HTTP(S) was seen at all.
NETWORK_SERVICES = (
    _svc(
        "smb", r"\bSMB(?:v?[123])?\b|Server Message Block|\bCIFS\b|\bsrv2?\.sys\b", (139, 445), (), ("smb",)
    ),
    _svc("rdp", r"Remote Desktop|\bRDP\b|Terminal Services", (3389,), (3389,), ("rdp",)),
    _svc("telnet", r"\btelnet", (23,), (), ("telnet",)),
    _svc("ftp", r"\bFTP\b|File Transfer Protocol", (20, 21), (), ("ftp",)),
    _svc("tftp", r"\bTFTP\b", (), (69,), ("tftp",)),
    _svc("ssh", r"\bSSH\b|\bOpenSSH\b|\bdropbear\b", (22,), (), ("ssh",)),
    _svc("snmp", r"\bSNMP", (), (161, 162), ("snmp",)),
    _svc("vnc", r"\bVNC\b|\bRFB\b", (5900, 5901, 5902), (), ("vnc",)),
    _svc("dicom", r"\bDICOM\b", (104, 11112, 4242), (), ("dicom",)),
    _svc("hl7", r"\bHL7\b|\bMLLP\b", (2575,), (), ("hl7",)),
    _svc("rtsp", r"\bRTSP\b", (554,), (554,), ("rtsp",)),
    _svc("mqtt", r"\bMQTT\b", (1883, 8883), (), ("mqtt",)),
    _svc("upnp", r"\bUPnP\b|\bSSDP\b", (), (1900,), ("ssdp",)),
    _svc("dns", r"\bDNS (?:server|resolver|service)|\bdnsmasq\b", (53,), (53,), ("dns",)),
    _svc(
        "http",
        r"\bHTTPS?\b|web server|web interface|web-based|\bweb (?:UI|application|management)|\bIIS\b"
        r"|Internet Information Services|\bWebDAV\b",
        (80, 443, 8000, 8008, 8080, 8443, 8888),
        (),
        ("http", "tls"),
    ),
)
_NETWORK_VECTOR = re.compile(r"\bAV:N\b")


def services_named(description: str) -> list[NetworkService]:
    return [s for s in NETWORK_SERVICES if s.said.search(description)]


def _network_vector(store: VulnStore, finding: Any) -> bool | None:
    """True when the finding's CVSS says AV:N; None when no vector is known."""
    vector = ((finding.cvss or {}).get("vector") or "") if isinstance(finding.cvss, Mapping) else ""
    if not vector:
        record = store.vulnerability(finding.vulnerability)
        if record is not None:
            vector = " ".join(c.vector for c in (record.cvss3, record.cvss4) if c is not None)
    return bool(_NETWORK_VECTOR.search(vector)) if vector else None


def _description(store: VulnStore, finding: Any) -> str:
    """The CVE record's description, else (an advisory-only CVE, as ICSMA often has) the advisory's own
    notes on that vulnerability."""
    record = store.vulnerability(finding.vulnerability)
    if record is not None and record.description:
        return record.description
    tracking = str(finding.source or "").removeprefix("csaf:")
    texts = []
    for doc in store.csaf_documents(store.csaf_for_cve(finding.vulnerability)):
        if doc.tracking_id != tracking:
            continue
        for v in doc.document.get("vulnerabilities") or []:
            if isinstance(v, dict) and str(v.get("cve", "")).upper() == finding.vulnerability.upper():
                texts += [
                    str(n.get("text", ""))
                    for n in v.get("notes") or []
                    if isinstance(n, dict) and n.get("category") in ("description", "summary")
                ]
    return "\n".join(texts)


def network_drafts(store: VulnStore, findings: Iterable[Any], devices: Iterable[Device]) -> list[Draft]:
    """`not_affected` drafts for device findings whose vulnerable network service the inventory never saw
    the device offer (or offer beyond the hospital network). Passive observation only sees what happened in
    the capture window: the window goes into the evidence, and a person decides."""
    by_id = {d.key: d for d in devices}
    out: list[Draft] = []
    for f in findings:
        if f.subject.get("type") != "device" or f.status not in ("affected", "under_investigation"):
            continue
        device = by_id.get(str(f.subject.get("id")))
        if device is None:
            continue
        wanted = services_named(_description(store, f))
        if not wanted or _network_vector(store, f) is False:
            continue  # not a network service flaw (or a local/physical vector): nothing to rule out
        offered = [s for s in device.services if s.role == "offers"]
        matching = [
            s
            for s in offered
            if any((s.transport, s.port) in w.ports or (s.app or "") in w.apps for w in wanted)
        ]
        evidence: dict[str, Any] = {
            "services_in_description": [w.name for w in wanted],
            "ports_of_those_services": sorted(f"{t}/{p}" for w in wanted for t, p in w.ports),
            "device_offers": [f"{s.transport}/{s.port}" + (f" {s.app}" if s.app else "") for s in offered],
            "observed": {
                "first_seen": _when(device.first_seen),
                "last_seen": _when(device.last_seen),
            },
            "device_addresses": list(device.ips),
            "finding": evidence_of(store, f),
        }
        seen = evidence["observed"]
        public = [ip for ip in device.ips if _is_global(ip)]
        if not matching:
            justification = "vulnerable_code_not_in_execute_path"
            confidence = 0.7 if offered else 0.5  # a device seen offering nothing may just have been idle
            impact = (
                f"{', '.join(w.name for w in wanted)} is where the flaw lies; the device was not seen "
                f"offering it between {seen['first_seen']} and {seen['last_seen']}"
            )
        elif not public:
            justification = "protected_by_mitigating_control"
            confidence = 0.3
            evidence["matching_services"] = [f"{s.transport}/{s.port}" for s in matching]
            impact = (
                "the vulnerable service is offered, but the device has no public address: reachable from the "
                "hospital network only (segmentation is the mitigating control to verify)"
            )
        else:
            continue
        statement = VexStatement(
            vulnerability=f.vulnerability,
            subject=subject_of(f.subject),
            status="not_affected",
            justification=justification,
            impact_statement=impact,
            author="medsentry (draft)",
        )
        out.append(Draft(statement, evidence, confidence))
    return out


def _is_global(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def _when(ts: float | None) -> str | None:
    return None if ts is None else iso(datetime.fromtimestamp(ts, UTC))
