"""Observations: the small, immutable facts everything downstream (identify, detect, store) consumes.

An observation is a protocol `Message` placed in the network: when, from which MAC/IP/port to which,
over which flow. Zeek logs produce the same observations directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_NO_FIELDS: Any = object()  # `fields` not given: a new empty dict, as `field(default_factory=dict)`


@dataclass(frozen=True, slots=True)
class Observation:
    ts: float
    protocol: str  # the protocol module's NAME ("dhcp", "tls", ...) or "flow", "zeek.<log>"
    kind: str  # the message kind ("dhcp.request", "tls.client_hello", ...)
    src_mac: str | None
    src_ip: str | None
    dst_mac: str | None = None
    dst_ip: str | None = None
    sport: int | None = None
    dport: int | None = None
    transport: str | None = None  # "tcp", "udp", or None for link layer
    fields: dict[str, Any] = field(default_factory=dict)
    source: str = "pcap"  # "pcap", "live", "zeek": where the evidence came from

    # Written by hand: the generated frozen __init__ sets each field through object.__setattr__ (1.9 us
    # per observation, one per 11 packets). This one briefly gives the instance the layout-identical
    # mutable `_Unfrozen` type, whose plain slot stores are several times cheaper; the instance is
    # frozen again before anyone else sees it.
    def __init__(
        self,
        ts: float,
        protocol: str,
        kind: str,
        src_mac: str | None,
        src_ip: str | None,
        dst_mac: str | None = None,
        dst_ip: str | None = None,
        sport: int | None = None,
        dport: int | None = None,
        transport: str | None = None,
        fields: dict[str, Any] = _NO_FIELDS,  # type: ignore[assignment]
        source: str = "pcap",
    ) -> None:
        object.__setattr__(self, "__class__", _Unfrozen)
        self.ts = ts  # type: ignore[misc]
        self.protocol = protocol  # type: ignore[misc]
        self.kind = kind  # type: ignore[misc]
        self.src_mac = src_mac  # type: ignore[misc]
        self.src_ip = src_ip  # type: ignore[misc]
        self.dst_mac = dst_mac  # type: ignore[misc]
        self.dst_ip = dst_ip  # type: ignore[misc]
        self.sport = sport  # type: ignore[misc]
        self.dport = dport  # type: ignore[misc]
        self.transport = transport  # type: ignore[misc]
        self.fields = {} if fields is _NO_FIELDS else fields  # type: ignore[misc]
        self.source = source  # type: ignore[misc]
        self.__class__ = Observation


class _Unfrozen:
    """`Observation`'s slots without its frozen __setattr__: only ever the type of one being built."""

    __slots__ = Observation.__slots__  # type: ignore[attr-defined]


@dataclass(slots=True)
class FlowRecord:
    """A bidirectional flow as the decoder summarises it; `client` is the side that sent first
    (or the SYN sender)."""

    transport: str  # "tcp" | "udp" | "icmp" | ip protocol number as str
    client_mac: str | None
    client_ip: str
    client_port: int
    server_mac: str | None
    server_ip: str
    server_port: int
    first_seen: float
    last_seen: float
    packets_c2s: int = 0
    packets_s2c: int = 0
    bytes_c2s: int = 0
    bytes_s2c: int = 0
    app: str | None = None  # protocol label from the dissector that took the flow
    tcp_state: str | None = None  # "syn", "established", "closed", "reset", or None
    vlan: int | None = None
    # TTL (IPv6: hop limit) of each side's first packet as it passed the sensor; None if it sent none
    client_ttl: int | None = None
    server_ttl: int | None = None
