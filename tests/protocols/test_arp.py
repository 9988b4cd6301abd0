from __future__ import annotations

import contextlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import arp
from medsentry.protocols.base import Malformed
from tests import pcaputil

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "captures"
MAC_A, MAC_B = bytes.fromhex("0009fb7200ff"), bytes.fromhex("f4bd9ea42edb")


def packet(oper: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes, htype: int = 1, plen: int = 4) -> bytes:
    return struct.pack("!HHBBH", htype, 0x0800, 6, plen, oper) + sha + spa + tha + tpa


def test_request_and_reply() -> None:
    (msg,) = arp.parse_datagram(packet(1, MAC_A, bytes([10, 77, 0, 111]), bytes(6), bytes([10, 77, 0, 1])))
    assert msg.kind == "arp.request"
    assert msg.fields == {
        "sender_mac": "00:09:fb:72:00:ff", "sender_ip": "10.77.0.111", "target_mac": "00:00:00:00:00:00",
        "target_ip": "10.77.0.1", "gratuitous": False,
    }  # fmt: skip
    reply = packet(2, MAC_B, bytes([10, 77, 0, 1]), MAC_A, bytes([10, 77, 0, 111])) + bytes(18)  # padded
    assert arp.parse_datagram(reply)[0].kind == "arp.reply"


def test_gratuitous_and_other_operations() -> None:
    announce = packet(1, MAC_A, bytes([10, 77, 0, 111]), b"\xff" * 6, bytes([10, 77, 0, 111]))
    assert arp.parse_datagram(announce)[0].fields["gratuitous"] is True
    assert arp.parse_datagram(packet(3, MAC_A, bytes(4), MAC_A, bytes(4))) == []  # RARP request


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        packet(1, MAC_A, bytes(4), MAC_A, bytes(4))[:27],
        packet(1, MAC_A, bytes(4), MAC_A, bytes(4), htype=6),
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        arp.parse_datagram(payload)


def _arp_frames() -> list[bytes]:
    frames = []
    for pcap in sorted(CAPTURES.glob("virtual-hospital/*.pcap")):
        frames += [f for _ts, lt, f in pcaputil.frames(pcap) if lt == 1 and f[12:14] == b"\x08\x06"]
    return frames


def test_wireshark_reads_the_same(shared_data: Path, tmp_path: Path) -> None:
    """Every ARP frame of the virtual hospital captures (the attack one spoofs), by Wireshark and by us."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    frames = _arp_frames()
    assert len(frames) >= 100
    pcap = tmp_path / "arp.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + b"".join(struct.pack("<IIII", 0, 0, len(f), len(f)) + f for f in frames))  # fmt: skip
    fields = ["arp.opcode", "arp.src.hw_mac", "arp.src.proto_ipv4", "arp.dst.hw_mac", "arp.dst.proto_ipv4"]
    args = ["tshark", "-r", str(pcap), "-T", "fields", *(a for f in fields for a in ("-e", f))]
    rows = [
        line.split("\t")
        for line in subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    ]
    assert len(rows) == len(frames)
    kinds = {"1": "arp.request", "2": "arp.reply"}
    for frame, (opcode, *addresses) in zip(frames, rows, strict=True):
        (msg,) = arp.parse_datagram(frame[14:])
        f = msg.fields
        assert msg.kind == kinds[opcode]
        assert [f["sender_mac"], f["sender_ip"], f["target_mac"], f["target_ip"]] == addresses
        assert f["gratuitous"] == (addresses[1] == addresses[3])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_only_malformed_escapes(payload: bytes) -> None:
    with contextlib.suppress(Malformed):
        for msg in arp.parse_datagram(payload):
            json.dumps(msg.fields)
