"""Terminal views (rich): the device table, one device in detail, and the end-of-run summary.

Each returns a renderable for `Console.print`. Every string that came off the network goes through
`_text`: rich would otherwise read "[...]" in a hostname as markup, and an ESC in a banner would reach
the terminal as a control sequence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from medsentry.identify.device import Device, Evidence
from medsentry.identify.taxonomy import classes
from medsentry.report.export import iso_time
from medsentry.store.base import DeviceChange, Run, RunStats, UpsertResult
from medsentry.store.merge import canonical_json, service_label

if TYPE_CHECKING:  # the vulnerability store is 20 ms of imports every device and alert command would pay
    from medsentry.vulns.store import FeedStatus

_ATTRIBUTES = ("device_class", "vendor", "model", "firmware", "os", "hostname", "label")
# SSVC Safety Impact values, gravest first (data/taxonomy.yaml)
_SAFETY_ORDER = {"Catastrophic": 0, "Critical": 1, "Marginal": 2, "Negligible": 3}


_UNBOUNDED = 10_000  # columns: a console this wide measures a table's own minimum width


def fits(table: Table, width: int | None) -> bool:
    """Whether `table` fits in `width` columns with none of its no-wrap cells (ids, addresses) cut; with no
    width given, it does."""
    return width is None or Console(width=_UNBOUNDED).measure(table).minimum <= width


def most_relevant(devices: Iterable[Device], limit: int) -> list[Device]:
    """The `limit` devices a run's summary has room for: medical devices first, by how gravely a
    compromise could harm a patient (the class's safety impact), then the rest by the same measure;
    otherwise in the order given."""
    known = classes()

    def rank(d: Device) -> tuple[bool, int]:
        c = known.get(d.device_class)
        return (not (c and c.medical), _SAFETY_ORDER.get(c.safety_impact, 4) if c else 4)

    return sorted(devices, key=rank)[:limit]


def device_table(
    devices: Iterable[Device], title: str | None = "Devices", width: int | None = None,
    caption: str | None = None,
) -> Table:
    """A column each (with label and last seen) where that fits `width` columns (a terminal's; None: always)
    with keys, addresses and class names whole and no word of a vendor, model or firmware cut; else the
    narrow layout: the address under the device key, vendor, model and firmware on lines of one cell."""
    rows = list(devices)
    table = _device_table(rows, title, caption, wide=True)
    if fits(table, width):
        return table
    return _device_table(rows, title, caption, wide=False)


def _device_table(rows: list[Device], title: str | None, caption: str | None, wide: bool) -> Table:
    with_label = wide or any(d.label for d in rows)
    table = Table(title=title, caption=caption)
    table.add_column("Device", no_wrap=True)
    if wide:
        table.add_column("IP", no_wrap=True)
        table.add_column("Class", no_wrap=True)
        for name in ("Vendor", "Model", "Firmware"):
            words = _longest_word(getattr(d, name.lower()) for d in rows)
            table.add_column(name, overflow="fold", min_width=words)
    else:
        table.add_column("Class", no_wrap=True)
        table.add_column("Vendor / model / firmware", overflow="fold")
    if with_label:
        table.add_column("Label", overflow="fold", min_width=_longest_word(d.label for d in rows))
    table.add_column("Conf.", justify="right", no_wrap=True)
    if wide:
        table.add_column("Last seen", no_wrap=True)
    for d in rows:
        address = _text(_addresses(d.ips) if d.ips else None)
        if wide:
            cells = [_text(d.key), address, _text(d.device_class), _text(d.vendor), _text(d.model),
                     _text(d.firmware)]
        else:
            # "fw" tells a firmware line from a model line when the model is unknown
            made = [_text(v) for v in (d.vendor, d.model) if v]
            made += [Text.assemble(("fw ", "dim"), _text(d.firmware))] if d.firmware else []
            cells = [Text.assemble(_text(d.key), "\n", address), _text(d.device_class),
                     Text("\n").join(made) if made else _text(None)]
        if with_label:
            cells.append(_text(d.label))
        cells.append(Text(f"{d.confidence:.2f}"))
        if wide:
            cells.append(Text(iso_time(d.last_seen)))
        table.add_row(*cells)
    return table


def _longest_word(values: Iterable[str | None]) -> int:
    return max((len(word) for v in values if v for word in str(v).split()), default=1)


def _addresses(ips: Sequence[str]) -> str:
    """The first routable address, '+N' for the rest; IPv6 link-local only when there is nothing else."""
    routable = [ip for ip in ips if not ip.lower().startswith("fe80:")] or list(ips)
    rest = len(ips) - 1
    return routable[0] + (f" +{rest}" if rest else "")


def device_detail(device: Device, history: Sequence[DeviceChange] = ()) -> Group:
    """Each attribute with the evidence for it (strongest first), then services, identities, history."""
    parts: list[RenderableType] = [
        Text.assemble(("Device ", "bold"), _text(device.key)),
        Text(
            f"MAC {device.mac or '-'}{' (randomized)' if device.mac_randomized else ''}  "
            f"IPs {', '.join(device.ips) or '-'}  confidence {device.confidence:.2f}  "
            f"seen {iso_time(device.first_seen) or '?'} .. {iso_time(device.last_seen) or '?'}"
        ),
    ]
    by_attribute: dict[str, list[Evidence]] = {}
    for e in sorted(device.evidence, key=lambda e: -e.weight):
        by_attribute.setdefault(e.attribute, []).append(e)

    attributes = Table(title="Attributes", show_lines=True)
    for name in ("Attribute", "Value", "Evidence"):
        attributes.add_column(name)
    names = [*_ATTRIBUTES, *(a for a in by_attribute if a not in _ATTRIBUTES)]
    for name in names:
        value = getattr(device, name) if name in _ATTRIBUTES else None
        claims = by_attribute.get(name, [])
        if value is None and not claims:
            continue
        lines = Text("\n").join(
            Text.assemble(f"{e.weight:.2f} {e.protocol}: ", _text(e.detail), _claimed(e, value))
            for e in claims
        )
        attributes.add_row(_text(name), _text(value), lines)
    parts.append(attributes)

    if device.services:
        services = Table(title="Services")
        for name in ("Service", "Peers"):
            services.add_column(name)
        for s in device.services:
            services.add_row(_text(service_label(s)), str(s.peers))
        parts.append(services)

    if device.identities:
        identities = Table(title="Identities")
        for name in ("Name", "Value"):
            identities.add_column(name)
        for name, value in sorted(device.identities.items()):
            identities.add_row(_text(name), _text(value if isinstance(value, str) else canonical_json(value)))
        parts.append(identities)

    if history:
        changes = Table(title="History")
        for name in ("When", "Attribute", "Old", "New", "Run"):
            changes.add_column(name)
        for c in history:
            run = "" if c.run_id is None else str(c.run_id)
            changes.add_row(iso_time(c.ts), _text(c.attribute), _text(c.old), _text(c.new), run)
        parts.append(changes)
    return Group(*parts)


def run_summary(stats: RunStats, devices: Sequence[Device], result: UpsertResult | None = None) -> Group:
    """Throughput, devices by class and what each dissector rejected as malformed."""
    totals = Table(title="Run summary", show_header=False)
    totals.add_column("")
    totals.add_column("", justify="right")
    for name, value in (
        ("packets", f"{stats.packets:,}"),
        ("bytes", f"{stats.bytes:,}"),
        ("flows", f"{stats.flows:,}"),
        ("observations", f"{stats.observations:,}"),
        ("devices", f"{len(devices):,}"),
        ("malformed", f"{sum(stats.malformed.values()):,}"),
        ("elapsed", f"{stats.elapsed:.2f} s"),
        ("packets/s", f"{stats.packets_per_s:,.0f}"),
    ):
        totals.add_row(name, value)
    if result is not None:
        totals.add_row("inventory", f"{result.new} new, {result.updated} updated, {result.changes} changes")

    classes = Table(title="Devices by class")
    classes.add_column("Class")
    classes.add_column("Devices", justify="right")
    for device_class, count in Counter(d.device_class for d in devices).most_common():
        classes.add_row(_text(device_class), str(count))
    parts: list[RenderableType] = [totals, classes]

    if stats.malformed:
        malformed = Table(title="Malformed by dissector")
        malformed.add_column("Dissector")
        malformed.add_column("Messages", justify="right")
        for name, count in sorted(stats.malformed.items(), key=lambda item: -item[1]):
            malformed.add_row(_text(name), f"{count:,}")
        parts.append(malformed)
    return Group(*parts)


def runs_table(runs: Iterable[Run], width: int | None = None) -> Table:
    """The analysis runs merged into the inventory, in the order given. With `width` (a terminal's
    columns), a column each where it fits, else counts and times stacked so that the inputs keep room."""
    rows = list(runs)
    table = Table(title="Runs")
    table.add_column("Run", justify="right", no_wrap=True)
    table.add_column("Started, UTC", no_wrap=True)
    table.add_column("Inputs", overflow="fold", min_width=20)
    for name in ("Packets", "Flows", "Malformed", "Seconds", "Packets/s"):
        table.add_column(name, justify="right", no_wrap=True)
    for run in rows:
        st = run.stats
        table.add_row(
            str(run.id), _started(run), _inputs(run), f"{st.packets:,}", f"{st.flows:,}",
            f"{sum(st.malformed.values()):,}", f"{st.elapsed:.1f}", f"{st.packets_per_s:,.0f}",
        )  # fmt: skip
    if fits(table, width):
        return table
    table = Table(title="Runs")
    table.add_column("Run", no_wrap=True)
    table.add_column("Inputs", overflow="fold", min_width=20)
    table.add_column("Traffic", justify="right", no_wrap=True)
    table.add_column("Time", justify="right", no_wrap=True)
    for run in rows:
        st = run.stats
        table.add_row(
            f"{run.id}\n{_started(run)}",
            _inputs(run),
            f"{st.packets:,} packets\n{st.flows:,} flows\n{sum(st.malformed.values()):,} malformed",
            f"{st.elapsed:.1f} s\n{st.packets_per_s:,.0f}/s",
        )
    return table


def _started(run: Run) -> str:
    return iso_time(run.stats.started).replace("T", " ").removesuffix("Z")


def _inputs(run: Run) -> Text:
    return _text("\n".join(run.inputs) or None)


def _claimed(evidence: Evidence, current: object) -> Text:
    """Evidence for another value than the one the device has is shown with that value."""
    if current is not None and evidence.value == current:
        return Text()
    return Text.assemble(" -> ", _text(evidence.value), style="dim")


def _text(value: object) -> Text:
    if value is None:
        return Text("-", style="dim")
    raw = str(value)
    if not raw.isprintable():
        raw = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in raw)
    return Text(raw)


def feed_table(status: Mapping[str, FeedStatus]) -> Table:
    """One row per vulnerability feed: records, when imported, newest data, age."""
    table = Table(title="Vulnerability feeds")
    for name in ("Feed", "Records", "Imported", "Newest data", "Age"):
        table.add_column(name, justify="right" if name in ("Records", "Age") else "left")
    for s in status.values():
        table.add_row(
            s.feed,
            f"{s.records:,}",
            _stamp(s.imported),
            _stamp(s.data_time),
            "-" if s.age is None else f"{s.age.days} d",
        )
    return table


def _stamp(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")
