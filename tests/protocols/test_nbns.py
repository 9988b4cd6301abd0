from __future__ import annotations

import contextlib
import json
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import nbns
from medsentry.protocols.base import Malformed
from tests import pcaputil

NDPI = Path(__file__).resolve().parents[2].parent / "shared/data/captures/ndpi/cfgs/default"


def encode(name: str, suffix: int) -> bytes:
    raw = name.encode().ljust(15, b" ") + bytes([suffix])
    return b"\x20" + bytes(c for b in raw for c in (0x41 + (b >> 4), 0x41 + (b & 0xF))) + b"\0"


def test_first_level_encoding_round_trip() -> None:
    payload = struct.pack("!HHHHHH", 1, 0x0110, 1, 0, 0, 0) + encode("ICU-WS-07", 0x20) + b"\x00\x20\x00\x01"
    (msg,) = nbns.parse_datagram(payload)
    assert msg.kind == "nbns.query"
    assert msg.fields == {
        "id": 1, "opcode": 0, "rcode": 0, "broadcast": True, "name": "ICU-WS-07", "suffix": 0x20,
        "type": "NB", "ips": [],
    }  # fmt: skip


def test_registration_with_scope_and_address() -> None:
    name = encode("LAB-ANALYZER", 0)[:-1] + b"\x04ward\x00"
    additional = b"\xc0\x0c" + struct.pack("!HHIH", 0x20, 1, 300000, 6) + b"\x60\x00" + bytes([10, 77, 0, 31])
    payload = struct.pack("!HHHHHH", 2, 0x2910, 1, 0, 0, 1) + name + b"\x00\x20\x00\x01" + additional
    (msg,) = nbns.parse_datagram(payload)
    assert msg.kind == "nbns.registration"
    assert (msg.fields["name"], msg.fields["scope"], msg.fields["ips"]) == (
        "LAB-ANALYZER",
        "ward",
        ["10.77.0.31"],
    )
    assert msg.fields["group"] is False


def test_release_and_response_kinds() -> None:
    body = encode("X", 0) + b"\x00\x20\x00\x01"
    assert nbns.parse_datagram(struct.pack("!HHHHHH", 3, 0x3000, 1, 0, 0, 0) + body)[0].kind == "nbns.release"
    with pytest.raises(Malformed):  # opcode 2 is not defined
        nbns.parse_datagram(struct.pack("!HHHHHH", 3, 0x1000, 1, 0, 0, 0) + body)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        struct.pack("!HHHHHH", 1, 0, 0, 0, 0, 0),  # no name at all
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x20" + b"Z" * 32 + b"\0\0\x20\0\1",  # 'Z' is not A..P
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x04ABCD\0\0\x20\0\1",  # not 32 bytes
        struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + encode("A", 0),  # question cut short
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        nbns.parse_datagram(payload)


def _ndpi_flows() -> dict[frozenset[tuple[str, int]], str]:
    out = NDPI / "result" / "netbios.pcap.out"
    flows = {}
    for line in out.read_text().splitlines() if out.is_file() else []:
        m = re.match(r"^\s+\d+\s+UDP ([\d.]+):(\d+) <?-> ([\d.]+):137 \[.*\[Hostname/SNI: ([^\]]+)\]", line)
        if m:
            flows[frozenset({(m[1], int(m[2])), (m[3], 137)})] = m[4]
    return flows


def test_names_match_ndpi(shared_data: Path) -> None:
    """nDPI names each NetBIOS flow after the (lower-cased) name in its first packet."""
    flows = _ndpi_flows()
    assert len(flows) >= 10
    first: dict[frozenset[tuple[str, int]], dict] = {}
    for seg in pcaputil.segments(NDPI / "pcap" / "netbios.pcap"):
        key = frozenset({(seg.src, seg.sport), (seg.dst, seg.dport)})
        if seg.transport == "udp" and key in flows and key not in first:
            first[key] = nbns.parse_datagram(seg.payload)[0].fields
    assert {k: f["name"].lower() for k, f in first.items()} == flows


def test_node_status_names_and_mac(shared_data: Path) -> None:
    statuses = [
        msg.fields
        for seg in pcaputil.segments(NDPI / "pcap" / "netbios.pcap")
        if seg.transport == "udp" and seg.sport == 137
        for msg in nbns.parse_datagram(seg.payload)
        if msg.fields.get("type") == "NBSTAT" and msg.kind == "nbns.response"
    ]
    assert statuses
    # as Wireshark decodes them: GUNNAR<00>, VIGILANT_GROUP<00> (group), GUNNAR<20>, VIGILANT_GROUP<1e>
    names = [(n["name"], n["suffix"], n["group"]) for n in statuses[0]["names"]]
    assert names == [("GUNNAR", 0, False), ("VIGILANT_GROUP", 0, True), ("GUNNAR", 0x20, False),
                     ("VIGILANT_GROUP", 0x1E, True)]  # fmt: skip
    assert statuses[0]["unit_id"] == "00:1c:c4:10:79:0f" and statuses[0]["name"] == "*"


def _samples() -> list[bytes]:
    pcap = NDPI / "pcap" / "netbios.pcap"
    if not pcap.is_file():
        return [struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + encode("X", 0) + b"\0\x20\0\1"]
    payloads = {s.payload for s in pcaputil.segments(pcap) if s.transport == "udp" and s.dport == 137}
    return sorted(payloads)


SAMPLES = _samples()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    s = draw(st.sampled_from(SAMPLES))
    i = draw(st.integers(0, len(s)))
    j = draw(st.integers(i, len(s)))
    return s[:i] + draw(st.binary(max_size=8)) + s[j:]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), mutated()))
def test_fuzz_only_malformed_escapes(payload: bytes) -> None:
    with contextlib.suppress(Malformed):
        for msg in nbns.parse_datagram(payload):
            json.dumps(msg.fields)
