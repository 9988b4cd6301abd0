"""Devices and run statistics as plain JSON-able dicts, and back.

The device dict is a public contract: every `Device` field under its own name, plus the derived "key".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from typing import Any

from medsentry.identify.device import Device, Evidence, Service
from medsentry.store.base import RunStats

_DEVICE_FIELDS = tuple(f.name for f in fields(Device))


def device_to_dict(device: Device) -> dict[str, Any]:
    return {"key": device.key, **asdict(device)}


def device_to_shallow_dict(device: Device) -> dict[str, Any]:
    """`device_to_dict`'s keys with the device's own values (services and evidence stay dataclasses,
    nothing is copied): only for serialising at once."""
    out: dict[str, Any] = {"key": device.key}
    for name in _DEVICE_FIELDS:
        out[name] = getattr(device, name)
    return out


def device_from_dict(data: Mapping[str, Any]) -> Device:
    """The inverse of `device_to_dict`; derived and unknown keys are ignored, missing ones take defaults."""
    plain = {name: value for name, value in data.items() if name in _DEVICE_FIELDS}
    plain["services"] = [Service(**s) for s in data.get("services", ())]
    plain["evidence"] = [Evidence(**e) for e in data.get("evidence", ())]
    return Device(**plain)


def stats_to_dict(stats: RunStats, inputs: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "inputs": list(inputs),
        "started": stats.started,
        "ended": stats.ended,
        "elapsed": stats.elapsed,
        "packets": stats.packets,
        "packets_per_s": stats.packets_per_s,
        "bytes": stats.bytes,
        "flows": stats.flows,
        "observations": stats.observations,
        # A number, as the public contract says; the split by dissector sits beside it.
        "malformed": sum(stats.malformed.values()),
        "malformed_by_protocol": dict(stats.malformed),
    }
