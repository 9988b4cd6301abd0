"""ARP for IPv4 over Ethernet (RFC 826), EtherType 0x0806.

    htype(2: 1 Ethernet) ptype(2: 0x0800 IPv4) hlen(1: 6) plen(1: 4) oper(2: 1 request, 2 reply)
    sha(6) spa(4) tha(6) tpa(4)

A gratuitous ARP (RFC 5227 "ARP announcement") has the sender's own address as target: a host
claiming an address, or an attacker poisoning caches. Other operations (RARP, InARP) are ignored.
Ethernet pads the frame to 60 bytes; the padding is not read.
"""

from __future__ import annotations

import struct
from typing import Final

from medsentry.protocols.base import Malformed, Message, ipv4_text

NAME: Final = "arp"
ETHERTYPES: Final = frozenset({0x0806})

_ARP: Final = struct.Struct("!HHBBH6s4s6s4s")
_KINDS: Final = {1: "arp.request", 2: "arp.reply"}


def _mac(value: bytes) -> str:
    return value.hex(":")


def parse_datagram(payload: bytes) -> list[Message]:
    if len(payload) < _ARP.size:
        raise Malformed("short ARP packet")
    htype, ptype, hlen, plen, oper, sha, spa, tha, tpa = _ARP.unpack_from(payload)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        raise Malformed("not ARP for IPv4 over Ethernet")
    kind = _KINDS.get(oper)
    if kind is None:
        return []
    return [Message(kind, {
        "sender_mac": _mac(sha), "sender_ip": ipv4_text(spa),
        "target_mac": _mac(tha), "target_ip": ipv4_text(tpa),
        "gratuitous": spa == tpa,
    })]  # fmt: skip
