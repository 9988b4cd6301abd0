from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import snmp
from medsentry.protocols.base import Malformed
from tests import pcaputil

SNMP_PCAP = (
    Path(__file__).resolve().parents[2].parent / "shared/data/captures/ndpi/cfgs/default/pcap/snmp.pcap"
)
COMMUNITY = b"s3cr3t-c0mm"


def tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | (n.bit_length() + 7) // 8]) + n.to_bytes((n.bit_length() + 7) // 8)
    )
    return bytes([tag]) + length + body


def integer(v: int) -> bytes:
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def varbind(name: str, value: bytes) -> bytes:
    return tlv(0x30, oid(name) + value)


def message(version: int, pdu_tag: int, binds: list[bytes], community: bytes = COMMUNITY) -> bytes:
    pdu = tlv(pdu_tag, integer(77) + integer(0) + integer(0) + tlv(0x30, b"".join(binds)))
    return tlv(0x30, integer(version) + tlv(0x04, community) + pdu)


def test_system_group_response_without_the_community() -> None:
    descr = "Philips IntelliVue MX450 Rel. L.01 " + "x" * 200  # forces a long-form BER length
    payload = message(1, 0xA2, [
        varbind("1.3.6.1.2.1.1.1.0", tlv(0x04, descr.encode())),
        varbind("1.3.6.1.2.1.1.2.0", oid("1.3.6.1.4.1.311.1.99999")),
        varbind("1.3.6.1.2.1.1.5.0", tlv(0x04, b"ICU-BED12-MON")),
        varbind("1.3.6.1.2.1.1.6.0", tlv(0x04, b"ICU 2nd floor")),
        varbind("1.3.6.1.2.1.1.3.0", tlv(0x43, b"\x01\x00")),
    ])  # fmt: skip
    (msg,) = snmp.parse_datagram(payload)
    assert msg.kind == "snmp.response"
    f = msg.fields
    assert (f["version"], f["request_id"], f["error_status"]) == ("2c", 77, 0)
    assert (
        f["sys_descr"] == descr and f["sys_name"] == "ICU-BED12-MON" and f["sys_location"] == "ICU 2nd floor"
    )
    assert f["sys_object_id"] == "1.3.6.1.4.1.311.1.99999"
    assert f["oids"][-1] == "1.3.6.1.2.1.1.3.0"
    assert f["community_present"] is True and f["community_default"] is False
    assert COMMUNITY.decode() not in json.dumps(f) + repr(msg)


def test_request_kinds_and_default_community() -> None:
    get = message(0, 0xA0, [varbind("1.3.6.1.2.1.1.1.0", tlv(0x05, b""))], community=b"public")
    (msg,) = snmp.parse_datagram(get)
    assert msg.kind == "snmp.get_request" and msg.fields["version"] == "1"
    assert msg.fields["community_default"] is True and "sys_descr" not in msg.fields
    bulk = message(1, 0xA5, [], community=b"")
    assert snmp.parse_datagram(bulk)[0].fields["community_present"] is False


def test_v1_trap() -> None:
    pdu = tlv(0xA4, oid("1.3.6.1.4.1.9.1") + tlv(0x40, bytes([10, 1, 30, 1])) + integer(2) + integer(0)
              + tlv(0x43, b"\x05") + tlv(0x30, b""))  # fmt: skip
    (msg,) = snmp.parse_datagram(tlv(0x30, integer(0) + tlv(0x04, b"public") + pdu))
    assert msg.kind == "snmp.trap"
    f = msg.fields
    assert (f["enterprise"], f["agent_addr"], f["generic_trap"], f["specific_trap"], f["oids"]) == (
        "1.3.6.1.4.1.9.1", "10.1.30.1", 2, 0, [])  # fmt: skip


def _v3(flags: int, user: bytes, data: bytes) -> bytes:
    header = tlv(0x30, integer(1) + integer(65507) + tlv(0x04, bytes([flags])) + integer(3))
    engine = bytes.fromhex("8000a7ba03") + bytes(6)  # bit 1, then enterprise number 42938
    usm = tlv(
        0x30, tlv(0x04, engine) + integer(1) + integer(2) + tlv(0x04, user) + tlv(0x04, b"") + tlv(0x04, b"")
    )
    return tlv(0x30, integer(3) + header + tlv(0x04, usm) + data)


