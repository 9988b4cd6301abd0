"""Terminal views of detection alerts (rich) and their export through `medsentry.detect.output`.

Tables take stored alerts (with their triage state) or a run's bare `Alert`s (state shown as "-"). Every
string that came off the network goes through `console._text`, as in the device views.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from medsentry.detect import output
from medsentry.detect.engine import SEVERITIES, Alert
from medsentry.report.console import _text, fits
from medsentry.report.export import iso_time
from medsentry.store.base import StoredAlert

SHORT_ID = 8  # enough to tell alerts apart in one store; the store accepts a unique prefix
FORMATS = ("jsonl", "csv", "cef")  # the JSON document: write_alerts_json

_SEVERITY_STYLE = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
_GRAVITY = {name: k for k, name in enumerate(SEVERITIES)}
_STATE_STYLE = {"new": "bold", "acknowledged": "", "closed": "dim"}
# Narrow table: "acknowledged" would be the widest cell of its column.
_STATE_SHORT = {"new": "new", "acknowledged": "acked", "closed": "closed"}

# The narrow table's Rule column: the longest rule name after its family ("dicom_association_scan"), and
# what an 80-column terminal leaves it beside the id, attacker MAC, victim count and times.
_NARROW_RULE = 22


def _parts(item: StoredAlert | Alert) -> tuple[Alert, str | None]:
    return (item.alert, item.state) if isinstance(item, StoredAlert) else (item, None)


def victim_count(alert: Alert) -> str:
    """Victims named, with "+" when the detector dropped some past its cap."""
    dropped = sum(int(e.get("victims_dropped", 0)) for e in alert.evidence if e.get("kind") == "truncated")
    return f"{len(alert.victims)}{'+' if dropped else ''}"


def _attacker(alert: Alert) -> str | None:
    return alert.attacker.get("ip") or alert.attacker.get("mac")


def _seen(alert: Alert) -> Text:
    """Two short lines (UTC): the first day, then the times of day, or the last day if it differs."""
    first, last = iso_time(alert.first_seen), iso_time(alert.last_seen)
    if first[:10] == last[:10]:
        return Text(f"{first[:10]}\n{first[11:16]}-{last[11:16]}")
    return Text(f"{first[:10]}\n..{last[:10]}")


def most_severe(alerts: Iterable[Alert], limit: int) -> list[Alert]:
    """The `limit` alerts a run's summary has room for: gravest severity first, then oldest first."""
    return sorted(alerts, key=lambda a: (-_GRAVITY.get(a.severity, -1), a.first_seen))[:limit]


def alert_table(
    alerts: Iterable[StoredAlert | Alert], title: str | None = "Alerts", wide: bool = True,
    caption: str | None = None,
) -> Table:
    """One row per alert, in the order given. `wide=False` (an 80-column terminal)
    stacks state under the short id, technique and severity under the rule and the MAC under the
    attacker's IP, and shortens the times, so that no address or id is cut."""
    table = Table(title=title, caption=caption)
    if wide:
        # Only the technique's name wraps: an id, rule, address or time cut or folded is one misread.
        for name in ("ID", "Rule", "Technique", "Severity", "Attacker", "Victims", "First seen", "Last seen"):
            tech = name == "Technique"
            table.add_column(name, no_wrap=not tech, overflow="fold", min_width=14 if tech else None)
        table.add_column("Count", justify="right", no_wrap=True)
        table.add_column("State", no_wrap=True)
    else:
        table.add_column("Alert", no_wrap=True)
        # An IPv6 attacker folds over two lines rather than squeezing the rule into a sliver.
        table.add_column("Rule", overflow="fold", min_width=_NARROW_RULE)
        table.add_column("Attacker", overflow="fold", min_width=17)
        table.add_column("Vic.", justify="right", no_wrap=True)
        table.add_column("Seen, UTC", no_wrap=True)
    for item in alerts:
        alert, state = _parts(item)
        severity = Text(alert.severity, style=_SEVERITY_STYLE.get(alert.severity, ""))
        state_text = Text(state or "-", style=_STATE_STYLE.get(state or "", "dim"))
        technique = alert.technique.get("id", "")
        if wide:
            table.add_row(
                alert.id[:SHORT_ID],
                _text(alert.rule),
                _text(f"{technique} {alert.technique.get('name', '')}".strip()),
                severity,
                _text(_attacker(alert)),
                victim_count(alert),
                iso_time(alert.first_seen),
                iso_time(alert.last_seen),
                f"{alert.count:,}",
                state_text,
            )
        else:
            state_text.plain = _STATE_SHORT.get(state or "", "-")
            mac = alert.attacker.get("mac") if alert.attacker.get("ip") else None
            table.add_row(
                Text.assemble(alert.id[:SHORT_ID], "\n", state_text),
                Text.assemble(_rule_lines(alert.rule), "\n", (technique, "dim"), " ", severity),
                Text.assemble(_text(_attacker(alert)), *(("\n", _text(mac)) if mac else ())),
                victim_count(alert),
                _seen(alert),
            )
    return table


