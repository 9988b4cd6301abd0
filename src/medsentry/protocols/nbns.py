"""NetBIOS Name Service over UDP 137 (RFC 1001/1002): the DNS wire format with NetBIOS names.

    header      as DNS: id(2) flags(2) qdcount ancount nscount arcount
                flags: R(1) OPCODE(4: 0 query, 5 registration, 6 release, 7 WACK, 8/9 refresh,
                15 multi-homed registration) AA TC RD RA 0 0 B RCODE(4)
    name        first-level encoding (RFC 1001 14.1): one 32-byte label, each byte of the 16-byte
                NetBIOS name as two letters 'A' + nibble; byte 16 is the suffix (0x00 workstation,
                0x20 file server, ...); the name is space padded; further labels are the scope id
    NB rdata    (type 0x20) per address: NB_FLAGS(2: G bit 0x8000 = group name) NB_ADDRESS(4)
    NBSTAT      (type 0x21) node status: num_names(1), per name: name(15) suffix(1) flags(2);
                then the unit id, the adapter's MAC address (6)

A node status response lists every name the host registered and its MAC: it names a Windows host.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from medsentry.protocols.base import Malformed, Message, ipv4_text
from medsentry.protocols.dns import read_labels

NAME: Final = "nbns"
UDP_PORTS: Final = frozenset({137})

_HEADER: Final = struct.Struct("!HHHHHH")
_QUESTION: Final = struct.Struct("!HH")
_RR: Final = struct.Struct("!HHIH")
_U16: Final = struct.Struct("!H")
_NB: Final = 0x20
_NBSTAT: Final = 0x21
_A: Final = ord("A")


def _name(encoded: bytes) -> tuple[str, int]:
    """(name, suffix) of a first-level encoded NetBIOS name."""
    if len(encoded) != 32:
        raise Malformed("NetBIOS name label is not 32 bytes")
    raw = bytearray(16)
    for i in range(16):
        hi, lo = encoded[2 * i] - _A, encoded[2 * i + 1] - _A
        if not (0 <= hi < 16 and 0 <= lo < 16):
            raise Malformed("NetBIOS name is not first-level encoded")
        raw[i] = hi << 4 | lo
    return _text(bytes(raw[:15])), raw[15]


def _text(name: bytes) -> str:
    # padded with spaces; the wildcard name "*" with NULs
    return name.rstrip(b" \x00").decode("latin-1")


def _read_name(buf: bytes, off: int, fields: dict[str, Any]) -> int:
    labels, off = read_labels(buf, off)
    if not labels:
        raise Malformed("empty NetBIOS name")
    fields["name"], fields["suffix"] = _name(labels[0])
    if len(labels) > 1:
        fields["scope"] = b".".join(labels[1:]).decode("latin-1")
    return off


def _node_status(rdata: bytes, fields: dict[str, Any]) -> None:
    count = rdata[0] if rdata else 0
    end = 1 + 18 * count
    if end > len(rdata):
        raise Malformed("node status names run past rdata")
    fields["names"] = [
        {"name": _text(rdata[i : i + 15]), "suffix": rdata[i + 15], "group": bool(rdata[i + 16] & 0x80)}
        for i in range(1, end, 18)
    ]
    if end + 6 <= len(rdata):
        fields["unit_id"] = rdata[end : end + 6].hex(":")


def parse_datagram(payload: bytes) -> list[Message]:
    if len(payload) < 12:
        raise Malformed("short NBNS header")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(payload)
    response, opcode = bool(flags & 0x8000), (flags >> 11) & 0xF
    fields: dict[str, Any] = {
        "id": ident, "opcode": opcode, "rcode": flags & 0xF, "broadcast": bool(flags & 0x10),
    }  # fmt: skip
    off = 12
    if qdcount:
        off = _read_name(payload, off, fields)
        if off + 4 > len(payload):
            raise Malformed("truncated question")
        fields["type"] = "NBSTAT" if _QUESTION.unpack_from(payload, off)[0] == _NBSTAT else "NB"
        off += 4
    ips: list[str] = []
    # registrations carry the name as a question and the address as an additional record
    for _ in range(ancount + nscount + arcount):
        rr: dict[str, Any] = {}
        off = _read_name(payload, off, rr)
        if off + 10 > len(payload):
            raise Malformed("truncated resource record")
        rtype, _rclass, _ttl, rdlength = _RR.unpack_from(payload, off)
        rdata = payload[off + 10 : off + 10 + rdlength]
        off += 10 + rdlength
        if off > len(payload):
            raise Malformed("rdata runs past the end of the datagram")
        fields.setdefault("name", rr["name"])
        fields.setdefault("suffix", rr["suffix"])
        if rtype == _NB:
            fields["group"] = bool(rdata and rdata[0] & 0x80)
            ips += [ipv4_text(rdata[i + 2 : i + 6]) for i in range(0, len(rdata) - 5, 6)]
        elif rtype == _NBSTAT:
            fields["type"] = "NBSTAT"
            _node_status(rdata, fields)
    if "name" not in fields:
        raise Malformed("NBNS message without a name")
    fields["ips"] = ips
    if response:
        kind = "nbns.response"
    elif opcode == 0:
        kind = "nbns.query"
    elif opcode in (5, 8, 9, 15):
        kind = "nbns.registration"
    elif opcode == 6:
        kind = "nbns.release"
    else:
        raise Malformed("unknown NBNS request opcode")
    return [Message(kind, fields)]
