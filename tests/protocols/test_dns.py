from __future__ import annotations

import contextlib
import json
import struct
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import dns
from medsentry.protocols.base import Malformed
from tests import pcaputil

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "captures"
HOSPITAL = CAPTURES / "virtual-hospital" / "general-hospital-normal-60s.pcap"


def name(text: str) -> bytes:
    return (
        b"".join(bytes([len(p)]) + p for p in (label.encode() for label in text.split(".") if label)) + b"\0"
    )


def header(flags: int, qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0, ident: int = 7) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def question(qname: str, qtype: int = 1) -> bytes:
    return name(qname) + struct.pack("!HH", qtype, 1)


def rr(owner: bytes | str, rtype: int, rdata: bytes, ttl: int = 120) -> bytes:
    owner = name(owner) if isinstance(owner, str) else owner
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def one(payload: bytes, **kw: bool) -> dict:
    (msg,) = [m for m in dns.parse_datagram(payload, **kw) if m.kind.startswith("dns.")]
    return {"kind": msg.kind, **msg.fields}


def test_query_header_fields() -> None:
    f = one(header(0x0100, qd=1, ident=0xBEEF) + question("pacs.hospital.local", 28))
    assert f["kind"] == "dns.query" and f["id"] == 0xBEEF and f["flags"] == 0x0100 and f["opcode"] == 0
    assert f["queries"] == [{"name": "pacs.hospital.local", "type": "AAAA"}]
    assert (f["answers"], f["mdns"], f["llmnr"]) == ([], False, False)
    assert one(header(0, qd=1) + question("ws3", 1), llmnr=True)["llmnr"] is True


def test_response_record_types_and_compression() -> None:
    q = question("h.example", 255)  # the name sits at offset 12
    ptr = b"\xc0\x0c"
    records = [
        rr(ptr, 1, bytes([10, 0, 0, 7])),
        rr(ptr, 28, bytes(15) + b"\x01"),
        rr(ptr, 5, b"\x05alias" + ptr),
        rr(ptr, 15, b"\x00\x0a\x04mail" + ptr),
        rr(ptr, 16, b"\x05a=b c\x00"),
        rr(ptr, 13, b"\x03x86\x05Linux"),
        rr(ptr, 44, b"\x01\x01" + bytes(range(20))),
        rr(ptr, 99, b"\xde\xad"),
        rr(ptr, 4242, b"\x01"),
        rr(ptr, 1, b""),
    ]
    soa = rr("example", 6, name("ns.example") + name("admin.example") + struct.pack("!IIIII", 9, 1, 2, 3, 4))
    f = one(header(0x8183, qd=1, an=len(records), ns=1) + q + b"".join(records) + soa)
    assert f["kind"] == "dns.response" and f["rcode"] == 3 and f["rcode_name"] == "NXDOMAIN"
    data = [(a["type"], a["data"]) for a in f["answers"]]
    assert data == [
        ("A", "10.0.0.7"), ("AAAA", "::1"), ("CNAME", "alias.h.example"),
        ("MX", {"preference": 10, "exchange": "mail.h.example"}), ("TXT", ["a=b c", ""]),
        ("HINFO", {"cpu": "x86", "os": "Linux"}),
        ("SSHFP", {"algorithm": 1, "fp_type": 1, "fingerprint": bytes(range(20)).hex()}),
        ("SPF", "dead"), ("TYPE4242", "01"), ("A", ""),
    ]  # fmt: skip
    assert f["authorities"][0]["data"] == {
        "mname": "ns.example", "rname": "admin.example", "serial": 9, "refresh": 1, "retry": 2, "expire": 3,
        "minimum": 4,
    }  # fmt: skip
    assert all(a["name"] == "h.example" and a["ttl"] == 120 for a in f["answers"])
    assert "malformed" not in f
    json.dumps(f)


def test_forward_pointer_is_accepted() -> None:
    # first question points at the second one's name, later in the message (Suricata #8584)
    payload = header(0x0100, qd=2) + b"\xc0\x12" + b"\x00\x01\x00\x01" + question("later.net")
    assert [q["name"] for q in one(payload)["queries"]] == ["later.net", "later.net"]


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        header(0, qd=1),  # question missing
        header(0, qd=1) + b"\xc0\x0c\x00\x01\x00\x01",  # pointer to itself
        header(0, qd=1) + b"\xc0\x11\x00\x01\x00\xc0\x0c",  # two pointers pointing at each other
        header(0, qd=1) + b"\x41" + b"a" * 65 + b"\0\0\1\0\1",  # reserved label type 01
        header(0, qd=1) + (b"\x3f" + b"a" * 63) * 4 + b"\0\0\1\0\1",  # 257 octets > 255
        header(0, qd=1) + name("short"),  # no qtype/qclass
        header(0, qd=1) + b"\x05ab",  # label past the end
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        dns.parse_datagram(payload)