def _rule_lines(rule: str) -> Text:
    """A rule too long for the narrow Rule column breaks after its family ("recon.", "baseline."), where
    a reader expects it, instead of being folded inside a word."""
    family, dot, name = rule.partition(".")
    if len(rule) <= _NARROW_RULE or not dot:
        return _text(rule)
    return Text.assemble(_text(family + dot), "\n", _text(name))


def fitting_alert_table(
    alerts: Sequence[StoredAlert | Alert],
    width: int,
    title: str | None = "Alerts",
    caption: str | None = None,
) -> Table:
    """The wide table where all of its ids, rules, addresses and times fit in `width` columns (IPv6
    attackers need more of them), else the narrow one."""
    table = alert_table(alerts, title, wide=True, caption=caption)
    if fits(table, width):
        return table
    return alert_table(alerts, title, wide=False, caption=caption)


def alert_detail(item: StoredAlert | Alert) -> Group:
    """Everything about one alert: what, who, when, the explanation, each evidence item, victims and (for a
    stored alert) its state history."""
    alert, state = _parts(item)
    t = alert.technique
    parts: list[RenderableType] = [
        Text.assemble(
            ("Alert ", "bold"),
            alert.id,
            "  ",
            _text(alert.rule),
            "  ",
            (alert.severity, _SEVERITY_STYLE.get(alert.severity, "")),
            f"  state {state}" if state else "",
        ),
        Text.assemble(
            "ATT&CK ",
            _text(f"{t.get('id', '')} {t.get('name', '')} ({t.get('matrix', '')})"),
            "\nattacker ",
            _text(f"{alert.attacker.get('ip') or '-'} {alert.attacker.get('mac') or '-'}"),
            f"\nseen {iso_time(alert.first_seen)} .. {iso_time(alert.last_seen)}, {alert.count:,} time(s)",
        ),
        Text.assemble(("Why: ", "bold"), _text(alert.explanation)),
    ]
    if alert.evidence:
        # Lines, not a table: hash lists and field names wrap badly in narrow cells.
        lines = [Text("Evidence", style="bold")]
        for e in alert.evidence:
            head = [_text(e.get("kind")), "  ", _text(e.get("flow") or "")]
            if "count" in e:
                head.append(f"  {e['count']:,} time(s)")
            if "first" in e and "last" in e:
                head.append(f"  {iso_time(e['first'])} .. {iso_time(e['last'])}")
            lines.append(Text.assemble("- ", *head))
            for k, v in sorted(e.items()):
                if k not in ("kind", "flow", "first", "last", "count"):
                    lines.append(Text.assemble("    ", (f"{k}: ", "dim"), _text(_value(v))))
        parts.append(Text("\n").join(lines))
    if alert.victims:
        victims = Table(title=f"Victims ({victim_count(alert)})")
        for name in ("IP", "MAC"):
            victims.add_column(name, no_wrap=True)
        for v in alert.victims:
            victims.add_row(_text(v.get("ip")), _text(v.get("mac")))
        parts.append(victims)
    if isinstance(item, StoredAlert) and item.history:
        history = Table(title="History")
        for name in ("When", "From", "To", "By", "Run", "Note"):
            history.add_column(name, overflow="fold")
        for c in item.history:
            run = "" if c.run_id is None else str(c.run_id)
            history.add_row(
                iso_time(c.ts), _text(c.old_state), c.new_state, _text(c.actor), run, _text(c.note)
            )
        parts.append(history)
    return Group(*parts)


def _value(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def alert_dicts(alerts: Iterable[StoredAlert | Alert]) -> list[dict[str, Any]]:
    """The `--alerts` document's entries; stored alerts add their "state"."""
    return [a.to_dict() for a in alerts]


def write_alerts_json(path: str | Path, alerts: Iterable[StoredAlert | Alert]) -> None:
    """The contract document {"alerts": [...]} (`medsentry alerts --json FILE`, '-' for stdout)."""
    output.write_json(path, [_parts(a)[0] for a in alerts])


def render_alerts(alerts: Sequence[StoredAlert | Alert], fmt: str) -> str:
    """Alerts as text in one of FORMATS, by `medsentry.detect.output`; JSON lines carry the state too."""
    if fmt == "jsonl":
        return output.to_jsonl(alert_dicts(alerts))
    if fmt == "csv":
        return output.to_csv(alert_dicts(alerts))
    if fmt == "cef":
        return "".join(output.to_cef(a) + "\n" for a in alert_dicts(alerts))
    raise ValueError(f"alert format must be one of {FORMATS}, not {fmt!r}")
