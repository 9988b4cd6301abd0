from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import dhcp
from medsentry.protocols.base import Malformed
from tests import pcaputil

MAC = bytes.fromhex("0009fb7200ff")
COOKIE = b"\x63\x82\x53\x63"
CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "captures"


def opt(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def message(
    options: bytes, *, op: int = 1, sname: bytes = b"", file: bytes = b"", cookie: bytes = COOKIE
) -> bytes:
    header = struct.pack("!BBBBIHH4s4s4s4s16s", op, 1, 6, 0, 0x1234ABCD, 0, 0x8000, bytes(4), bytes(4),
                         bytes([10, 0, 0, 1]), bytes(4), MAC)  # fmt: skip
    return header + sname.ljust(64, b"\0") + file.ljust(128, b"\0") + cookie + options


def parse(payload: bytes) -> dict:
    (msg,) = dhcp.parse_datagram(payload)
    return {"kind": msg.kind, **msg.fields}


def test_request_fingerprint_fields() -> None:
    fqdn = b"\x05\x00\x00" + b"\x06icu-12\x08hospital\x05local\x00"  # flags S|E: DNS wire encoding
    f = parse(message(
        opt(53, b"\x03") + opt(61, b"\x01" + MAC) + opt(12, b"ICU-BED12-MON\x00") + opt(60, b"Philips MX450")
        + opt(55, bytes([1, 3, 6, 15, 42, 51])) + opt(57, b"\x05\xdc") + opt(50, bytes([10, 77, 0, 111]))
        + opt(54, bytes([10, 77, 0, 1])) + opt(81, fqdn) + b"\xff"
    ))  # fmt: skip
    assert f["kind"] == "dhcp.request" and f["message_type"] == 3 and f["op"] == 1
    assert f["client_mac"] == "00:09:fb:72:00:ff" and f["xid"] == 0x1234ABCD
    assert f["hostname"] == "ICU-BED12-MON"  # the C terminator some clients send is dropped
    assert f["vendor_class"] == "Philips MX450"
    assert f["param_request_list"] == [1, 3, 6, 15, 42, 51]
    assert f["client_id"] == "01" + MAC.hex()
    assert f["max_msg_size"] == 1500
    assert f["requested_ip"] == "10.77.0.111" and f["server_id"] == "10.77.0.1"
    assert f["fqdn"] == "icu-12.hospital.local"
    assert f["options"] == [53, 61, 12, 60, 55, 57, 50, 54, 81]
    assert f["siaddr"] == "10.0.0.1" and f["ciaddr"] == "0.0.0.0"
    json.dumps(f)


def test_ascii_fqdn_and_server_options() -> None:
    f = parse(message(
        opt(53, b"\x05") + opt(81, b"\x00\x00\x00pump7.ward") + opt(1, bytes([255, 255, 255, 0]))
        + opt(3, bytes([10, 0, 0, 1, 10, 0, 0, 2])) + opt(6, bytes([10, 0, 0, 53]))
        + opt(51, b"\x00\x00\x0e\x10") + opt(58, b"\x00\x00\x07\x08") + opt(59, b"\x00\x00\x0c\x4e")
        + opt(15, b"ward.local"),
        op=2,
    ))  # fmt: skip
    assert f["kind"] == "dhcp.ack" and f["op"] == 2
    assert f["fqdn"] == "pump7.ward"
    assert f["subnet_mask"] == "255.255.255.0" and f["routers"] == ["10.0.0.1", "10.0.0.2"]
    assert f["dns_servers"] == ["10.0.0.53"] and f["domain_name"] == "ward.local"
    assert (f["lease_time"], f["renewal_time"], f["rebinding_time"]) == (3600, 1800, 3150)


def test_option_overload_reads_options_then_file_then_sname() -> None:
    sname = opt(12, b"from-sname") + b"\xff"
    file = opt(60, b"from-file") + opt(55, b"\x01\x03") + b"\xff"
    f = parse(message(opt(53, b"\x01") + opt(52, b"\x03") + b"\xff", sname=sname, file=file))
    assert f["options"] == [53, 52, 60, 55, 12]  # RFC 3396 3: options, file, sname
    assert (f["vendor_class"], f["hostname"], f["param_request_list"]) == ("from-file", "from-sname", [1, 3])
    # without option 52 the same sname/file bytes are a server name and a boot file, not options
    plain = parse(message(opt(53, b"\x01") + b"\xff", sname=sname, file=file))
    assert "hostname" not in plain and plain["options"] == [53]


def test_repeated_option_is_concatenated() -> None:
    f = parse(message(opt(53, b"\x01") + opt(55, b"\x01\x03") + opt(55, b"\x06\x0f") + b"\xff"))
    assert f["param_request_list"] == [1, 3, 6, 15]  # RFC 3396 long option
    assert f["options"] == [53, 55, 55]


def test_padding_and_cut_off_option() -> None:
    f = parse(message(b"\x00\x00" + opt(53, b"\x01") + opt(12, b"keep") + b"\x3c\x20short"))
    assert f["hostname"] == "keep" and "vendor_class" not in f  # snaplen cut: keep what came before
    assert f["options"] == [53, 12]
    assert parse(message(opt(53, b"\x01") + b"\x34\x00" + b"\xff"))["kind"] == "dhcp.discover"  # empty 52


def test_bootp_and_unknown_message_type() -> None:
    f = parse(message(b"", cookie=b"\x00" * 4))
    assert f["kind"] == "dhcp.bootp" and "options" not in f and f["client_mac"] == "00:09:fb:72:00:ff"
    assert parse(message(opt(53, b"\x63")))["kind"] == "dhcp.unknown"
    assert parse(message(b"\xff"))["kind"] == "dhcp.bootp"  # cookie but no message type


@pytest.mark.parametrize("payload", [b"", b"\x01" * 235, message(b"", op=3)])
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        dhcp.parse_datagram(payload)


def test_hardware_address_longer_than_chaddr() -> None:
    bad = bytearray(message(opt(53, b"\x01")))
    bad[2] = 17
    with pytest.raises(Malformed):
        dhcp.parse_datagram(bytes(bad))


def _real_samples() -> list[bytes]:
    overloaded = opt(53, b"\x03") + opt(55, b"\x01\x03\x06") + opt(52, b"\x03") + b"\xff"
    samples = [message(overloaded, file=opt(12, b"x"))]
    pcaps = [
        CAPTURES / "ndpi/cfgs/default/pcap/dhcp-fuzz.pcapng",
        *CAPTURES.glob("suricata-verify/dhcp*/*.pcap"),
    ]
    for pcap in filter(Path.is_file, pcaps):
        samples += [
            s.payload for s in pcaputil.segments(pcap) if s.transport == "udp" and 67 in (s.sport, s.dport)
        ]
    return samples


SAMPLES = _real_samples()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    s = draw(st.sampled_from(SAMPLES))
    i = draw(st.integers(0, len(s)))
    j = draw(st.integers(i, len(s)))
    return s[:i] + draw(st.binary(max_size=8)) + s[j:]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=600), mutated()))
def test_fuzz_only_malformed_escapes(payload: bytes) -> None:
    try:
        for msg in dhcp.parse_datagram(payload):
            json.dumps(msg.fields)
    except Malformed:
        pass
