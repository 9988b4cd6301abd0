"""DNS (RFC 1035), multicast DNS with DNS-SD (RFC 6762/6763) and LLMNR (RFC 4795): one wire format.

    header      id(2) flags(2) qdcount(2) ancount(2) nscount(2) arcount(2)
                flags: QR(1) OPCODE(4) AA TC RD RA Z AD CD RCODE(4), most significant bit first
    question    qname qtype(2) qclass(2)
    resource    name type(2) class(2) ttl(4) rdlength(2) rdata
    name        labels: length(1, < 64) then bytes, ending with length 0; or a compression pointer,
                two bytes 11pppppp pppppppp giving the offset of the rest of the name in the message

Over TCP each message is preceded by its 2-byte length (RFC 1035 4.2.2). mDNS uses the top bit of a
question's class for "unicast response wanted" and of a record's class for "cache flush"; both are
ignored here. An mDNS response also advertises DNS-SD services: a PTR from the service type
("_dicom._tcp.local") to an instance, an SRV from the instance to host and port, and a TXT of key=value
pairs; each instance becomes one `mdns.service` message.

Questions must decode; a record section that is cut short or corrupt ends decoding there and the
message is still reported with `malformed: True`, so a broken additional section does not hide the
answers (Suricata does the same).
"""

from __future__ import annotations

import re
import socket
import struct
from typing import Any, Final

from medsentry.protocols.base import Malformed, Message, ipv4_text

NAME: Final = "dns"
UDP_PORTS: Final = frozenset({53, 5353, 5355})
TCP_PORTS: Final = frozenset({53})
MDNS_PORT: Final = 5353
LLMNR_PORT: Final = 5355

_HEADER: Final = struct.Struct("!HHHHHH")
_QUESTION: Final = struct.Struct("!HH")
_RR: Final = struct.Struct("!HHIH")
_U16: Final = struct.Struct("!H")
_SOA: Final = struct.Struct("!IIIII")
_SRV: Final = struct.Struct("!HHH")

_MAX_NAME: Final = 255  # octets on the wire, RFC 1035 2.3.4
_MAX_JUMPS: Final = 64  # compression pointers followed per name: stops pointer loops

TYPES: Final = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 10: "NULL", 12: "PTR", 13: "HINFO", 15: "MX", 16: "TXT",
    28: "AAAA", 29: "LOC", 33: "SRV", 35: "NAPTR", 39: "DNAME", 41: "OPT", 43: "DS", 44: "SSHFP",
    46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 52: "TLSA", 64: "SVCB", 65: "HTTPS",
    99: "SPF", 250: "TSIG", 251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA",
}  # fmt: skip
RCODES: Final = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}  # fmt: skip
_NAME_TYPES: Final = frozenset({2, 5, 12, 39})  # rdata is a single domain name

# "<instance>.<_service>.<_tcp|_udp>.<domain>" (RFC 6763 4.1); greedy so dots in the instance stay in it
_INSTANCE: Final = re.compile(r"^(.+)\.(_[^.]+\._(?:tcp|udp))\.[^.].*$", re.DOTALL)


def read_labels(buf: bytes, off: int) -> tuple[list[bytes], int]:
    """The labels of the name at `off` and the offset just after it in the message.

    Pointers may point forward (Suricata and BIND accept it); loops are cut by the jump limit.
    """
    labels: list[bytes] = []
    end = -1  # where the name ends in the message: after the first pointer, else after the root label
    size = 1
    jumps = 0
    n = len(buf)
    while True:
        if off >= n:
            raise Malformed("name runs past the end of the message")
        length = buf[off]
        if length == 0:
            return labels, (off + 1 if end < 0 else end)
        if length >= 0xC0:
            if off + 1 >= n:
                raise Malformed("truncated compression pointer")
            jumps += 1
            if jumps > _MAX_JUMPS:
                raise Malformed("compression pointer loop")
            if end < 0:
                end = off + 2
            off = ((length & 0x3F) << 8) | buf[off + 1]
            continue
        if length >= 0x40:
            raise Malformed("reserved label type")
        size += length + 1
        if size > _MAX_NAME or off + 1 + length > n:
            raise Malformed("name too long or truncated")
        labels.append(buf[off + 1 : off + 1 + length])
        off += 1 + length


def read_name(buf: bytes, off: int) -> tuple[str, int]:
    labels, off = read_labels(buf, off)
    return ".".join(label.decode("utf-8", "backslashreplace") for label in labels), off


