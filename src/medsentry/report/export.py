"""Machine-readable device lists: JSON (the public `{"devices": [...], "stats": {...}}` shape) and CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime

import orjson

from medsentry.identify.device import Device, Evidence, Service
from medsentry.report.serialize import device_to_shallow_dict, stats_to_dict
from medsentry.store.base import RunStats
from medsentry.store.merge import canonical_json, service_label

CSV_COLUMNS = (
    "key", "mac", "ips", "device_class", "vendor", "model", "firmware", "os", "hostname", "label",
    "confidence", "first_seen", "last_seen", "mac_randomized", "services", "identities", "evidence",
)  # fmt: skip

# A spreadsheet runs a cell starting with these as a formula; hostnames and banners come off the network.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def render_json(
    devices: Iterable[Device],
    stats: RunStats | None = None,
    inputs: Sequence[str] = (),
    details: Mapping[str, object] | None = None,
) -> str:
    """`stats` is {} when there is no run to report (e.g. listing the stored inventory). `details` adds
    the decoder's own counters (fragments, evicted flows, read errors, ...) without overriding the
    contract's keys."""
    run = stats_to_dict(stats, inputs) if stats is not None else {}
    document = {
        "devices": [device_to_shallow_dict(d) for d in devices],
        "stats": {**(details or {}), **run},
    }
    # orjson rather than json: json's indented output is its pure-Python encoder, and `device_to_dict`'s
    # `asdict` deep-copies every evidence record first — together 1.3 s for the bench capture's 1,220
    # devices, 0.1 s this way. The nested dataclasses (services, evidence) go through `_plain`: orjson's
    # own dataclass path reads an instance's memory as CPython lays a class out, which a class compiled
    # by mypyc (setup.py) does not follow (it crashed the process).
    return orjson.dumps(document, default=_plain, option=_JSON_OPTIONS).decode()


_JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def _plain(value: object) -> object:
    """A dataclass as the dict of its fields (orjson serialises the values); anything else as text."""
    if type(value) in _AS_DICT:  # the device record's evidence and services: tens of thousands of them
        return value.as_dict()  # type: ignore[attr-defined]
    names = _FIELDS.get(type(value))
    if names is None:
        if not dataclasses.is_dataclass(value):
            return str(value)
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    return {name: getattr(value, name) for name in names}


_FIELDS: dict[type, tuple[str, ...]] = {}
_AS_DICT = frozenset({Evidence, Service})


def render_csv(devices: Iterable[Device]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in devices:
        row = (
            d.key, d.mac, " ".join(d.ips), d.device_class, d.vendor, d.model, d.firmware, d.os, d.hostname,
            d.label, f"{d.confidence:.2f}", iso_time(d.first_seen), iso_time(d.last_seen), d.mac_randomized,
            "; ".join(service_label(s) for s in d.services),
            canonical_json(d.identities) if d.identities else "", evidence_summary(d),
        )  # fmt: skip
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def evidence_summary(device: Device) -> str:
    """'vendor=Philips (dhcp, oui); model=MX450 (dhcp)': each claimed value with the protocols behind it,
    the best supported first within an attribute."""
    support: dict[tuple[str, str], tuple[float, list[str]]] = {}
    for e in device.evidence:
        value = e.value if isinstance(e.value, str) else canonical_json(e.value)
        weight, protocols = support.get((e.attribute, value), (0.0, []))
        if e.protocol not in protocols:
            protocols.append(e.protocol)
        support[e.attribute, value] = (weight + e.weight, protocols)
    ranked = sorted(support.items(), key=lambda item: (item[0][0], -item[1][0]))
    return "; ".join(f"{attr}={value} ({', '.join(sorted(protos))})" for (attr, value), (_, protos) in ranked)


def iso_time(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
