"""The storage interface: what the app needs from an inventory store, whatever the database behind it.

`medsentry.store.sqlite.SQLiteStore` is the default implementation; a PostgreSQL one implements the same
`Store` protocol and reuses `medsentry.store.merge` for the merge rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from medsentry.detect.engine import Alert
from medsentry.identify.device import Device

ALERT_STATES = ("new", "acknowledged", "closed")


class StoreError(Exception):
    """The database cannot be used as it is."""


class SchemaTooNew(StoreError):
    """The database was written by a newer medsentry: refuse rather than corrupt it."""


@dataclass(slots=True)
class RunStats:
    """What one analysis run processed; `started`/`ended` are wall-clock epoch seconds."""

    started: float
    ended: float
    packets: int = 0
    bytes: int = 0
    flows: int = 0
    observations: int = 0
    malformed: dict[str, int] = field(default_factory=dict)  # dissector NAME -> messages rejected

    @property
    def elapsed(self) -> float:
        return max(self.ended - self.started, 0.0)

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    inputs: list[str]  # pcap paths, "live:<iface>", Zeek log folders
    stats: RunStats


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """One history row: `attribute` went from `old` to `new` (None: absent) at traffic time `ts`."""

    device_key: str
    attribute: str  # a Device field name, "ip", "service" or "identities.<name>"
    old: str | None
    new: str | None
    ts: float
    run_id: int | None


@dataclass(frozen=True, slots=True)
class UpsertResult:
    new: int  # devices not in the inventory before
    updated: int  # devices merged into an existing record
    changes: int  # history rows written


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """All given criteria must hold; None means "any"."""

    device_class: str | None = None
    vendor: str | None = None  # case-insensitive substring
    ip: str | None = None  # any address the device ever had
    seen_since: float | None = None  # last_seen >= this epoch time
    min_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class AlertUpsert:
    new: int  # alerts not stored before
    updated: int  # merged into a stored alert (re-opened ones included)
    reopened: int = 0  # closed alerts that fired again and are new again


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """All given criteria must hold; None means "any"."""

    state: str | None = None  # one of ALERT_STATES
    rule: str | None = None  # a rule ("recon.port_scan") or a family ("recon")
    severity: str | None = None  # at least this severity
    since: float | None = None  # last_seen >= this epoch time
    device: str | None = None  # a MAC or IP the alert names, as attacker or victim


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One state change of an alert; `ts` is wall-clock time, `old_state` None when first stored."""

    alert_id: str
    ts: float
    old_state: str | None
    new_state: str
    actor: str
    note: str | None
    run_id: int | None


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert as the store holds it: the `Alert` of every run that raised it, merged, and its state."""

    alert: Alert
    state: str
    state_changed: float
    first_run: int | None
    last_run: int | None
    history: tuple[AlertChange, ...] = ()  # oldest first; filled by `get_alert` only

    @property
    def id(self) -> str:
        return self.alert.id

    def to_dict(self) -> dict[str, Any]:
        """`Alert.to_dict()` plus the state: accepted by `medsentry.detect.output` as is."""
        return self.alert.to_dict() | {"state": self.state}


class Store(Protocol):
    def get_or_create_salt(self) -> bytes:
        """The per-installation salt for `medsentry.privacy.phi_hash`, created on first use."""
        ...

    def record_run(self, stats: RunStats, inputs: Sequence[str]) -> int:
        """Store one analysis run; returns its id for `upsert_devices`."""
        ...

    def update_run(self, run_id: int, stats: RunStats) -> None:
        """Replace a recorded run's end and counters (a live run records itself when it starts and says how
        far it got at every checkpoint)."""
        ...

    def list_runs(self, limit: int = 20) -> list[Run]:
        """Most recent first."""
        ...

    def upsert_devices(self, devices: Sequence[Device], run_id: int | None) -> UpsertResult:
        """Merge devices into the inventory by `Device.key`, all or nothing."""
        ...

    def list_devices(self, filters: DeviceFilter | None = None) -> list[Device]: ...

    def forget_devices(self, keys: Sequence[str]) -> int:
        """Delete these devices with their services, evidence, addresses and history, all or nothing;
        returns how many of them there were."""
        ...

    def get_device(self, key: str) -> Device | None:
        """By key (MAC, or IP of a routed-only device), else the most recently seen device with that IP."""
        ...

    def device_history(self, key: str) -> list[DeviceChange]:
        """Oldest first."""
        ...

    def upsert_alerts(self, alerts: Sequence[Alert], run_id: int | None) -> AlertUpsert:
        """Merge alerts by `Alert.id`, all or nothing: a repeat extends first/last seen, adds to the count
        and merges bounded evidence; a closed alert with new traffic is new again (with a history row)."""
        ...

    def list_alerts(self, filters: AlertFilter | None = None) -> list[StoredAlert]:
        """Most recently seen first."""
        ...

    def get_alert(self, alert_id: str) -> StoredAlert | None:
        """By id or a unique id prefix (the short id of the table), with its history."""
        ...

    def set_alert_state(
        self, alert_id: str, state: str, note: str | None = None, actor: str | None = None
    ) -> StoredAlert | None:
        """Move an alert to `state` (one of ALERT_STATES), recording who (default: the OS user), when and
        why; None if there is no such alert."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