def _strings(rdata: bytes) -> list[str]:
    """<character-string>s: length(1) then bytes, back to back (TXT, HINFO)."""
    out, i = [], 0
    while i < len(rdata):
        j = i + 1 + rdata[i]
        if j > len(rdata):
            raise Malformed("character-string runs past rdata")
        out.append(rdata[i + 1 : j].decode("utf-8", "backslashreplace"))
        i = j
    return out


def _rdata(buf: bytes, rtype: int, start: int, end: int) -> Any:
    rdata = buf[start:end]
    if not rdata:
        return ""
    if rtype in (1, 28):
        if len(rdata) != (4 if rtype == 1 else 16):
            raise Malformed("address record of the wrong length")
        return ipv4_text(rdata) if rtype == 1 else socket.inet_ntop(socket.AF_INET6, rdata)
    # names inside rdata may be compressed, so they are read from the whole message
    if rtype in _NAME_TYPES:
        return read_name(buf, start)[0]
    if rtype == 16:
        return _strings(rdata)
    if rtype == 33 and len(rdata) > 6:
        priority, weight, port = _SRV.unpack_from(rdata)
        return {"priority": priority, "weight": weight, "port": port, "target": read_name(buf, start + 6)[0]}
    if rtype == 15 and len(rdata) > 2:
        return {"preference": _U16.unpack_from(rdata)[0], "exchange": read_name(buf, start + 2)[0]}
    if rtype == 6:
        mname, off = read_name(buf, start)
        rname, off = read_name(buf, off)
        if off + 20 > end:
            raise Malformed("short SOA")
        serial, refresh, retry, expire, minimum = _SOA.unpack_from(buf, off)
        return {"mname": mname, "rname": rname, "serial": serial, "refresh": refresh, "retry": retry,
                "expire": expire, "minimum": minimum}  # fmt: skip
    if rtype == 13:
        strings = _strings(rdata)
        if len(strings) != 2:
            raise Malformed("HINFO is two character-strings")
        return {"cpu": strings[0], "os": strings[1]}
    if rtype == 44 and len(rdata) > 2:
        return {"algorithm": rdata[0], "fp_type": rdata[1], "fingerprint": rdata[2:].hex()}
    return rdata.hex()


def _type_name(rtype: int) -> str:
    return TYPES.get(rtype) or f"TYPE{rtype}"  # RFC 3597 presentation of unknown types


def _records(buf: bytes, off: int, count: int, out: list[dict[str, Any]]) -> int:
    for _ in range(count):
        name, off = read_name(buf, off)
        if off + 10 > len(buf):
            raise Malformed("truncated resource record")
        rtype, _rclass, ttl, rdlength = _RR.unpack_from(buf, off)
        start = off + 10
        off = start + rdlength
        if off > len(buf):
            raise Malformed("rdata runs past the end of the message")
        data = _rdata(buf, rtype, start, off)
        out.append({"name": name, "type": _type_name(rtype), "ttl": ttl, "data": data})
    return off


def parse_message(buf: bytes, *, mdns: bool = False, llmnr: bool = False) -> list[Message]:
    """One DNS message (without the TCP length prefix)."""
    if len(buf) < 12:
        raise Malformed("short DNS header")
    ident, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(buf)
    off = 12
    queries = []
    for _ in range(qdcount):
        name, off = read_name(buf, off)
        if off + 4 > len(buf):
            raise Malformed("truncated question")
        qtype, _qclass = _QUESTION.unpack_from(buf, off)
        off += 4
        queries.append({"name": name, "type": _type_name(qtype)})
    sections: tuple[list[dict[str, Any]], ...] = ([], [], [])
    malformed = False
    try:
        for section, count in zip(sections, (ancount, nscount, arcount), strict=True):
            off = _records(buf, off, count, section)
    except Malformed:
        malformed = True
    rcode = flags & 0xF
    fields: dict[str, Any] = {
        "id": ident, "flags": flags, "opcode": (flags >> 11) & 0xF, "rcode": rcode,
        "rcode_name": RCODES.get(rcode, str(rcode)), "queries": queries, "answers": sections[0],
        "authorities": sections[1], "additionals": sections[2], "mdns": mdns, "llmnr": llmnr,
    }  # fmt: skip
    if malformed:
        fields["malformed"] = True
    response = bool(flags & 0x8000)
    messages = [Message("dns.response" if response else "dns.query", fields)]
    # a query's known answers are the querier's cache of other hosts' services, not its own
    if mdns and response:
        messages += _services(sections[0] + sections[2])
    return messages


