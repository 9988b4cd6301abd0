"""Vulnerability views: findings, monitor changes, triage decisions and drafts as rich tables and CSV.

Presentation only: what is new, re-opened or a draft is decided in `medsentry.vulns`; JSON comes from the
`to_json` methods there. Strings from SBOMs, feeds and the network go through `_text` / `_cell`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Table
from rich.text import Text

from medsentry.report.console import _text
from medsentry.report.export import _cell
from medsentry.vulns.monitor import MonitorReport
from medsentry.vulns.scan import Finding
from medsentry.vulns.triage import Decision, Draft

FINDING_COLUMNS = (
    "subject_type", "subject", "subject_version", "vulnerability", "source", "method", "status",
    "priority", "score", "kev", "epss", "cvss", "cvss_vector", "triage_status", "triage_justification",
    "match",
)  # fmt: skip
MONITOR_COLUMNS = ("scope", "first_run", "group", "change", "subject", "vulnerability", "detail", "status",
                   "priority", "kev", "epss")  # fmt: skip
_STATUS_STYLE = {
    "affected": "bold red",
    "under_investigation": "yellow",
    "not_affected": "green",
    "fixed": "green",
}
_CHANGE_STYLE = {
    "new_finding": "bold",
    "new_kev": "bold red",
    "epss_jump": "red",
    "triage_reopened": "yellow",
    "gone": "dim",
}


def subject_label(subject: Mapping[str, Any]) -> str:
    """'jQuery 3.1.1', or 'Philips IntelliVue MX40 fw 1.2 (00:09:fb:..)' for a device."""
    if subject.get("type") == "device":
        name = " ".join(str(subject[k]) for k in ("vendor", "model") if subject.get(k))
        firmware = f" fw {subject['firmware']}" if subject.get("firmware") else ""
        return f"{name}{firmware} ({subject.get('id', '?')})"
    return " ".join(str(subject[k]) for k in ("name", "version") if subject.get(k)) or str(subject.get("ref"))


def _cvss(f: Finding) -> tuple[str, str]:
    c = f.cvss or {}
    return ("" if c.get("base_score") is None else f"{c['base_score']:.1f}", str(c.get("vector") or ""))


def _epss(f: Finding) -> str:
    p = (f.epss or {}).get("probability")
    return "" if p is None else f"{p:.4f}"


def _kev(f: Finding) -> str:
    k = f.kev
    return "" if k is None else ("yes" if k.get("listed") else "no")


def findings_table(
    findings: Iterable[Finding], title: str = "Vulnerabilities", limit: int | None = None
) -> Table:
    """Highest priority first; with `limit`, only that many rows and a caption saying how many more (a
    terminal is no place for a thousand findings: JSON and CSV carry them all)."""
    ranked = sorted(findings, key=lambda f: -float((f.priority or {}).get("score") or 0.0))
    shown = ranked if limit is None else ranked[:limit]
    table = Table(title=title)
    if len(shown) < len(ranked):
        table.caption = f"{len(ranked) - len(shown)} more findings of lower priority: use --json or --csv"
    for name in (
        "Subject",
        "Vulnerability",
        "Status",
        "Priority",
        "KEV",
        "EPSS",
        "CVSS",
        "Matched by",
        "Triage",
    ):
        table.add_column(name, justify="right" if name in ("EPSS", "CVSS") else "left", overflow="fold")
    for f in shown:
        priority = f.priority or {}
        triage = f.triage or {}
        table.add_row(
            _text(subject_label(f.subject)),
            _text(f.vulnerability),
            Text(f.status, style=_STATUS_STYLE.get(f.status, "")),
            _text(f"{priority.get('level', '')} {priority.get('score', '')}".strip() or None),
            Text(_kev(f) or "-", style="bold red" if _kev(f) == "yes" else ""),
            _text(_epss(f) or None),
            _text(_cvss(f)[0] or None),
            _text(f"{f.match.get('method', '')} ({f.source})"),
            _text(" ".join(v for v in (triage.get("status"), triage.get("justification")) if v) or None),
        )
    return table


def findings_csv(findings: Iterable[Finding]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FINDING_COLUMNS)
    for f in findings:
        priority = f.priority or {}
        triage = f.triage or {}
        score, vector = _cvss(f)
        row = (
            f.subject.get("type"), subject_label(f.subject),
            f.subject.get("firmware") if f.subject.get("type") == "device" else f.subject.get("version"),
            f.vulnerability, f.source, f.match.get("method"), f.status, priority.get("level"),
            priority.get("score"), _kev(f), _epss(f), score, vector, triage.get("status"),
            triage.get("justification"), json.dumps(f.match, sort_keys=True, default=str),
        )  # fmt: skip
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def monitor_table(report: MonitorReport) -> Table:
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items() if n) or "nothing new"
    since = (
        "first run: everything is new" if report.first_run else f"since {report.previous_run:%Y-%m-%d %H:%M}"
    )
    table = Table(title=f"Monitor '{report.scope}' ({since}): {counts}")
    for name in ("Group", "Change", "Subject", "Vulnerability", "Detail", "Status", "Priority"):
        table.add_column(name, overflow="fold")
    for c in report.changes:
        f = c.finding
        priority = (f.priority or {}) if f is not None else {}
        table.add_row(
            _text(c.group),
            Text(c.kind, style=_CHANGE_STYLE.get(c.kind, "")),
            _text(subject_label(c.subject)),
            _text(c.vulnerability),
            _text(c.detail),
            _text(f.status if f is not None else None),
            _text(f"{priority.get('level', '')} {priority.get('score', '')}".strip() or None),
        )
    return table


def monitor_csv(report: MonitorReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MONITOR_COLUMNS)
    for c in report.changes:
        f = c.finding
        row = (
            report.scope, report.first_run, c.group, c.kind, subject_label(c.subject), c.vulnerability,
            c.detail, f.status if f else "", (f.priority or {}).get("level") if f else "",
            _kev(f) if f else "", _epss(f) if f else "",
        )  # fmt: skip
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def decisions_table(decisions: Iterable[Decision], title: str = "Triage decisions") -> Table:
    table = Table(title=title)
    for name in ("Subject", "Vulnerability", "Status", "Justification", "Author", "Origin", "When", "Reason"):
        table.add_column(name, overflow="fold")
    for d in decisions:
        st = d.statement
        table.add_row(
            _text(st.subject),
            _text(st.vulnerability),
            Text(st.status, style=_STATUS_STYLE.get(st.status, "")),
            _text(st.justification or None),
            _text(st.author or None),
            _text(d.origin),
            _text(f"{d.recorded:%Y-%m-%d %H:%M}"),
            _text(d.reason or None),
        )
    return table


def drafts_table(drafts: Iterable[Draft], title: str = "Triage drafts (proposals, not decisions)") -> Table:
    table = Table(title=title)
    for name in ("Subject", "Vulnerability", "Proposed", "Justification", "Confidence", "Evidence"):
        table.add_column(name, overflow="fold")
    for d in drafts:
        st = d.statement
        table.add_row(
            _text(st.subject),
            _text(st.vulnerability),
            _text(st.status),
            _text(st.justification),
            _text(f"{d.confidence:.1f}"),
            _text(st.impact_statement),
        )
    return table
