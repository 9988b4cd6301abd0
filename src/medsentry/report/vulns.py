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

from medsentry.report.console import _text, fits
from medsentry.report.export import _cell
from medsentry.vulns.monitor import CHANGE_KINDS, MonitorReport
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
    findings: Iterable[Finding], title: str = "Vulnerabilities", limit: int | None = None,
    width: int | None = None,
) -> Table:
    """Highest priority first; with `limit`, only that many rows and a caption saying how many more (a
    terminal is no place for a thousand findings: JSON and CSV carry them all). With `width` (a terminal's
    columns), a column each where all of it fits uncut, else the narrow layout: status under the
    vulnerability, scores under the priority, how it matched under the subject."""
    ranked = sorted(findings, key=lambda f: -float((f.priority or {}).get("score") or 0.0))
    shown = ranked if limit is None else ranked[:limit]
    caption = f"{len(ranked) - len(shown)} more findings of lower priority: use --json or --csv" if len(
        shown) < len(ranked) else None  # fmt: skip
    table = _findings_wide(shown, title, caption)
    if fits(table, width):
        return table
    return _findings_narrow(shown, title, caption)


def _findings_wide(shown: list[Finding], title: str, caption: str | None) -> Table:
    # Ids, statuses and scores never wrap; a subject wraps between words (its MAC whole), a match before
    # its advisory's id.
    table = Table(title=title, caption=caption)
    table.add_column("Subject", overflow="fold", min_width=_SUBJECT_MIN)
    for name in ("Vulnerability", "Status", "Priority", "KEV", "EPSS", "CVSS"):
        table.add_column(name, justify="right" if name in ("EPSS", "CVSS") else "left", no_wrap=True)
    table.add_column("Matched by", overflow="fold", min_width=_MATCH_MIN)
    table.add_column("Triage", overflow="fold")
    for f in shown:
        table.add_row(
            _text(subject_label(f.subject)),
            _text(f.vulnerability),
            _status(f.status),
            _text(_priority(f) or None),
            Text(_kev(f) or "-", style="bold red" if _kev(f) == "yes" else ""),
            _text(_epss(f) or None),
            _text(_cvss(f)[0] or None),
            _text(_matched(f)),
            _text(_triage(f) or None),
        )
    return table


def _findings_narrow(shown: list[Finding], title: str, caption: str | None) -> Table:
    table = Table(title=title, caption=caption)
    table.add_column("Vulnerability", no_wrap=True)
    table.add_column("Priority", no_wrap=True)
    table.add_column("Subject / matched by", overflow="fold", min_width=_SUBJECT_MIN)
    table.add_column("Triage", overflow="fold")
    for f in shown:
        cvss, epss = _cvss(f)[0], _epss(f)
        scores = " ".join(s for s in (cvss and f"CVSS {cvss}", epss and f"EPSS {epss}") if s)
        table.add_row(
            Text.assemble(_text(f.vulnerability), "\n", _status(f.status)),
            Text.assemble(_text(_priority(f) or None), "\n" if scores else "", scores,
                          ("\nin KEV", "bold red") if _kev(f) == "yes" else ""),
            Text.assemble(_text(subject_label(f.subject)), "\n", _dim(_matched(f))),
            _text(_triage(f) or None),
        )
    return table


# A subject's MAC in parentheses ("(44:4b:5d:63:75:06)") and an advisory match ("(csaf:ICSMA-18-037-02)")
# stay whole on their line.
_SUBJECT_MIN = 20
_MATCH_MIN = 22


def _dim(value: object) -> Text:
    """A secondary line of a narrow cell; from an SBOM, a feed or the network, so through `_text`."""
    text = _text(value)
    text.stylize("dim")
    return text


def _status(status: str) -> Text:
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def _priority(f: Finding) -> str:
    priority = f.priority or {}
    return f"{priority.get('level', '')} {priority.get('score', '')}".strip()


def _matched(f: Finding) -> str:
    return f"{f.match.get('method', '')} ({f.source})"


def _triage(f: Finding) -> str:
    triage = f.triage or {}
    return " ".join(v for v in (triage.get("status"), triage.get("justification")) if v)


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


