"""Observations: the small, immutable facts everything downstream (identify, detect, store) consumes.

An observation is a protocol `Message` placed in the network: when, from which MAC/IP/port to which,
over which flow. Zeek logs produce the same observations directly.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

_NO_FIELDS: Final[Any] = object()  # `fields` not given: a new empty dict, as `field(default_factory=dict)`


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

    # Written by hand: the generated __init__ of a frozen dataclass stays interpreted Python under mypyc
    # (0.4 us for three fields), where this one's stores compile to plain slot writes (35 ns).
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
        fields: Any = _NO_FIELDS,  # a dict (mypyc would check a `dict` annotation against the sentinel)
        source: str = "pcap",
    ) -> None:
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "src_mac", src_mac)
        object.__setattr__(self, "src_ip", src_ip)
        object.__setattr__(self, "dst_mac", dst_mac)
        object.__setattr__(self, "dst_ip", dst_ip)
        object.__setattr__(self, "sport", sport)
        object.__setattr__(self, "dport", dport)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "fields", {} if fields is _NO_FIELDS else fields)
        object.__setattr__(self, "source", source)

    # By value: pickle would rebuild it attribute by attribute, which a compiled frozen dataclass refuses.
    def __reduce__(self) -> tuple[Any, ...]:
        return Observation, (self.ts, self.protocol, self.kind, self.src_mac, self.src_ip, self.dst_mac,
                             self.dst_ip, self.sport, self.dport, self.transport, self.fields, self.source)


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

    # Written by hand, as Observation's: a dataclass's generated __init__ stays interpreted under mypyc
    # (1.5 us here, once per flow).
    def __init__(
        self,
        transport: str,
        client_mac: str | None,
        client_ip: str,
        client_port: int,
        server_mac: str | None,
        server_ip: str,
        server_port: int,
        first_seen: float,
        last_seen: float,
        packets_c2s: int = 0,
        packets_s2c: int = 0,
        bytes_c2s: int = 0,
        bytes_s2c: int = 0,
        app: str | None = None,
        tcp_state: str | None = None,
        vlan: int | None = None,
        client_ttl: int | None = None,
        server_ttl: int | None = None,
    ) -> None:
        self.transport, self.client_mac, self.client_ip, self.client_port = (
            transport, client_mac, client_ip, client_port)  # fmt: skip
        self.server_mac, self.server_ip, self.server_port = server_mac, server_ip, server_port
        self.first_seen, self.last_seen = first_seen, last_seen
        self.packets_c2s, self.packets_s2c, self.bytes_c2s, self.bytes_s2c = (
            packets_c2s, packets_s2c, bytes_c2s, bytes_s2c)  # fmt: skip
        self.app, self.tcp_state, self.vlan = app, tcp_state, vlan
        self.client_ttl, self.server_ttl = client_ttl, server_ttl


class Tee:
    """An observation sink that hands each observation to several (identification, then detection).
    A class here, not a closure where it is used: that module stays interpreted, and a Python frame per
    observation cost more than both calls."""

    def __init__(self, *sinks: Callable[[Observation], None]) -> None:
        self.sinks = sinks

    def __call__(self, obs: Observation) -> None:
        for sink in self.sinks:
            sink(obs)


def ipv4_number(ip: str) -> int | None:
    """An observation's IPv4 address as its number (dotted quads read as strictly as ipaddress reads them),
    None for anything else (IPv6, garbage). Identification and detection judge addresses by it: ipaddress's
    objects and properties run interpreted, tens of microseconds an address."""
    try:
        packed = socket.inet_pton(socket.AF_INET, ip)
    except (OSError, ValueError, UnicodeError):
        return None
    return int.from_bytes(packed, "big")


def ipv4_ranges(networks: Iterable[Any]) -> tuple[tuple[int, int], ...]:
    """The IPv4 ones of `networks` (ipaddress networks) as (first, last) address numbers."""
    return tuple((int(n.network_address), int(n.broadcast_address)) for n in networks if n.version == 4)