def test_corrupt_record_section_keeps_what_came_before() -> None:
    good = rr("a.b", 1, bytes([1, 2, 3, 4]))
    f = one(header(0x8180, qd=1, an=1, ar=2) + question("a.b") + good + b"\x01a\x00\x00\x01")
    assert f["answers"][0]["data"] == "1.2.3.4" and f["additionals"] == [] and f["malformed"] is True
    f = one(header(0x8180, an=1) + rr("a.b", 16, b"\x09short"))  # character-string past its rdata
    assert f["answers"] == [] and f["malformed"] is True
    f = one(header(0x8180, an=2) + rr("a.b", 1, bytes(4)) + rr("a.b", 1, bytes(5)))  # A of 5 bytes
    assert len(f["answers"]) == 1 and f["malformed"] is True


def _advertisement(mdns_flags: int = 0x8400) -> bytes:
    service = "_dicom._tcp.local"
    # the instance "Dr. Who's CT" is one label: it may hold dots and spaces
    inst = bytes([len(b"Dr. Who's CT")]) + b"Dr. Who's CT" + name(service)
    return (
        header(mdns_flags, an=3, ar=4, ident=0)
        + rr("_services._dns-sd._udp.local", 12, name(service))  # service type enumeration
        + rr(service, 12, inst)
        + rr("4.0.77.10.in-addr.arpa", 12, name("ct01.local"))  # reverse mapping, not a service
        + rr(inst, 33, struct.pack("!HHH", 0, 0, 104) + name("ct01.local"))
        + rr(inst, 16, b"\x08aet=CT01\x0aaet=IGNORE\x03tls\x00")
        + rr("ct01.local", 1, bytes([10, 77, 0, 4]))
        + rr("other.local", 1, bytes([10, 77, 0, 5]))
    )


def test_mdns_service_from_ptr_srv_txt() -> None:
    payload = _advertisement()
    msgs = dns.parse_datagram(payload, mdns=True)
    assert [m.kind for m in msgs] == ["dns.response", "mdns.service"]
    assert msgs[1].fields == {
        "service": "_dicom._tcp", "instance": "Dr. Who's CT", "target_host": "ct01.local", "port": 104,
        "ips": ["10.77.0.4"], "txt": {"aet": "CT01", "tls": True},
    }  # fmt: skip
    assert msgs[0].fields["mdns"] is True
    # the same bytes on port 53 come from a DNS server, which does not offer the service itself
    assert [m.kind for m in dns.parse_datagram(payload)] == ["dns.response"]


def test_mdns_query_known_answers_are_not_the_senders_services() -> None:
    payload = _advertisement(mdns_flags=0x0000)
    assert [m.kind for m in dns.parse_datagram(payload, mdns=True)] == ["dns.query"]


def test_mdns_ptr_without_srv_still_names_the_instance() -> None:
    payload = header(0x8400, an=1) + rr("_ipp._tcp.local", 12, name("Printer 2F._ipp._tcp.local"))
    service = dns.parse_datagram(payload, mdns=True)[1]
    assert service.fields == {"service": "_ipp._tcp", "instance": "Printer 2F"}


def test_txt_dict() -> None:
    assert dns.txt_dict(["a=1", "A=2", "a=3", "flag", "empty=", "=novalue", ""]) == {
        "a": "1", "A": "2", "flag": True, "empty": ""
    }  # fmt: skip


