"""pcapng files: any number of sections and interfaces, enhanced and simple packet blocks.

    block           type u32, total length u32, body, total length u32 again (lengths are multiples
                    of 4; every field in the byte order of the block's section)
    SHB 0x0A0D0D0A  section header: byte-order magic 1A2B3C4D, version, section length, options; a new
                    section starts over with no interfaces
    IDB 1           interface: link type u16, reserved, snaplen u32, options (if_tsresol = 9: time
                    stamp units, 10^-n, or 2^-n with the top bit set; microseconds by default)
    EPB 6           packet: interface id u32, time stamp high and low u32 (in the interface's units),
                    captured length u32, original length u32, data padded to 4, options
    SPB 3           packet without time stamp or captured length, on interface 0
Other blocks (name resolution, statistics, custom) are skipped by their length.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

from medsentry.capture import _fastpath
from medsentry.capture.errors import CaptureError
from medsentry.capture.records import CORRUPT, NEED_BLOCK, OUT_FULL, Batch, Buffer, RecordArrays
from medsentry.capture.windows import Windows

MAX_BLOCK = _fastpath.MAX_BLOCK  # the longest packet block _fastpath reads
MAX_HEAD_BLOCK = 16 << 20  # the longest section header or interface block


@dataclass(slots=True)
class _Interface:
    linktype: int
    seconds_per_tick: float = 1e-6


class PcapngState:
    """Where a pcapng reader is: the section's byte order and its interfaces (`packed` as `scan_pcapng`
    takes them)."""

    def __init__(self) -> None:
        self.swapped = False
        self.ifaces: list[_Interface] = []
        self.packed = b""

    def copy(self) -> PcapngState:
        other = PcapngState()
        other.swapped, other.ifaces, other.packed = self.swapped, list(self.ifaces), self.packed
        return other

    def take(self, buf: Buffer, off: int, name: str, base: int) -> int | None:
        """The section header or interface block at buf[off:] (`base`: the file offset of buf[0]) read into
        the state; its length, or None when buf does not hold all of it."""
        if len(buf) - off < 12:
            return None
        endian = ">" if self.swapped else "<"
        btype = struct.unpack_from(endian + "I", buf, off)[0]
        if btype == 0x0A0D0D0A:
            bom = bytes(buf[off + 8 : off + 12])
            if bom == b"\x4d\x3c\x2b\x1a":
                self.swapped = False
            elif bom == b"\x1a\x2b\x3c\x4d":
                self.swapped = True
            else:
                raise CaptureError(name, base + off, "pcapng section header: bad byte-order magic")
            endian = ">" if self.swapped else "<"
            self.ifaces = []
        blen = struct.unpack_from(endian + "I", buf, off + 4)[0]
        if blen < 12 or blen % 4 or blen > MAX_HEAD_BLOCK:
            raise CaptureError(name, base + off, f"pcapng block length {blen} is invalid")
        if len(buf) - off < blen:
            return None
        if btype == 1:
            self.ifaces.append(_parse_idb(bytes(buf[off + 8 : off + blen - 4]), endian))
            self.packed = b"".join(struct.pack("<I4xd", i.linktype, i.seconds_per_tick) for i in self.ifaces)
        return int(blen)


class StateChange(Exception):
    """A section header or interface block met by a reader that took the ones before its segment to
    hold (`pcapng_segment(fixed=True)`); `offset` is the block's."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"pcapng section or interfaces change at offset {offset}")
        self.offset = offset


def pcapng_segment(windows: Windows, state: PcapngState, name: str, start: int, stop: int, size: int,
                   arrays: RecordArrays, fixed: bool = False
                   ) -> Generator[tuple[Batch, int], None, int]:  # fmt: skip
    """`pcap_segment` for a mapped pcapng: the blocks that start at or after `start` and before `stop`,
    section headers and interface blocks read into `state` as they come (`fixed`: raise StateChange
    instead)."""
    at = start
    while at < stop and at < size:
        view = windows.at(at, min(size, stop + MAX_BLOCK) - at)
        out = arrays.take()
        off, n, ret = _fastpath.scan_pcapng(view, 0, state.swapped, state.packed, out, arrays.size, stop - at)
        if n:
            yield Batch(view, out[:n], name), at
        if ret == CORRUPT:
            raise CaptureError(name, at + off, "corrupt pcapng block")
        if ret == NEED_BLOCK:
            if fixed:
                raise StateChange(at + off)
            at += off
            taken = state.take(windows.at(at, min(size, at + MAX_HEAD_BLOCK) - at), 0, name, at)
            if taken is None:
                raise CaptureError(name, at, "truncated block at end of file")
            at += taken
            continue
        if ret != OUT_FULL and at + off < min(stop, size):
            raise CaptureError(name, at + off, "truncated block at end of file")
        at += off
    return at


class PcapngWalk:
    """`pcapng_segment` with one state carried from segment to segment."""

    def __init__(self, state: PcapngState, fixed: bool = False) -> None:
        self.state, self.fixed = state, fixed

    def __call__(self, windows: Windows, name: str, start: int, stop: int, size: int,
                 arrays: RecordArrays) -> Generator[tuple[Batch, int], None, int]:  # fmt: skip
        return pcapng_segment(windows, self.state, name, start, stop, size, arrays, self.fixed)


def plain_pcapng(path: Path) -> tuple[PcapngState, int, int] | None:
    """(state after the first section header and interface blocks, where the blocks after them start,
    size) of an uncompressed pcapng file, which can be read by segments; None for anything else."""
    state = PcapngState()
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(min(size, 1 << 20))
    except OSError:
        return None
    if head[:4] != b"\x0a\x0d\x0d\x0a" or not path.is_file():
        return None
    at = 0
    try:
        while len(head) - at >= 8:
            btype = struct.unpack_from(">I" if state.swapped else "<I", head, at)[0]
            if at and btype not in (0x0A0D0D0A, 1):
                return state, at, size
            taken = state.take(head, at, str(path), 0)
            if taken is None:
                return None
            at += taken
    except CaptureError:
        return None
    return None


def _parse_idb(body: bytes, endian: str) -> _Interface:
    if len(body) < 8:
        return _Interface(linktype=-1)
    iface = _Interface(linktype=struct.unpack_from(endian + "H", body, 0)[0])
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(endian + "HH", body, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:  # if_tsresol: 2^-n if the top bit is set, else 10^-n
            v = body[pos + 4]
            iface.seconds_per_tick = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        pos += 4 + ((length + 3) & ~3)
    return iface