def _services(records: list[dict[str, Any]]) -> list[Message]:
    """DNS-SD instances advertised in one mDNS response: PTR -> SRV -> TXT (+ the host's addresses)."""
    instances: dict[str, None] = {}  # ordered set
    srv: dict[str, dict[str, Any]] = {}
    txt: dict[str, Any] = {}  # a TXT record's strings (a list; what a malformed one gives as it is)
    addresses: dict[str, list[str]] = {}
    for rr in records:
        rtype, name, data = rr["type"], rr["name"], rr["data"]
        if rtype == "PTR" and _INSTANCE.match(data):
            instances[data] = None
        elif rtype == "SRV" and isinstance(data, dict):
            srv.setdefault(name, data)
            instances[name] = None
        elif rtype == "TXT":
            txt.setdefault(name, data)
        elif rtype in ("A", "AAAA") and data:
            addresses.setdefault(name, []).append(data)
    out = []
    for fqdn in instances:
        match = _INSTANCE.match(fqdn)
        if match is None:
            continue
        fields: dict[str, Any] = {"service": match[2], "instance": match[1]}
        if fqdn in srv:
            fields["target_host"] = srv[fqdn]["target"]
            fields["port"] = srv[fqdn]["port"]
            if srv[fqdn]["target"] in addresses:
                fields["ips"] = addresses[srv[fqdn]["target"]]
        if fqdn in txt:
            strings = txt[fqdn]  # an empty TXT record's data is "" (`_rdata`): no strings
            fields["txt"] = txt_dict(strings if isinstance(strings, list) else [])
        out.append(Message("mdns.service", fields))
    return out


def txt_dict(strings: list[str]) -> dict[str, str | bool]:
    """DNS-SD TXT strings as a dict (RFC 6763 6.3/6.4): a key alone is a boolean, the first key wins."""
    out: dict[str, str | bool] = {}
    for s in strings:
        key, eq, value = s.partition("=")
        if key and key not in out:
            out[key] = value if eq else True
    return out


def parse_datagram(payload: bytes, *, mdns: bool = False, llmnr: bool = False) -> list[Message]:
    """A DNS/mDNS/LLMNR datagram; the caller says which from the port (MDNS_PORT, LLMNR_PORT)."""
    return _parse_remembered(payload, mdns, llmnr)


def parse_datagram_on(payload: bytes, sport: int, dport: int) -> list[Message]:
    """The pipeline's hook for modules whose flavour depends on the port: mDNS and LLMNR differ from DNS."""
    return _parse_remembered(payload, MDNS_PORT in (sport, dport), LLMNR_PORT in (sport, dport))


_SEEN: Final[dict[tuple[bytes, bool, bool], list[Message]]] = {}
_SEEN_MAX: Final = 4096  # distinct messages remembered (bounded: cleared when full)


def _parse_remembered(payload: bytes, mdns: bool, llmnr: bool) -> list[Message]:
    """`parse_message`, remembered per message without its id: devices repeat the same queries and
    announcements (6,209 messages on big-1of4 are 737 distinct ones). Each call gets its own fields dict;
    the values in it (query and record lists) are shared between repeats, as facts are never changed."""
    if len(payload) < 12:
        return parse_message(payload, mdns=mdns, llmnr=llmnr)  # let it say what is wrong
    key = (payload[2:], mdns, llmnr)
    messages = _SEEN.get(key)
    if messages is None:
        messages = parse_message(payload, mdns=mdns, llmnr=llmnr)
        if len(_SEEN) >= _SEEN_MAX:
            _SEEN.clear()
        _SEEN[key] = messages
    ident = _U16.unpack_from(payload)[0]
    out = []
    for m in messages:
        fields = dict(m.fields)
        if "id" in fields:
            fields["id"] = ident
        out.append(Message(m.kind, fields, m.from_client))
    return out


class StreamParser:
    """DNS over TCP: each direction is a sequence of length-prefixed messages."""

    def __init__(self) -> None:
        self._buf = {True: b"", False: b""}

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        buf = self._buf[from_client] + data
        out: list[Message] = []
        bad = False
        off = 0
        while off + 2 <= len(buf):
            length = _U16.unpack_from(buf, off)[0]
            if off + 2 + length > len(buf):
                break
            try:
                messages = parse_message(buf[off + 2 : off + 2 + length])
            except Malformed:
                bad = True
            else:
                out += [Message(m.kind, m.fields, from_client) for m in messages]
            off += 2 + length
        self._buf[from_client] = buf[off:]
        # a bad message among good ones is dropped; alone it is reported
        if bad and not out:
            raise Malformed("bad DNS message in TCP stream")
        return out
