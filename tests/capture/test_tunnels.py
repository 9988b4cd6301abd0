"""Tunnels the fast path opens — IP in IP, GRE (IP, transparent Ethernet bridging, ERSPAN II/III), VXLAN,
CAPWAP (802.3 and 802.11 frames) — and PPPoE sessions:
the record describes the packet inside as it would the same packet sent bare; Wireshark agrees on the
inner addresses; nesting is bounded; random bytes behind tunnel headers never read outside the frame."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.capture import _fastpath
from medsentry.capture.records import PACKET_DTYPE, ST_MALFORMED
from tests.capture.test_files import _pcap

OUTER_MACS = bytes.fromhex("0a0000000001" "0a0000000002")  # switch -> sensor
INNER_MACS = bytes.fromhex("0009fb7200ff" "f4bd9ea42edb")  # monitor <- router


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    a, b = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, ttl, proto, 0, a, b) + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, hops: int = 64) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, hops, ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload  # fmt: skip


def udp(sport: int, dport: int, data: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def ether(macs: bytes, ethertype: int, payload: bytes) -> bytes:
    return macs + struct.pack("!H", ethertype) + payload


HL7 = b"\x0bMSH|^~\\&|MONITOR|ICU|||20261206||ORU^R01|1|P|2.5\r\x1c\r"
INNER_IP = ipv4("10.77.0.111", "10.77.0.11", 17, udp(40000, 2575, HL7), ttl=63)
INNER_FRAME = ether(INNER_MACS, 0x0800, INNER_IP)


def gre(proto: int, payload: bytes, key: int | None = None, seq: int | None = None) -> bytes:
    flags = (0x20 if key is not None else 0) | (0x10 if seq is not None else 0)
    head = struct.pack("!BBH", flags, 0, proto)
    head += struct.pack("!I", key) if key is not None else b""
    return head + (struct.pack("!I", seq) if seq is not None else b"") + payload


def erspan2(frame: bytes) -> bytes:
    return struct.pack("!HHI", 0x1000 | 10, 0x0000 | 7, 0) + frame  # version 1, VLAN 10; session 7


def erspan3(frame: bytes, subheader: bool) -> bytes:
    head = struct.pack("!HHIHH", 0x2000 | 10, 7, 123456, 0, 0x01 if subheader else 0)
    return head + (bytes(8) if subheader else b"") + frame


def vxlan(frame: bytes) -> bytes:
    return struct.pack("!II", 0x08000000, 5001 << 8) + frame


def capwap(frame: bytes, native: bool) -> bytes:
    """A CAPWAP data header (RFC 5415 4.3): HLEN 2 words, WBID 1 (IEEE 802.11), T = native."""
    return struct.pack("!II", 2 << 19 | 1 << 9 | int(native) << 8, 0) + frame


def dot11(packet: bytes, swapped: bool = False) -> bytes:
    """An 802.11 data frame from a station to the AP (ToDS) with LLC/SNAP, as a controller tunnels it."""
    fc = b"\x01\x08" if swapped else b"\x08\x01"
    bssid = bytes.fromhex("580a20690e20")
    return fc + b"\x2c\x00" + bssid + INNER_MACS[6:] + INNER_MACS[:6] + b"\x00\x00" + bytes.fromhex(
        "aaaa03000000" "0800") + packet  # fmt: skip


def outer4(proto: int, payload: bytes) -> bytes:
    return ether(OUTER_MACS, 0x0800, ipv4("192.0.2.1", "192.0.2.2", proto, payload))


CASES = {  # tunnel -> (frame, whether the inner packet's own Ethernet header travels)
    "6in4": (outer4(41, ipv6("2001:db8::1", "2001:db8::2", 17, udp(40000, 2575, HL7))), False),
    "4in6": (ether(OUTER_MACS, 0x86DD, ipv6("2001:db8::a", "2001:db8::b", 4, INNER_IP)), False),
    "4in4": (outer4(4, INNER_IP), False),
    "gre-ip": (outer4(47, gre(0x0800, INNER_IP, key=5)), False),
    "gre-ethernet": (outer4(47, gre(0x6558, INNER_FRAME, key=1, seq=9)), True),
    "erspan2": (outer4(47, gre(0x88BE, erspan2(INNER_FRAME), seq=1)), True),
    "erspan3": (outer4(47, gre(0x22EB, erspan3(INNER_FRAME, False), seq=2)), True),
    "erspan3-subheader": (outer4(47, gre(0x22EB, erspan3(INNER_FRAME, True), seq=3)), True),
    "vxlan": (outer4(17, udp(51000, 4789, vxlan(INNER_FRAME))), True),
    "capwap-802.3": (outer4(17, udp(12380, 5247, capwap(INNER_FRAME, native=False))), True),
    "capwap-802.11": (outer4(17, udp(12380, 5247, capwap(dot11(INNER_IP), native=True))), True),
    "capwap-802.11-cisco": (outer4(17, udp(12380, 5247, capwap(dot11(INNER_IP, True), native=True))), True),
    # not a tunnel but framing: a PPPoE session (RFC 2516) carrying IPv4
    "pppoe": (ether(OUTER_MACS, 0x8864, struct.pack("!BBHHH", 0x11, 0, 0x1234, len(INNER_IP) + 2, 0x0021)
                    + INNER_IP), False),
}


def _records(frames: list[bytes]) -> np.ndarray:
    buf = _pcap(frames)
    out = bytearray(len(frames) * PACKET_DTYPE.itemsize)
    _, n, _ = _fastpath.scan_pcap(buf, 24, False, False, 1, out, len(frames))
    assert n == len(frames)
    return np.frombuffer(out, dtype=PACKET_DTYPE, count=n)


def _payload(frame: bytes, rec: np.void) -> bytes:
    return frame[int(rec["payload_off"]) : int(rec["payload_off"]) + int(rec["payload_len"])]


@pytest.mark.parametrize("tunnel", sorted(CASES))
def test_the_record_is_the_packet_inside(tunnel: str) -> None:
    frame, carries_ethernet = CASES[tunnel]
    bare = ether(OUTER_MACS, 0x0800, INNER_IP) if not tunnel.startswith("6in4") else ether(
        OUTER_MACS, 0x86DD, ipv6("2001:db8::1", "2001:db8::2", 17, udp(40000, 2575, HL7)))  # fmt: skip
    if carries_ethernet:
        bare = INNER_FRAME
    got, want = _records([frame, bare])
    assert got["status"] == 0 and _payload(frame, got) == _payload(bare, want) == HL7
    for name in ("ipver", "proto", "src_ip", "dst_ip", "sport", "dport", "ttl", "flow_hash", "dir",
                 "src_mac", "dst_mac"):  # fmt: skip
        assert got[name] == want[name], name
    if carries_ethernet:
        assert bytes(got["src_mac"]) == INNER_MACS[6:]  # the monitor, not the switch that mirrored it


def test_wireshark_reads_the_same_inner_addresses(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    # Wireshark swaps the frame control of tunnelled 802.11 frames by default (its Cisco setting), so those
    # are compared on a real Cisco capture instead (test_a_wireless_controllers_tunnel)
    frames = [frame for name, (frame, _) in CASES.items() if not name.startswith("capwap-802.11")]
    pcap = tmp_path / "tunnels.pcap"
    pcap.write_bytes(_pcap(frames))
    fields = ["-e", "ip.src", "-e", "ipv6.src", "-e", "udp.dstport"]
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", *fields], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    recs = _records(frames)
    for line, rec in zip(out.splitlines(), recs, strict=True):
        v4, v6, ports = line.split("\t")
        inner = (v6 if rec["ipver"] == 6 else v4).split(",")[-1]  # the innermost of nested headers
        length = 4 if rec["ipver"] == 4 else 16
        assert str(ipaddress.ip_address(bytes(rec["src_ip"])[:length])) == inner
        assert int(ports.split(",")[-1]) == rec["dport"]


def test_nesting_is_bounded() -> None:
    packet = INNER_IP
    for _ in range(6):
        packet = ipv4("192.0.2.1", "192.0.2.2", 4, packet)
    (rec,) = _records([ether(OUTER_MACS, 0x0800, packet)])
    assert rec["proto"] == 4  # three tunnels opened, the fourth left as it is
    frame = INNER_FRAME
    for _ in range(5):
        frame = outer4(17, udp(51000, 4789, vxlan(frame)))
    (rec,) = _records([frame])
    assert rec["status"] == 0 and rec["dport"] == 4789  # likewise: a VXLAN packet, not opened


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(["4", "41", "gre-ip", "gre-eth", "erspan2", "erspan3", "vxlan"]),
                   min_size=1, max_size=5),
    tail=st.binary(max_size=80),
    cut=st.integers(min_value=0, max_value=400),
)
def test_fuzz_tunnels_stay_inside_the_frame(kinds: list[str], tail: bytes, cut: int) -> None:
    packet = tail
    a, b = "192.0.2.1", "192.0.2.2"
    for kind in reversed(kinds):  # build inside out
        if kind == "4":
            packet = ipv4(a, b, 4, packet)
        elif kind == "41":
            packet = ipv4(a, b, 41, packet)
        elif kind == "gre-ip":
            packet = ipv4(a, b, 47, gre(0x0800, packet))
        elif kind == "gre-eth":
            packet = ipv4(a, b, 47, gre(0x6558, ether(INNER_MACS, 0x0800, packet)))
        elif kind == "erspan2":
            packet = ipv4(a, b, 47, gre(0x88BE, erspan2(ether(INNER_MACS, 0x0800, packet))))
        elif kind == "erspan3":
            inner = erspan3(ether(INNER_MACS, 0x0800, packet), subheader=bool(len(tail) % 2))
            packet = ipv4(a, b, 47, gre(0x22EB, inner))
        else:
            packet = ipv4(a, b, 17, udp(5, 4789, vxlan(ether(INNER_MACS, 0x0800, packet))))
    frame = ether(OUTER_MACS, 0x0800, packet)
    frame = frame[: max(14, len(frame) - cut)]  # and cut anywhere
    (rec,) = _records([frame])
    assert int(rec["payload_off"]) + int(rec["payload_len"]) <= len(frame) or rec["status"] == ST_MALFORMED


def test_a_wireless_controllers_tunnel(shared_data: Path) -> None:
    """nDPI's capwap.pcap: a Cisco controller's CAPWAP tunnel; an iPad's DHCP requests inside it are read
    with the station's own address, as Wireshark reads them."""
    from medsentry.pipeline import observe_files

    pcap = shared_data / "captures/ndpi/cfgs/default/pcap/capwap.pcap"
    if not pcap.is_file() or shutil.which("tshark") is None:
        pytest.skip("needs nDPI's capwap.pcap and tshark")
    observations, stats = observe_files([pcap])
    ours = sorted((o.src_mac, o.fields.get("hostname")) for o in observations if o.kind.startswith("dhcp."))
    fields = ["-e", "wlan.sa", "-e", "dhcp.option.hostname"]
    args = ["tshark", "-r", str(pcap), "-Y", "dhcp", "-T", "fields", *fields]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    theirs = sorted(tuple(line.split("\t")) for line in out.splitlines())
    assert len(ours) == 5 and ours == theirs and stats.malformed == 0


def test_frames_a_tunnel_carries_but_cannot_show_stay_the_tunnels_packet() -> None:
    """An 802.11 management frame or an encrypted data frame in CAPWAP: the record is the UDP packet, with
    the tunnel's own flow key (not a key of its MAC, which would mix flows)."""
    beacon = b"\x80\x00" + bytes(22) + bytes(40)
    encrypted = b"\x08\x41" + bytes(22) + bytes(40)  # data, ToDS, protected
    plain = outer4(17, udp(12380, 5247, bytes(72)))
    frames = [outer4(17, udp(12380, 5247, capwap(beacon, native=True))),
              outer4(17, udp(12380, 5247, capwap(encrypted, native=True))), plain]  # fmt: skip
    recs = _records(frames)
    assert list(recs["dport"]) == [5247] * 3
    assert recs["flow_hash"][0] == recs["flow_hash"][1] == recs["flow_hash"][2]
