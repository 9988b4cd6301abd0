from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import lldp
from medsentry.protocols.base import Malformed
from tests import pcaputil
from tests.protocols import tshark
from tests.protocols.strategies import spliced

REAL = (
    Path(__file__).resolve().parents[2].parent
    / "shared/data/captures/ndpi/cfgs/default/pcap/starcraft_battle.pcap"
)
ETHERNET = bytes.fromhex("0180c200000e0009fb7200ff88cc")


def tlv(tlv_type: int, value: bytes) -> bytes:
    return struct.pack("!H", tlv_type << 9 | len(value)) + value


def med(subtype: int, text: bytes) -> bytes:
    return tlv(127, b"\x00\x12\xbb" + bytes([subtype]) + text)


PHONE = (
    tlv(1, b"\x04" + bytes.fromhex("0009fb7200ff"))
    + tlv(2, b"\x05eth0")
    + tlv(3, b"\x00\x78")
    + tlv(4, b"Patient monitor LAN")
    + tlv(5, b"ICU-BED12-MON")
    + tlv(6, b"Philips IntelliVue MX450 L.01")
    + tlv(7, struct.pack("!HH", 0x0024, 0x0020))  # bridge + telephone, telephone enabled
    + tlv(8, b"\x05\x01" + bytes([10, 77, 0, 111]) + b"\x02\x00\x00\x00\x01\x00")
    + med(5, b"A.01")
    + med(6, b"L.01.23")
    + med(9, b"Philips Medical Systems")
    + med(10, b"MX450")
    + tlv(127, b"\x00\x80\xc2\x01\x00\x01")  # 802.1 port VLAN: ignored
    + tlv(0, b"")
)


def test_fields() -> None:
    (msg,) = lldp.parse_datagram(PHONE + b"\0" * 20)  # Ethernet padding after the end TLV
    assert msg.kind == "lldp"
    assert msg.fields == {
        "chassis_id": "00:09:fb:72:00:ff", "port_id": "eth0", "ttl": 120,
        "port_description": "Patient monitor LAN", "system_name": "ICU-BED12-MON",
        "system_description": "Philips IntelliVue MX450 L.01", "capabilities": ["bridge", "telephone"],
        "capabilities_enabled": ["telephone"], "mgmt_ip": "10.77.0.111", "hardware_revision": "A.01",
        "firmware_revision": "L.01.23", "manufacturer": "Philips Medical Systems", "model": "MX450",
    }  # fmt: skip


def test_network_address_ids_and_ipv6_management() -> None:
    body = (
        tlv(1, b"\x05\x01" + bytes([192, 0, 2, 9]))
        + tlv(2, b"\x04\x02" + bytes(15) + b"\x01")
        + tlv(8, b"\x11\x02" + bytes(15) + b"\x01" + b"\x01\x00\x00\x00\x00\x00")
    )  # fmt: skip
    f = lldp.parse_datagram(body)[0].fields
    assert (f["chassis_id"], f["port_id"], f["mgmt_ip"]) == ("192.0.2.9", "::1", "::1")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        tlv(2, b"\x05eth0") + tlv(0, b""),  # no chassis ID
        tlv(1, b"") + tlv(2, b"\x05eth0"),  # empty chassis ID
        tlv(1, b"\x07x") + b"\x04\x10abc",  # port ID TLV longer than the frame
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        lldp.parse_datagram(payload)


def test_wireshark_reads_the_same(tmp_path: Path) -> None:
    """Our synthetic frame and the real one from nDPI's captures, decoded by Wireshark and by us."""
    frames = [ETHERNET + PHONE]
    if REAL.is_file():
        frames += [f for _ts, _lt, f in pcaputil.frames(REAL) if f[12:14] == b"\x88\xcc"]
    rows = tshark.fields(frames, tmp_path, "lldp.chassis.id.mac", "lldp.port.id", "lldp.port.id.mac",
                         "lldp.time_to_live", "lldp.tlv.system.name", "lldp.mgn.addr.ip4",
                         "lldp.media.manufacturer", "lldp.media.model", "lldp.media.firmware")  # fmt: skip
    assert len(rows) == len(frames)
    for frame, (chassis, port_text, port_mac, ttl, *rest) in zip(frames, rows, strict=True):
        f = lldp.parse_datagram(frame[14:])[0].fields
        assert (f["chassis_id"], f["port_id"], str(f["ttl"])) == (chassis, port_mac or port_text, ttl)
        keys = ("system_name", "mgmt_ip", "manufacturer", "model", "firmware_revision")
        assert [f.get(k, "") for k in keys] == rest


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), spliced(PHONE)))
def test_fuzz_only_malformed_escapes(payload: bytes) -> None:
    with contextlib.suppress(Malformed):
        for msg in lldp.parse_datagram(payload):
            json.dumps(msg.fields)
