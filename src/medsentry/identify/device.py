"""The device record: what medsentry believes about one device, with the evidence for each claim."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why one attribute has its value: which observation, over which protocol, when."""

    attribute: str  # "vendor", "model", "device_class", ...
    value: Any
    protocol: str  # "oui", "dhcp", "dicom", "fingerprint", ...
    detail: str  # human-readable: 'DHCP option 60 "Philips-IntelliVue"'
    ts: float | None
    weight: float  # 0..1: how strongly this observation supports the value
    count: int = 1  # how many observations gave this same evidence (ts is the first one's)

    # Written by hand, as `Observation.__init__`: a frozen dataclass's generated one stays interpreted
    # under mypyc, and building an inventory makes tens of thousands (a third of `Identifier.devices`).
    def __init__(self, attribute: str, value: Any, protocol: str, detail: str, ts: float | None,
                 weight: float, count: int = 1) -> None:  # fmt: skip
        object.__setattr__(self, "attribute", attribute)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "detail", detail)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "count", count)

    # By value, as `Observation.__reduce__`.
    def __reduce__(self) -> tuple[Any, ...]:
        return Evidence, (self.attribute, self.value, self.protocol, self.detail, self.ts, self.weight,
                          self.count)  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """Its fields (`dataclasses.asdict` without the deep copy; compiled, for JSON of big inventories)."""
        return {"attribute": self.attribute, "value": self.value, "protocol": self.protocol,
                "detail": self.detail, "ts": self.ts, "weight": self.weight, "count": self.count}  # fmt: skip


@dataclass(slots=True)
class Service:
    transport: str
    port: int
    app: str | None
    role: str  # "offers" | "uses"
    peers: int = 0

    # Written by hand, as `Evidence.__init__`: the dataclass's generated one stays interpreted under mypyc.
    def __init__(self, transport: str, port: int, app: str | None, role: str, peers: int = 0) -> None:
        self.transport, self.port, self.app, self.role, self.peers = transport, port, app, role, peers

    def as_dict(self) -> dict[str, Any]:
        """Its fields, as `Evidence.as_dict`."""
        return {"transport": self.transport, "port": self.port, "app": self.app, "role": self.role,
                "peers": self.peers}  # fmt: skip


@dataclass(slots=True)
class Device:
    mac: str | None  # the anchor; None for routed-only devices, then the first IP is the anchor
    ips: list[str] = field(default_factory=list)
    device_class: str = "unknown"
    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None
    os: str | None = None
    hostname: str | None = None
    label: str | None = None  # learned fingerprint type that matched, else None
    confidence: float = 0.0
    first_seen: float | None = None
    last_seen: float | None = None
    mac_randomized: bool = False
    services: list[Service] = field(default_factory=list)
    identities: dict[str, Any] = field(default_factory=dict)  # AE titles, HL7 apps, MQTT client ids...
    evidence: list[Evidence] = field(default_factory=list)

    # Written by hand, as `Evidence.__init__`: the dataclass's generated one stays interpreted under mypyc
    # (6,400 instructions a device; `Identifier.devices` makes every one).
    def __init__(
        self,
        mac: str | None,
        ips: list[str] | None = None,
        device_class: str = "unknown",
        vendor: str | None = None,
        model: str | None = None,
        firmware: str | None = None,
        os: str | None = None,
        hostname: str | None = None,
        label: str | None = None,
        confidence: float = 0.0,
        first_seen: float | None = None,
        last_seen: float | None = None,
        mac_randomized: bool = False,
        services: list[Service] | None = None,
        identities: dict[str, Any] | None = None,
        evidence: list[Evidence] | None = None,
    ) -> None:
        self.mac, self.ips = mac, ips if ips is not None else []
        self.device_class, self.vendor, self.model = device_class, vendor, model
        self.firmware, self.os = firmware, os
        self.hostname, self.label, self.confidence = hostname, label, confidence
        self.first_seen, self.last_seen, self.mac_randomized = first_seen, last_seen, mac_randomized
        self.services = services if services is not None else []
        self.identities = identities if identities is not None else {}
        self.evidence = evidence if evidence is not None else []

    @property
    def key(self) -> str:
        return self.mac or (self.ips[0] if self.ips else "?")