def _tcp(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def test_stream_parser_reassembles_and_splits() -> None:
    query = header(0x0100, qd=1) + question("fhir.hospital.local")
    answer = header(0x8180, qd=1, an=1) + question("fhir.hospital.local") + rr(b"\xc0\x0c", 1, bytes(4))
    parser = dns.StreamParser()
    stream = _tcp(query) + _tcp(query)
    assert parser.feed(stream[:1], True) == []
    assert parser.feed(stream[1:10], True) == []
    msgs = parser.feed(stream[10:], True)
    assert [(m.kind, m.from_client) for m in msgs] == [("dns.query", True)] * 2
    (msg,) = parser.feed(_tcp(answer), False)
    assert msg.kind == "dns.response" and msg.from_client is False
    # a bad message among good ones is dropped, alone it is Malformed, and the stream goes on
    assert [m.kind for m in parser.feed(_tcp(b"junk") + _tcp(query), True)] == ["dns.query"]
    with pytest.raises(Malformed):
        parser.feed(_tcp(b"junk"), True)
    assert len(parser.feed(_tcp(query), True)) == 1


def test_virtual_hospital_mdns_services_match_labels(shared_data: Path) -> None:
    if not HOSPITAL.is_file():
        pytest.skip("virtual hospital capture absent")
    labels = [json.loads(line) for line in Path(f"{HOSPITAL}.labels.jsonl").read_text().splitlines()]
    devices = [d for d in labels if d.get("type") == "device" and d["protocols"].get("mdns")]
    services = defaultdict(list)
    for seg in pcaputil.segments(HOSPITAL):
        if seg.transport == "udp" and seg.sport == dns.MDNS_PORT:
            for msg in dns.parse_datagram(seg.payload, mdns=True):
                if msg.kind == "mdns.service":
                    services[seg.src_mac].append(msg.fields)
    assert len(devices) >= 5
    for device in devices:
        want = device["protocols"]["mdns"]
        txt = dict(pair.split("=", 1) for pair in want["txt"].split(";"))
        got = services[device["mac"]]
        assert got, device["name"]
        assert all((s["service"], s["port"], s["txt"]) == (want["service"], want["port"], txt) for s in got)
        assert all(s["ips"] == [device["ip"]] for s in got)


def _real_samples() -> list[bytes]:
    samples = [_advertisement(), header(0x0100, qd=2) + b"\xc0\x12\x00\x01\x00\x01" + question("x.net")]
    pcaps = [
        *CAPTURES.glob("suricata-verify/dns/*/*.pcap"),
        CAPTURES / "ndpi/cfgs/default/pcap/malformed_dns.pcap",
    ]
    for pcap in filter(Path.is_file, pcaps):
        samples += [
            s.payload for s in pcaputil.segments(pcap) if s.transport == "udp" and 53 in (s.sport, s.dport)
        ]
    return samples[:400]


SAMPLES = _real_samples()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    s = draw(st.sampled_from(SAMPLES))
    i = draw(st.integers(0, len(s)))
    j = draw(st.integers(i, len(s)))
    return s[:i] + draw(st.binary(max_size=8)) + s[j:]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=600), mutated()), st.booleans())
def test_fuzz_datagrams(payload: bytes, mdns: bool) -> None:
    try:
        for msg in dns.parse_datagram(payload, mdns=mdns):
            json.dumps(msg.fields)
    except Malformed:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.binary(max_size=80), mutated().map(_tcp)), st.booleans()), max_size=6))
def test_fuzz_stream(chunks: list[tuple[bytes, bool]]) -> None:
    parser = dns.StreamParser()
    for data, from_client in chunks:
        with contextlib.suppress(Malformed):
            parser.feed(data, from_client)


def test_repeated_messages_get_their_own_id_and_fields_dict() -> None:
    query = question("pacs.hospital.local")
    a = dns.parse_datagram_on(header(0x0100, qd=1, ident=1) + query, 40000, 53)
    b = dns.parse_datagram_on(header(0x0100, qd=1, ident=2) + query, 40001, 53)
    assert [m.fields["id"] for m in a + b] == [1, 2]
    assert a[0].fields is not b[0].fields and {**a[0].fields, "id": 2} == b[0].fields
    # the port decides the flavour, so the same bytes on the mDNS port are not the remembered DNS message
    (m,) = dns.parse_datagram_on(header(0x0100, qd=1, ident=3) + query, 5353, 5353)
    assert m.fields["mdns"] and not a[0].fields["mdns"]
    with pytest.raises(Malformed):
        dns.parse_datagram_on(header(0x0100, qd=2, ident=4) + query, 40000, 53)  # a question missing


def test_an_empty_txt_record_has_no_strings() -> None:
    """An mDNS service whose TXT record has no data (RFC 6763 asks for one empty string; a device may send
    none): an empty dict, not an error (compiled, the TXT strings' type is checked). Found by the fuzzer."""
    instance = b"\x0cDr. Who's CT\x06_dicom\x04_tcp\x05local\x00"
    service = b"\x06_dicom\x04_tcp\x05local\x00"
    ptr = service + b"\x00\x0c\x00\x01\x00\x00\x00x" + bytes([0, len(instance)]) + instance
    txt = instance + b"\x00\x10\x00\x01\x00\x00\x00x\x00\x00"  # TXT, RDLENGTH 0
    payload = b"\x00\x00\x84\x00\x00\x00\x00\x02\x00\x00\x00\x00" + ptr + txt
    services = [m for m in dns.parse_datagram(payload, mdns=True) if m.kind == "mdns.service"]
    assert [(m.fields["instance"], m.fields["txt"]) for m in services] == [("Dr. Who's CT", {})]