def monitor_table(report: MonitorReport, width: int | None = None) -> Table:
    """One row per change. With `width` (a terminal's columns), a column each where all of it fits uncut,
    else the narrow layout: the group under the change, status and priority under the vulnerability, the
    detail under the subject."""
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items() if n) or "nothing new"
    since = (
        "first run: everything is new" if report.first_run else f"since {report.previous_run:%Y-%m-%d %H:%M}"
    )
    title = f"Monitor '{report.scope}' ({since}): {counts}"
    table = Table(title=title)
    for name in ("Group", "Change", "Subject", "Vulnerability", "Detail", "Status", "Priority"):
        if name in ("Group", "Subject", "Detail"):
            table.add_column(name, overflow="fold", min_width=_SUBJECT_MIN if name == "Subject" else None)
        else:
            table.add_column(name, no_wrap=True)
    for c in report.changes:
        f = c.finding
        table.add_row(
            _text(c.group),
            _change(c.kind),
            _text(subject_label(c.subject)),
            _text(c.vulnerability),
            _text(c.detail),
            _text(f.status if f is not None else None),
            _text((_priority(f) if f is not None else "") or None),
        )
    if fits(table, width):
        return table
    table = Table(title=title)
    table.add_column("Change", overflow="fold", min_width=max(map(len, CHANGE_KINDS)))  # a group may fold
    table.add_column("Vulnerability", no_wrap=True)
    table.add_column("Subject / detail", overflow="fold", min_width=_SUBJECT_MIN)
    for c in report.changes:
        f = c.finding
        about = (("\n", _status(f.status), "\n", _priority(f)) if f is not None else ())
        table.add_row(
            Text.assemble(_change(c.kind), "\n", _dim(c.group)),
            Text.assemble(_text(c.vulnerability), *about),
            Text.assemble(_text(subject_label(c.subject)), "\n", _dim(c.detail)),
        )
    return table


def _change(kind: str) -> Text:
    return Text(kind, style=_CHANGE_STYLE.get(kind, ""))


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


def decisions_table(decisions: Iterable[Decision], title: str = "Triage decisions", width: int | None = None
                    ) -> Table:  # fmt: skip
    """With `width` (a terminal's columns), a column each where all of it fits uncut, else the narrow
    layout: status under the vulnerability, justification and reason under the subject, who, how and when
    in one cell."""
    rows = list(decisions)
    table = Table(title=title)
    for name in ("Subject", "Vulnerability", "Status", "Justification", "Author", "Origin", "When", "Reason"):
        wraps = name in ("Subject", "Reason")
        table.add_column(name, overflow="fold", no_wrap=not wraps)
    for d in rows:
        st = d.statement
        table.add_row(
            _text(st.subject),
            _text(st.vulnerability),
            _status(st.status),
            _text(st.justification or None),
            _text(st.author or None),
            _text(d.origin),
            _text(f"{d.recorded:%Y-%m-%d %H:%M}"),
            _text(d.reason or None),
        )
    if fits(table, width):
        return table
    table = Table(title=title)
    table.add_column("Vulnerability", no_wrap=True)
    table.add_column("Subject / why", overflow="fold", min_width=_SUBJECT_MIN)
    table.add_column("Decided", no_wrap=True)
    for d in rows:
        st = d.statement
        why = [_dim(v) for v in (st.justification, d.reason) if v]
        table.add_row(
            Text.assemble(_text(st.vulnerability), "\n", _status(st.status)),
            Text.assemble(_text(st.subject), *(part for w in why for part in ("\n", w))),
            Text.assemble(_text(st.author or None), "\n", d.origin, "\n", f"{d.recorded:%Y-%m-%d %H:%M}"),
        )
    return table


def drafts_table(drafts: Iterable[Draft], title: str = "Triage drafts (proposals, not decisions)",
                 width: int | None = None) -> Table:  # fmt: skip
    """As `decisions_table`: narrow, the proposal and its confidence under the vulnerability, justification
    and evidence under the subject."""
    rows = list(drafts)
    table = Table(title=title)
    for name in ("Subject", "Vulnerability", "Proposed", "Justification", "Confidence", "Evidence"):
        wraps = name in ("Subject", "Evidence")
        table.add_column(name, overflow="fold", no_wrap=not wraps)
    for d in rows:
        st = d.statement
        table.add_row(
            _text(st.subject),
            _text(st.vulnerability),
            _text(st.status),
            _text(st.justification),
            _text(f"{d.confidence:.1f}"),
            _text(st.impact_statement),
        )
    if fits(table, width):
        return table
    table = Table(title=title)
    table.add_column("Vulnerability", no_wrap=True)
    table.add_column("Subject / why", overflow="fold", min_width=_SUBJECT_MIN)
    for d in rows:
        st = d.statement
        table.add_row(
            Text.assemble(
                _text(st.vulnerability), "\n", _text(st.status), f"\nconfidence {d.confidence:.1f}"
            ),
            Text.assemble(_text(st.subject), *(part for v in (st.justification, st.impact_statement) if v
                                               for part in ("\n", _dim(v)))),
        )
    return table
