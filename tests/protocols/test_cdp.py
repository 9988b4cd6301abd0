from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import cdp
from medsentry.protocols.base import Malformed
from tests import pcaputil
from tests.protocols import tshark
from tests.protocols.strategies import spliced

REAL = Path(__file__).resolve().parents[2].parent / "shared/data/captures/ndpi/cfgs/default/pcap/capwap.pcap"
SNAP = b"\xaa\xaa\x03\x00\x00\x0c\x20\x00"


def tlv(tlv_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", tlv_type, 4 + len(value)) + value


def addresses(*entries: bytes) -> bytes:
    return struct.pack("!I", len(entries)) + b"".join(entries)


IPV4 = b"\x01\x01\xcc\x00\x04" + bytes([10, 77, 0, 160])
IPV6 = b"\x02\x08\xaa\xaa\x03\x00\x00\x00\x86\xdd\x00\x10" + bytes(15) + b"\x01"
PHONE = b"\x02\xb4\x00\x00" + (
    tlv(1, b"SEP00090FAA0001")
    + tlv(2, addresses(IPV4, IPV6))
    + tlv(3, b"Port 1")
    + tlv(4, struct.pack("!I", 0x90))  # VoIP phone + host
    + tlv(5, b"SCCP 9.4(2)")
    + tlv(6, b"Cisco IP Phone 8845")
    + tlv(0x0A, b"\x00\x64")
    + tlv(0x16, addresses(b"\x01\x01\xcc\x00\x04" + bytes([10, 77, 0, 161])))
)


def test_fields() -> None:
    assert cdp.SNAP_PID == 0x2000
    (msg,) = cdp.parse_datagram(PHONE)
    assert msg.kind == "cdp"
    assert msg.fields == {
        "version": 2, "ttl": 180, "device_id": "SEP00090FAA0001", "chassis_id": "SEP00090FAA0001",
        "addresses": ["10.77.0.160", "::1"], "port_id": "Port 1", "capabilities": ["host", "phone"],
        "software_version": "SCCP 9.4(2)", "platform": "Cisco IP Phone 8845", "native_vlan": 100,
        "mgmt_addresses": ["10.77.0.161"], "mgmt_ip": "10.77.0.161",
    }  # fmt: skip


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x03\xb4\x00\x00" + tlv(1, b"x"),  # version 3 does not exist
        b"\x02\xb4\x00\x00" + tlv(3, b"port"),  # no Device ID
        b"\x02\xb4\x00\x00"
        + tlv(1, b"x")
        + b"\x00\x03\x00\x00",  # TLV length < its header: would never advance
        b"\x02\xb4\x00\x00" + tlv(1, b"x") + b"\x00\x03\x00\x40port",  # TLV past the frame
        b"\x02\xb4\x00\x00" + tlv(1, b"x") + tlv(2, addresses(b"\x01\x01\xcc\x00\x09" + bytes(4))),
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        cdp.parse_datagram(payload)


def _frame(payload: bytes) -> bytes:
    llc = SNAP + payload
    return bytes.fromhex("01000ccccccc00090faa0001") + struct.pack("!H", len(llc)) + llc


def test_wireshark_reads_the_same(tmp_path: Path) -> None:
    """Our synthetic phone and the real Cisco access point in nDPI's captures, by Wireshark and by us."""
    frames = [_frame(PHONE)]
    if REAL.is_file():
        frames += [f for _ts, _lt, f in pcaputil.frames(REAL) if f[14:22] == SNAP]
    rows = tshark.fields(frames, tmp_path, "cdp.deviceid", "cdp.platform", "cdp.portid",
                         "cdp.software_version", "cdp.nrgyz.ip_address", "cdp.capabilities")  # fmt: skip
    assert len(rows) == len(frames) >= (2 if REAL.is_file() else 1)  # the nDPI capture only with shared data
    for frame, (device, platform, port, software, ips, caps) in zip(frames, rows, strict=True):
        f = cdp.parse_datagram(frame[22:])[0].fields
        assert (f["device_id"], f["platform"], f["port_id"]) == (device, platform, port)
        assert f["software_version"].replace("\n", ",") == software
        ipv4 = [ip for ip in f.get("addresses", []) + f.get("mgmt_addresses", []) if "." in ip]
        assert ",".join(ipv4) == ips
        assert sum(1 << cdp.CAPABILITIES.index(c) for c in f["capabilities"]) == int(caps, 16)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), spliced(PHONE)))
def test_fuzz_only_malformed_escapes(payload: bytes) -> None:
    with contextlib.suppress(Malformed):
        for msg in cdp.parse_datagram(payload):
            json.dumps(msg.fields)