def test_v3_engine_and_user() -> None:
    pdu = tlv(
        0xA2,
        integer(5) + integer(0) + integer(0) + tlv(0x30, varbind("1.3.6.1.2.1.1.5.0", tlv(0x04, b"pump"))),
    )
    (msg,) = snmp.parse_datagram(_v3(0x01, b"nurse-admin", tlv(0x30, tlv(0x04, b"") + tlv(0x04, b"") + pdu)))
    f = msg.fields
    assert msg.kind == "snmp.response" and f["version"] == "3" and f["sys_name"] == "pump"
    assert f["engine_enterprise"] == 42938 and f["auth"] is True and f["priv"] is False and f["user_present"]
    assert "nurse-admin" not in json.dumps(f)
    (msg,) = snmp.parse_datagram(_v3(0x03, b"nurse-admin", tlv(0x04, b"\x8f" * 40)))
    assert msg.kind == "snmp.encrypted" and msg.fields["priv"] is True and "oids" not in msg.fields


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x30\x80" + integer(1) + b"\x00\x00",  # indefinite length
        b"\x30\x05" + integer(1),  # content shorter than its length
        b"\x30\x03\x1f\x01\x00",  # multi-byte tag
        tlv(0x30, integer(2) + tlv(0x04, b"x")),  # version 2 does not exist
        tlv(0x30, integer(1) + tlv(0x04, b"x") + tlv(0xAF, b"")),  # no such PDU
        tlv(0x30, integer(1) + tlv(0x04, b"x") + tlv(0xA2, integer(1))),  # PDU cut short
        message(1, 0xA2, [tlv(0x30, tlv(0x06, b"\x2b\x86") + tlv(0x05, b""))]),  # OID ends mid-arc
        tlv(0x30, tlv(0x02, b"\x01" * 10)),  # oversized INTEGER
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        snmp.parse_datagram(payload)


def _tshark(pcap: Path, *fields: str) -> list[list[str]]:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    args = ["tshark", "-r", str(pcap), "-Y", "snmp", "-T", "fields", *(a for f in fields for a in ("-e", f))]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_real_capture_against_wireshark(shared_data: Path) -> None:
    ours = [snmp.parse_datagram(s.payload) for s in pcaputil.segments(SNMP_PCAP) if s.transport == "udp"]
    theirs = _tshark(SNMP_PCAP, "snmp.community", "snmp.name", "snmp.value.octets")
    assert len(ours) == len(theirs) >= 50
    compared = 0
    for (msg,), (community, names, octets) in zip(ours, theirs, strict=True):
        assert not community or community not in json.dumps(msg.fields)
        assert msg.fields.get("community_present", False) == bool(community)
        if "oids" in msg.fields:
            assert (
                msg.fields["oids"][: snmp._MAX_OIDS] == (names.split(",") if names else [])[: snmp._MAX_OIDS]
            )
        for key in ("sys_name", "sys_location"):
            if key in msg.fields:
                assert msg.fields[key].encode().hex() == octets.split(",")[0]
                compared += 1
    assert compared >= 10


SAMPLES = [message(1, 0xA2, [varbind("1.3.6.1.2.1.1.1.0", tlv(0x04, b"descr"))]), _v3(0, b"u", b"")]
if SNMP_PCAP.is_file():
    SAMPLES += [s.payload for s in pcaputil.segments(SNMP_PCAP) if s.transport == "udp"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    s = draw(st.sampled_from(SAMPLES))
    i = draw(st.integers(0, len(s)))
    j = draw(st.integers(i, len(s)))
    return s[:i] + draw(st.binary(max_size=8)) + s[j:]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), mutated()))
def test_fuzz_only_malformed_escapes(payload: bytes) -> None:
    with contextlib.suppress(Malformed):
        for msg in snmp.parse_datagram(payload):
            json.dumps(msg.fields)
