"""Merging a newly identified device into its stored record, database-independent.

Absence is not evidence: an attribute the new run did not determine keeps its stored value. A value that
differs, a new address, a new or re-labelled service and a new identity are returned as history rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from medsentry.identify.device import Device, Service
from medsentry.store.base import DeviceChange

_SCALARS = ("device_class", "vendor", "model", "firmware", "os", "hostname", "label")
# A change to one of these makes the stored confidence stale: it belonged to the old identification.
_IDENTIFICATION = frozenset(("device_class", "vendor", "model", "label"))


def merge_device(
    old: Device, new: Device, run_id: int | None, now: float
) -> tuple[Device, list[DeviceChange]]:
    """`old` merged with `new` (same key), and what changed. The result's evidence is `new.evidence`
    only: stored evidence stays where it is and the caller adds the new."""
    changes: list[DeviceChange] = []
    seen = new.first_seen if new.first_seen is not None else now

    def changed(attribute: str, before: str | None, after: str | None, ts: float = seen) -> None:
        changes.append(DeviceChange(old.key, attribute, before, after, ts, run_id))

    scalars: dict[str, Any] = {}
    for name in _SCALARS:
        before, after = getattr(old, name), getattr(new, name)
        if after is None or after == before or (name == "device_class" and after == "unknown"):
            scalars[name] = before
        else:
            scalars[name] = after
            changed(name, before, after, _first_evidence(new, name, after, seen))

    for ip in new.ips:
        if ip not in old.ips:
            changed("ip", None, ip, _first_evidence(new, "ip", ip, seen))
    # The newest addresses first; a routed-only device's key (its first IP) is among them, so it stays first.
    ips = list(dict.fromkeys([*new.ips, *old.ips]))

    services = {(s.transport, s.port, s.role): s for s in old.services}
    for s in new.services:
        prev = services.get((s.transport, s.port, s.role))
        if prev is None:
            changed("service", None, service_label(s))
            services[s.transport, s.port, s.role] = Service(s.transport, s.port, s.app, s.role, s.peers)
            continue
        if prev.app and s.app and prev.app != s.app:
            changed("service", service_label(prev), service_label(s))
        services[s.transport, s.port, s.role] = Service(
            s.transport, s.port, s.app or prev.app, s.role, max(s.peers, prev.peers)
        )

    identities = dict(old.identities)
    for name, value in new.identities.items():
        before = identities.get(name)
        if isinstance(before, list) and isinstance(value, list):
            value = before + [v for v in value if v not in before]
        if value != before:
            identities[name] = value
            old_text = None if before is None else canonical_json(before)
            changed(f"identities.{name}", old_text, canonical_json(value))

    reidentified = any(c.attribute in _IDENTIFICATION for c in changes)
    merged = Device(
        mac=old.mac or new.mac,
        ips=ips,
        **scalars,
        confidence=new.confidence if reidentified else max(old.confidence, new.confidence),
        first_seen=_extreme(min, old.first_seen, new.first_seen),
        last_seen=_extreme(max, old.last_seen, new.last_seen),
        mac_randomized=old.mac_randomized or new.mac_randomized,
        services=list(services.values()),
        identities=identities,
        evidence=list(new.evidence),
    )
    return merged, changes


def service_label(service: Service) -> str:
    """'tcp/104 dicom (offers)': how a service reads in history rows."""
    app = f" {service.app}" if service.app else ""
    return f"{service.transport}/{service.port}{app} ({service.role})"


def _first_evidence(device: Device, attribute: str, value: Any, default: float) -> float:
    """When the traffic first showed `value`: more precise than the run's start for a history row."""
    return min(
        (e.ts for e in device.evidence if e.attribute == attribute and e.value == value and e.ts is not None),
        default=default,
    )


def _extreme(pick: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    return pick(a, b) if a is not None and b is not None else (a if b is None else b)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def canonical_json(value: Any) -> str:
    """Equal values give equal text (a device's claims are told apart by it); never fails."""
    if type(value) is str:  # most evidence values: what the encoder gives a str, without building one
        return encode_basestring_ascii(value)
    return _CANONICAL.encode(value)
