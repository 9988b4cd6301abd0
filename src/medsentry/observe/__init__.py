"""Observations: the small, immutable facts everything downstream (identify, detect, store) consumes.

An observation is a protocol `Message` placed in the network: when, from which MAC/IP/port to which,
over which flow. Zeek logs produce the same observations directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
