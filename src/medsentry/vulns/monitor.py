"""Lifecycle monitoring: re-match subjects against the current feeds and say what is *new* since last time.

`monitor` scans SBOMs (products) and inventory devices with the stored triage decisions, re-opens decisions
whose evidence changed (`triage.TriageStore.reconcile`), proposes network-aware drafts for devices, and
compares the findings with the snapshot the previous run of the same `scope` left in the store:

* `new_finding`     a (subject, vulnerability) the last run did not report;
* `new_kev`         a finding that was reported and is now listed in CISA KEV;
* `epss_jump`       EPSS rose by `EpssThreshold.absolute` (default +0.1), or by `factor` (×2) when the rise
                    is at least `floor` (0.01: EPSS noise on tiny values is no news);
* `triage_reopened` a decision re-opened by this run because its evidence changed;
* `gone`            a finding of a subject scanned again that is no longer reported (fixed version, changed
                    record, withdrawn advisory).

The first run of a scope has nothing to compare with: every finding is reported as `new_finding` and the
report says `first_run`. The snapshot (finding keys with KEV listing, EPSS and status; feed data times) is
replaced per group (product or device) scanned, in one transaction, so a run of the devices alone does not
make every product's findings look gone.

Groups: a product is an SBOM's name (root component, else file name) without its version, so a new SBOM
version of the same product shows only what changed; a component within it is its purl without version,
else its name. A device is its anchor (MAC, else IP).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from medsentry.identify.device import Device
from medsentry.vulns.records import iso
from medsentry.vulns.sbom import Sbom
from medsentry.vulns.scan import Finding, scan_devices, scan_sbom
from medsentry.vulns.store import DEFAULT_MAX_AGE, FeedStatus, VulnStore
from medsentry.vulns.triage import Reopened, TriageStore, network_drafts, open_extension

__all__ = ["CHANGE_KINDS", "Change", "EpssThreshold", "MonitorReport", "monitor"]

CHANGE_KINDS = ("new_finding", "new_kev", "epss_jump", "triage_reopened", "gone")
_FEEDS_KEY = "\x00feeds"  # the snapshot row holding feed data times (no finding key starts with NUL)
_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class EpssThreshold:
    absolute: float = 0.1  # a rise of this much is a jump
    factor: float = 2.0  # so is a rise to factor × the previous value ...
    floor: float = 0.01  # ... when the rise is at least this much

    def jumped(self, before: float | None, after: float | None) -> bool:
        if after is None:
            return False
        base = before or 0.0
        rise = after - base
        return rise >= self.absolute or (base > 0 and after >= self.factor * base and rise >= self.floor)


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # one of CHANGE_KINDS
    group: str  # product or device
    subject: Mapping[str, Any]
    vulnerability: str
    detail: str
    finding: Finding | None = None  # None for `gone`
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "group": self.group,
            "subject": dict(self.subject),
            "vulnerability": self.vulnerability,
            "detail": self.detail,
            "before": None if self.before is None else dict(self.before),
            "after": None if self.after is None else dict(self.after),
            "finding": None if self.finding is None else self.finding.to_json(),
        }


@dataclass(slots=True)
class MonitorReport:
    scope: str
    run: datetime
    first_run: bool  # no earlier run of this scope: every finding is new
    previous_run: datetime | None
    findings: list[tuple[str, Finding]]  # (group, finding) of this run
    changes: list[Change]
    feeds: dict[str, FeedStatus]
    feed_updates: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # data times
    reopened: list[Reopened] = field(default_factory=list)
    drafts_proposed: int = 0

    def of_kind(self, kind: str) -> list[Change]:
        return [c for c in self.changes if c.kind == kind]

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of_kind(kind)) for kind in CHANGE_KINDS}

    def to_json(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "run": iso(self.run),
            "first_run": self.first_run,
            "previous_run": iso(self.previous_run),
            "counts": self.counts(),
            "changes": [c.to_json() for c in self.changes],
            "findings": len(self.findings),
            "feeds": {name: s.to_json() for name, s in self.feeds.items()},
            "feed_updates": {k: {"before": a, "after": b} for k, (a, b) in self.feed_updates.items()},
            "drafts_proposed": self.drafts_proposed,
        }


def product_name(sbom: Sbom) -> str:
    name = sbom.name or (sbom.root.name if sbom.root is not None else "")
    return name or Path(sbom.source).name or sbom.serial or "sbom"


def _component(label: Mapping[str, Any]) -> str:
    purl = str(label.get("purl") or "")
    if purl:
        return purl.split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[0]
    return str(label.get("name") or label.get("ref") or "")


def finding_key(group: str, finding: Finding) -> str:
    if finding.subject.get("type") == "device":
        return _SEP.join((group, finding.vulnerability))
    return _SEP.join((group, _component(finding.subject), finding.vulnerability))


def _state(finding: Finding) -> dict[str, Any]:
    kev = finding.kev or {}
    epss = finding.epss or {}
    return {
        "kev": bool(kev.get("listed")),
        "kev_added": kev.get("date_added") and str(kev["date_added"]),
        "epss": epss.get("probability"),
        "status": finding.status,
    }


def monitor(
    store: VulnStore,
    sboms: Iterable[Sbom] = (),
    devices: Sequence[Device] = (),
    *,
    scope: str = "default",
    epss: EpssThreshold = EpssThreshold(),
    max_age: timedelta | None = DEFAULT_MAX_AGE,
    role: str = "supplier",
    propose_drafts: bool = True,
) -> MonitorReport:
    """Scan `sboms` and `devices`, re-open triage on changed evidence, and report what is new since the
    last run of `scope`; the snapshot for the next run is saved. Raises FeedsEmpty / FeedsStale."""
    run = datetime.now(UTC)
    feeds = store.require_fresh(max_age)
    grouped: list[tuple[str, Finding]] = []
    with TriageStore(store) as ts:
        triage = ts.triage()
        for sbom in sboms:
            result = scan_sbom(store, sbom, triage, role=role, max_age=None)
            grouped += [(product_name(sbom), f) for f in result.findings]
        drafts = 0
        if devices:
            result = scan_devices(store, devices, triage, max_age=None)
            grouped += [(str(f.subject.get("id")), f) for f in result.findings]
            if propose_drafts:
                drafts = ts.propose(
                    network_drafts(store, result.findings, devices), subjects=[d.key for d in devices]
                )
        reopened = ts.reconcile(f for _, f in grouped)

    conn = open_extension(store.path)
    try:
        previous, last_run = _load(conn, scope)
        first = last_run is None
        changes = _compare(grouped, previous, first, epss)
        feed_times = {name: iso(s.data_time) for name, s in feeds.items() if s.records}
        before_feeds = previous.get(_FEEDS_KEY, {}).get("feeds", {})
        feed_updates = {
            name: (before_feeds.get(name), t) for name, t in feed_times.items() if before_feeds.get(name) != t
        }
        _save(conn, scope, grouped, feed_times, run)
    finally:
        conn.close()
    return MonitorReport(
        scope=scope,
        run=run,
        first_run=first,
        previous_run=last_run,
        findings=grouped,
        changes=changes,
        feeds=feeds,
        feed_updates=feed_updates if not first else {},
        reopened=reopened,
        drafts_proposed=drafts,
    )


def _compare(
    grouped: list[tuple[str, Finding]],
    previous: Mapping[str, dict[str, Any]],
    first: bool,
    epss: EpssThreshold,
) -> list[Change]:
    changes: list[Change] = []
    seen: set[str] = set()
    for group, f in grouped:
        key = finding_key(group, f)
        seen.add(key)
        now = _state(f)
        before = previous.get(key)
        if before is None:
            detail = "first run" if first else "not reported by the last run"
            changes.append(Change("new_finding", group, f.subject, f.vulnerability, detail, f, None, now))
        else:
            if now["kev"] and not before.get("kev"):
                detail = f"added to CISA KEV {now['kev_added'] or ''}".strip()
                changes.append(Change("new_kev", group, f.subject, f.vulnerability, detail, f, before, now))
            if epss.jumped(before.get("epss"), now["epss"]):
                was = before.get("epss")
                detail = f"EPSS {'unknown' if was is None else f'{was:.4f}'} -> {now['epss']:.4f}"
                changes.append(Change("epss_jump", group, f.subject, f.vulnerability, detail, f, before, now))
        if f.triage is not None and f.triage.get("reopened"):
            detail = f"triage re-opened: {f.triage['reopened']}"
            changes.append(
                Change("triage_reopened", group, f.subject, f.vulnerability, detail, f, before, now)
            )
    groups = {g for g, _ in grouped}
    for key, before in previous.items():
        if key == _FEEDS_KEY or key in seen or before.get("group") not in groups:
            continue
        subject = before.get("subject") or {}
        changes.append(Change("gone", before["group"], subject, before.get("vulnerability", ""),
                              "no longer reported", None, before, None))  # fmt: skip
    return changes


def _load(conn: sqlite3.Connection, scope: str) -> tuple[dict[str, dict[str, Any]], datetime | None]:
    rows = conn.execute("SELECT key, data FROM monitor_snapshots WHERE scope = ?", (scope,))
    previous = {r["key"]: json.loads(r["data"]) for r in rows}
    run = conn.execute("SELECT last_run FROM monitor_runs WHERE scope = ?", (scope,)).fetchone()
    return previous, None if run is None else datetime.fromtimestamp(run[0], UTC)


def _save(
    conn: sqlite3.Connection,
    scope: str,
    grouped: list[tuple[str, Finding]],
    feed_times: Mapping[str, str | None],
    run: datetime,
) -> None:
    groups = sorted({g for g, _ in grouped})
    rows = {
        finding_key(g, f): {
            **_state(f),
            "group": g,
            "subject": f.subject,
            "vulnerability": f.vulnerability,
        }
        for g, f in grouped
    }
    conn.execute("BEGIN IMMEDIATE")
    try:
        # the groups scanned now are replaced whole (a finding gone is gone from the snapshot too)
        old = conn.execute("SELECT key, data FROM monitor_snapshots WHERE scope = ?", (scope,)).fetchall()
        stale = [
            r["key"] for r in old if r["key"] != _FEEDS_KEY and json.loads(r["data"]).get("group") in groups
        ]
        conn.executemany(
            "DELETE FROM monitor_snapshots WHERE scope = ? AND key = ?", [(scope, k) for k in stale]
        )
        conn.executemany(
            "INSERT INTO monitor_snapshots (scope, key, data) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET data = excluded.data",
            [
                (scope, k, json.dumps(v, default=str))
                for k, v in [*rows.items(), (_FEEDS_KEY, {"feeds": dict(feed_times)})]
            ],
        )
        conn.execute(
            "INSERT INTO monitor_runs (scope, last_run, findings) VALUES (?, ?, ?) "
            "ON CONFLICT (scope) DO UPDATE SET last_run = excluded.last_run, findings = excluded.findings",
            (scope, run.timestamp(), len(rows)),
        )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
