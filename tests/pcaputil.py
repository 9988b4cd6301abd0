"""A deliberately plain pcap/pcapng walker for tests: an oracle independent of medsentry's fast path.

Yields (ts, linktype, frame) and splits Ethernet/VLAN/SLL/raw-IP frames down to UDP/TCP payloads so
protocol parsers can be tested against peers' expectations on real captures.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def frames(path: Path) -> Iterator[tuple[float, int, bytes]]:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic = raw[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        yield from _pcapng(raw)
        return
    for endian, nsec in (("<", False), (">", False), ("<", True), (">", True)):
        want = 0xA1B23C4D if nsec else 0xA1B2C3D4
        if struct.unpack(endian + "I", magic)[0] == want:
            break
    else:
        raise ValueError(f"{path}: not a capture")
    linktype = struct.unpack(endian + "I", raw[20:24])[0] & 0x0FFFFFFF
    off = 24
    while off + 16 <= len(raw):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", raw[off : off + 16])
        off += 16
        yield sec + frac / (1e9 if nsec else 1e6), linktype, raw[off : off + incl]
        off += incl


def _pcapng(raw: bytes) -> Iterator[tuple[float, int, bytes]]:
    off, endian, ifaces = 0, "<", []
    while off + 12 <= len(raw):
        btype = struct.unpack(endian + "I", raw[off : off + 4])[0]
        if raw[off : off + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if raw[off + 8 : off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        blen = struct.unpack(endian + "I", raw[off + 4 : off + 8])[0]
        body = raw[off + 8 : off + blen - 4]
        if btype == 1:
            ifaces.append(struct.unpack(endian + "H", body[:2])[0])
        elif btype == 6:
            iface, hi, lo, cap, _ = struct.unpack(endian + "IIIII", body[:20])
            yield ((hi << 32) | lo) / 1e6, ifaces[iface], body[20 : 20 + cap]
        elif btype == 3:
            yield 0.0, ifaces[0], body[4:]
        if blen < 12:
            break
        off += blen


@dataclass
class Segment:
    ts: float
    transport: str  # "udp" | "tcp"
    src: str
    dst: str
    sport: int
    dport: int
    payload: bytes
    src_mac: str | None
    tcp_flags: int = 0
    tcp_seq: int = 0


def _ip(b: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(b))


def segments(path: Path) -> Iterator[Segment]:
    """UDP and TCP segments, empty ones included (IPv4/IPv6, no fragment reassembly)."""
    for ts, linktype, f in frames(path):
        mac = None
        if len(f) < 20:  # runts: no IP header behind any of these link layers
            continue
        if linktype == 1:
            mac = ":".join(f"{b:02x}" for b in f[6:12])
            etype, off = struct.unpack("!H", f[12:14])[0], 14
            while etype in (0x8100, 0x88A8) and len(f) >= off + 4:
                etype, off = struct.unpack("!H", f[off + 2 : off + 4])[0], off + 4
        elif linktype == 113:
            etype, off = struct.unpack("!H", f[14:16])[0], 16
        elif linktype == 276:
            etype, off = struct.unpack("!H", f[0:2])[0], 20
        elif linktype in (101, 12, 14, 228, 229):
            etype, off = (0x86DD if f and f[0] >> 4 == 6 else 0x0800), 0
        else:
            continue
        if etype == 0x0800 and len(f) >= off + 20:
            ihl = (f[off] & 0x0F) * 4
            proto, src, dst = f[off + 9], _ip(f[off + 12 : off + 16]), _ip(f[off + 16 : off + 20])
            end = min(len(f), off + struct.unpack("!H", f[off + 2 : off + 4])[0])
            l4 = f[off + ihl : end]
        elif etype == 0x86DD and len(f) >= off + 40:
            proto, src, dst = f[off + 6], _ip(f[off + 8 : off + 24]), _ip(f[off + 24 : off + 40])
            l4 = f[off + 40 : off + 40 + struct.unpack("!H", f[off + 4 : off + 6])[0]]
        else:
            continue
        if proto == 17 and len(l4) >= 8:
            sp, dp = struct.unpack("!HH", l4[:4])
            yield Segment(ts, "udp", src, dst, sp, dp, l4[8:], mac)
        elif proto == 6 and len(l4) >= 20:
            sp, dp = struct.unpack("!HH", l4[:4])
            seq = struct.unpack("!I", l4[4:8])[0]
            yield Segment(ts, "tcp", src, dst, sp, dp, l4[(l4[12] >> 4) * 4 :], mac, l4[13], seq)


# -- writing: small captures made in tests ------------------------------------------------------------------


def record_starts(pcap: bytes | bytearray) -> list[int]:
    """Where a little-endian classic pcap's records start."""
    starts, off = [], 24
    while off + 16 <= len(pcap):
        starts.append(off)
        off += 16 + struct.unpack_from("<I", pcap, off + 8)[0]
    return starts


def shb() -> bytes:
    """A little-endian pcapng section header block."""
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    return struct.pack("<II", 0x0A0D0D0A, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def idb(linktype: int = 1) -> bytes:
    """An interface description block (microsecond time stamps)."""
    body = struct.pack("<HHI", linktype, 0, 0)
    return struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def epb(iface: int, ts: float, frame: bytes) -> bytes:
    """An enhanced packet block of one frame."""
    micros = int(ts * 1e6)
    pad = b"\0" * (-len(frame) % 4)
    head = struct.pack("<IIIII", iface, micros >> 32, micros & 0xFFFFFFFF, len(frame), len(frame))
    body = head + frame + pad
    return struct.pack("<II", 6, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def pcapng_of(pcap: bytes, heads: dict[int, bytes] | None = None) -> bytes:
    """The records of a classic pcap as a pcapng, with `heads` (blocks before record i) put in."""
    out = [shb(), idb()]
    for i, off in enumerate(record_starts(pcap)):
        sec, frac, incl, _ = struct.unpack_from("<IIII", pcap, off)
        out.append((heads or {}).get(i, b""))
        out.append(epb(0, sec + frac / 1e6, pcap[off + 16 : off + 16 + incl]))
    return b"".join(out)
