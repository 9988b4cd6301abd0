"""BOOTP/DHCP for IPv4 (RFC 951, RFC 2131, options RFC 2132).

    0   op(1: 1 BOOTREQUEST, 2 BOOTREPLY) htype(1) hlen(1) hops(1)
    4   xid(4)  secs(2) flags(2)
    12  ciaddr(4) yiaddr(4) siaddr(4) giaddr(4)
    28  chaddr(16)   client hardware address, first hlen bytes used
    44  sname(64)    server host name, or options when overloaded
    108 file(128)    boot file name, or options when overloaded
    236 magic cookie 99.130.83.99, then options: code(1) length(1) data; 0 is padding, 255 ends

Option 52 (overload) says options continue in `file` (1), `sname` (2) or both (3); they are read in
the order options, file, sname (RFC 3396 3). An option that repeats is concatenated (RFC 3396).
A message without the cookie is plain BOOTP and reported as `dhcp.bootp`.

The option 55 list, the option codes in wire order, option 60 and the host name are the client's
fingerprint (Fingerbank, nDPI, Satori); they are kept exactly as sent.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from medsentry.protocols.base import Malformed, Message, ipv4_text
from medsentry.protocols.dns import read_name

NAME: Final = "dhcp"
UDP_PORTS: Final = frozenset({67, 68})

_HEADER: Final = struct.Struct("!BBBBI4x4s4s4s4s16s")
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_COOKIE: Final = b"\x63\x82\x53\x63"
_OPTIONS: Final = 240

MESSAGE_TYPES: Final = {
    1: "discover", 2: "offer", 3: "request", 4: "decline", 5: "ack", 6: "nak", 7: "release", 8: "inform",
    9: "forcerenew", 10: "leasequery", 11: "leaseunassigned", 12: "leaseunknown", 13: "leaseactive",
    14: "bulkleasequery", 15: "leasequerydone", 16: "activeleasequery", 17: "leasequerystatus", 18: "tls",
}  # fmt: skip


def _options(area: bytes, codes: list[int], values: dict[int, bytes]) -> None:
    i, n = 0, len(area)
    while i < n:
        code = area[i]
        if code == 255:
            return
        if code == 0:
            i += 1
            continue
        # a cut-off option ends the area: snaplen-truncated captures keep the options before it
        if i + 1 >= n or i + 2 + area[i + 1] > n:
            return
        end = i + 2 + area[i + 1]
        codes.append(code)
        values[code] = values.get(code, b"") + area[i + 2 : end]
        i = end


def _text(value: bytes) -> str:
    # some clients count the C string terminator in the option length
    return value.rstrip(b"\x00").decode("utf-8", "backslashreplace")


def _ips(value: bytes) -> list[str]:
    return [ipv4_text(value[i : i + 4]) for i in range(0, len(value) - 3, 4)]


def _fqdn(value: bytes) -> str | None:
    """Option 81 (RFC 4702): flags(1) rcode1(1) rcode2(1) name; flag E (0x04) = DNS wire encoding."""
    if len(value) < 3:
        return None
    if not value[0] & 0x04:
        return _text(value[3:])
    try:
        return read_name(value[3:], 0)[0]
    except Malformed:  # one bad option must not cost the rest of the fingerprint
        return None


def parse_datagram(payload: bytes) -> list[Message]:
    if len(payload) < 236:
        raise Malformed("shorter than a BOOTP header")
    op, _htype, hlen, _hops, xid, ciaddr, yiaddr, siaddr, giaddr, chaddr = _HEADER.unpack_from(payload)
    if op not in (1, 2) or hlen > 16:
        raise Malformed("bad BOOTP op or hardware address length")
    fields: dict[str, Any] = {
        "op": op, "xid": xid,
        "client_mac": chaddr[:hlen].hex(":") if hlen else None,
        "ciaddr": ipv4_text(ciaddr), "yiaddr": ipv4_text(yiaddr),
        "siaddr": ipv4_text(siaddr), "giaddr": ipv4_text(giaddr),
    }  # fmt: skip
    if payload[236:240] != _COOKIE:
        return [Message("dhcp.bootp", fields)]
    codes: list[int] = []
    values: dict[int, bytes] = {}
    _options(payload[_OPTIONS:], codes, values)
    overload = (values.get(52) or b"\x00")[0]
    if overload & 1:
        _options(payload[108:236], codes, values)  # the file field (option overload, RFC 2132 9.3)
    if overload & 2:
        _options(payload[44:108], codes, values)  # the sname field
    fields["options"] = codes
    _decode_options(values, fields)
    mtype = fields.get("message_type")
    kind = "bootp" if mtype is None else MESSAGE_TYPES.get(mtype, "unknown")
    return [Message(f"dhcp.{kind}", fields)]


def _decode_options(values: dict[int, bytes], fields: dict[str, Any]) -> None:
    for code, value in values.items():
        if code == 53 and value:
            fields["message_type"] = value[0]
        elif code == 12:
            fields["hostname"] = _text(value)
        elif code == 55:
            fields["param_request_list"] = list(value)
        elif code == 60:
            fields["vendor_class"] = _text(value)
        elif code == 61:
            fields["client_id"] = value.hex()
        elif code == 81 and (fqdn := _fqdn(value)) is not None:
            fields["fqdn"] = fqdn
        elif code == 57 and len(value) == 2:
            fields["max_msg_size"] = _U16.unpack(value)[0]
        elif code == 50 and len(value) == 4:
            fields["requested_ip"] = ipv4_text(value)
        elif code == 54 and len(value) == 4:
            fields["server_id"] = ipv4_text(value)
        elif code == 1 and len(value) == 4:
            fields["subnet_mask"] = ipv4_text(value)
        elif code == 3:
            fields["routers"] = _ips(value)
        elif code == 6:
            fields["dns_servers"] = _ips(value)
        elif code == 15:
            fields["domain_name"] = _text(value)
        elif code in _TIMES and len(value) == 4:
            fields[_TIMES[code]] = _U32.unpack(value)[0]


_TIMES: Final = {51: "lease_time", 58: "renewal_time", 59: "rebinding_time"}
