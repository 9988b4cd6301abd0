"""SNMP v1/v2c (RFC 1157, RFC 3416) and unencrypted v3 (RFC 3412/3414) over UDP 161/162, in BER.

    v1/v2c   SEQUENCE { version INTEGER (0 = v1, 1 = v2c), community OCTET STRING, PDU }
    v3       SEQUENCE { version INTEGER (3), SEQUENCE { msgID, msgMaxSize, msgFlags OCTET STRING,
             msgSecurityModel }, msgSecurityParameters OCTET STRING (USM: SEQUENCE { engineID,
             boots, time, userName, authParams, privParams }), ScopedPDU or encrypted OCTET STRING }
    ScopedPDU  SEQUENCE { contextEngineID, contextName, PDU }
    PDU      [0xA0..0xA8] { request-id, error-status, error-index, SEQUENCE OF SEQUENCE { OID, value } }
    v1 Trap  [0xA4] { enterprise OID, agent-addr IpAddress, generic, specific, time-stamp, varbinds }
    BER      tag(1) length(1, or 0x8n then n bytes) value; only definite lengths occur in SNMP

The system group (sysDescr, sysObjectID, sysName, sysLocation) names the agent. The community string
and the v3 user name are credentials: only their presence is reported, and whether the community is a
factory default. A v3 engine ID starting with bit 1 carries the vendor's IANA enterprise number.
"""

from __future__ import annotations

from typing import Any, Final

from medsentry.protocols.base import Malformed, Message, ipv4_text

NAME: Final = "snmp"
UDP_PORTS: Final = frozenset({161, 162})

_SEQUENCE: Final = 0x30
_INTEGER: Final = 0x02
_OCTETS: Final = 0x04
_OID: Final = 0x06
_IPADDRESS: Final = 0x40
_PDUS: Final = {
    0xA0: "snmp.get_request", 0xA1: "snmp.get_next_request", 0xA2: "snmp.response",
    0xA3: "snmp.set_request", 0xA4: "snmp.trap", 0xA5: "snmp.get_bulk_request", 0xA6: "snmp.inform",
    0xA7: "snmp.trap", 0xA8: "snmp.report",
}  # fmt: skip
_VERSIONS: Final = {0: "1", 1: "2c", 3: "3"}  # as Zeek's snmp.log writes them
_SYSTEM: Final = {
    "1.3.6.1.2.1.1.1.0": "sys_descr", "1.3.6.1.2.1.1.2.0": "sys_object_id",
    "1.3.6.1.2.1.1.5.0": "sys_name", "1.3.6.1.2.1.1.6.0": "sys_location",
    "1.3.6.1.6.3.1.1.4.1.0": "trap_oid",  # snmpTrapOID.0, the first varbinds of a v2 trap
}  # fmt: skip
_DEFAULT_COMMUNITIES: Final = frozenset({b"public", b"private"})
_MAX_OIDS: Final = 64  # varbind names kept per message
_MAX_OID_LEN: Final = 256


def _tlv(buf: bytes, off: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the BER element at `off`, which must end by `end`."""
    if off + 2 > end:
        raise Malformed("truncated BER element")
    tag, length = buf[off], buf[off + 1]
    if tag & 0x1F == 0x1F:
        raise Malformed("multi-byte BER tag")
    off += 2
    if length & 0x80:
        n = length & 0x7F
        if not 0 < n <= 4 or off + n > end:
            raise Malformed("bad BER length")
        length = int.from_bytes(buf[off : off + n], "big")
        off += n
    if off + length > end:
        raise Malformed("BER value runs past its container")
    return tag, off, off + length


def _expect(buf: bytes, off: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _tlv(buf, off, end)
    if got != tag:
        raise Malformed(f"expected BER tag {tag:#x}, got {got:#x}")
    return start, stop


def _integer(buf: bytes, off: int, end: int) -> tuple[int, int]:
    start, stop = _expect(buf, off, end, _INTEGER)
    if not 0 < stop - start <= 9:
        raise Malformed("bad INTEGER length")
    return int.from_bytes(buf[start:stop], "big", signed=True), stop


def _oid(value: bytes) -> str:
    if not 0 < len(value) <= _MAX_OID_LEN or value[-1] & 0x80:
        raise Malformed("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    arc = 0
    for b in value:
        arc = arc << 7 | (b & 0x7F)
        if not b & 0x80:
            arcs.append(arc)
            arc = 0
    top = min(arcs[0] // 40, 2)  # the first subidentifier packs two arcs: 40 * X + Y, X <= 2
    return ".".join(map(str, [top, arcs[0] - 40 * top, *arcs[1:]]))


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def parse_datagram(payload: bytes) -> list[Message]:
    start, end = _expect(payload, 0, len(payload), _SEQUENCE)
    version, off = _integer(payload, start, end)
    if version not in _VERSIONS:
        raise Malformed("unknown SNMP version")
    fields: dict[str, Any] = {"version": _VERSIONS[version]}
    if version == 3:
        scoped = _v3_header(payload, off, end, fields)
        if scoped is None:
            return [Message("snmp.encrypted", fields)]
        off = scoped
    else:
        cstart, off = _expect(payload, off, end, _OCTETS)
        community = payload[cstart:off]
        fields["community_present"] = bool(community)
        fields["community_default"] = community in _DEFAULT_COMMUNITIES
    tag, pstart, pend = _tlv(payload, off, end)
    kind = _PDUS.get(tag)
    if kind is None:
        raise Malformed("unknown SNMP PDU")
    _pdu(payload, tag, pstart, pend, fields)
    return [Message(kind, fields)]


def _v3_header(buf: bytes, off: int, end: int, fields: dict[str, Any]) -> int | None:
    """Reads the v3 header and USM parameters; returns the offset of the PDU, None if encrypted."""
    gstart, off = _expect(buf, off, end, _SEQUENCE)
    _msg_id, goff = _integer(buf, gstart, off)
    _max_size, goff = _integer(buf, goff, off)
    fstart, fend = _expect(buf, goff, off, _OCTETS)
    flags = buf[fstart] if fend > fstart else 0
    fields["auth"], fields["priv"] = bool(flags & 1), bool(flags & 2)
    sstart, off = _expect(buf, off, end, _OCTETS)
    if sstart < off:  # empty in a discovery request
        ustart, uend = _expect(buf, sstart, off, _SEQUENCE)
        estart, uoff = _expect(buf, ustart, uend, _OCTETS)
        engine = buf[estart:uoff]
        if engine:
            fields["engine_id"] = engine.hex()
        if len(engine) >= 4 and engine[0] & 0x80:
            fields["engine_enterprise"] = int.from_bytes(engine[:4], "big") & 0x7FFFFFFF
        _boots, uoff = _integer(buf, uoff, uend)
        _time, uoff = _integer(buf, uoff, uend)
        nstart, nend = _expect(buf, uoff, uend, _OCTETS)
        fields["user_present"] = nend > nstart
    if fields["priv"]:
        return None
    cstart, cend = _expect(buf, off, end, _SEQUENCE)
    _engine_start, coff = _expect(buf, cstart, cend, _OCTETS)
    _name_start, coff = _expect(buf, coff, cend, _OCTETS)
    return coff


def _pdu(buf: bytes, tag: int, off: int, end: int, fields: dict[str, Any]) -> None:
    if tag == 0xA4:
        estart, off = _expect(buf, off, end, _OID)
        fields["enterprise"] = _oid(buf[estart:off])
        astart, off = _expect(buf, off, end, _IPADDRESS)
        if off - astart == 4:
            fields["agent_addr"] = ipv4_text(buf[astart:off])
        fields["generic_trap"], off = _integer(buf, off, end)
        fields["specific_trap"], off = _integer(buf, off, end)
        off = _tlv(buf, off, end)[2]  # time-stamp
    else:
        fields["request_id"], off = _integer(buf, off, end)
        fields["error_status"], off = _integer(buf, off, end)
        _error_index, off = _integer(buf, off, end)
    off, vend = _expect(buf, off, end, _SEQUENCE)
    oids: list[str] = []
    while off < vend:
        bstart, off = _expect(buf, off, vend, _SEQUENCE)
        nstart, nend = _expect(buf, bstart, off, _OID)
        oid = _oid(buf[nstart:nend])
        if len(oids) < _MAX_OIDS:
            oids.append(oid)
        name = _SYSTEM.get(oid)
        if name is not None:
            vtag, vstart, vstop = _tlv(buf, nend, off)
            if vtag == _OCTETS:
                fields[name] = _text(buf[vstart:vstop])
            elif vtag == _OID:
                fields[name] = _oid(buf[vstart:vstop])
    fields["oids"] = oids
