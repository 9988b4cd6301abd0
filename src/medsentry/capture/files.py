"""Capture files: classic pcap (either byte order, micro/nanosecond), pcapng (any number of sections and
interfaces, EPB/SPB), either of them gzip-compressed, and directories of them.

Files are streamed in fixed-size chunks (memory stays flat whatever the file size); the C fast path walks
complete records in each chunk and the unread tail is carried into the next one. A plain (uncompressed)
pcap or pcapng file is mapped and read by segments instead: segment i is the records that start in the
file's bytes [i * SEGMENT, (i + 1) * SEGMENT), so where its batches begin and end depends only on the
file, and `analyze --workers` readers can each take some segments of one file and deal batches one
process would have read (`pcap_segment`, `pcapng_segment`).

pcap  : 24-byte global header (magic a1b2c3d4 / a1b23c4d in either byte order, version, snaplen, linktype)
pcapng: blocks of (type u32, total length u32, body, total length u32); SHB 0x0A0D0D0A carries the byte
        order magic 1A2B3C4D, IDB (1) the link type and options (if_tsresol = 9 sets tick size).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import mmap
import os
import struct
import sys
import zlib
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import numpy as np

from medsentry.capture import _fastpath
from medsentry.capture.records import PACKET_DTYPE, Batch, Buffer

CHUNK = 8 << 20  # bytes read per step
SEGMENT = 8 << 20  # bytes of a mapped capture whose records make one segment (`pcap_segment`)
MAX_RECORD = 16 + _fastpath.MAX_CAPLEN  # a pcap record's header and the longest frame _fastpath reads
MAX_BLOCK = 4096 + _fastpath.MAX_CAPLEN  # the longest pcapng block _fastpath reads
MAX_HEAD_BLOCK = 16 << 20  # the longest pcapng section header or interface block
BATCH = 1 << 16  # records decoded per step
CAPTURE_SUFFIXES: Final = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap.gz", ".pcapng.gz", ".cap.gz")

_NEED_DATA: Final = 0
_OUT_FULL: Final = 1
_CORRUPT: Final = 2
_NEED_BLOCK: Final = 3


class CaptureError(Exception):
    """A capture that cannot be read further: names the file and the byte offset (of the uncompressed
    stream for gzip files) where reading stopped. Everything before it has been delivered. A live
    interface ("live:eth1") has no offset (None)."""

    def __init__(self, path: str, offset: int | None, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if offset is None else f"{path}: offset {offset}: {reason}")
        self.path, self.offset, self.reason = path, offset, reason


class RecordArrays:
    """Arrays of `size` records for scans to write into, each taken again once nothing holds records of it
    (no batch, no view of its fields). A fresh array a batch cost more than filling it: numpy asks for
    huge pages above 4 MB, so the kernel zeroed 2 MB pages at the array's first touch and took them back
    when it was freed, from the analysing thread too."""

    KEEP: Final = 6  # the batches read ahead (`pipeline.READ_AHEAD`), the one analysed, the one read, spare

    def __init__(self, size: int | None = None) -> None:
        self.size = size or BATCH  # read now: tests make batches small by setting BATCH
        self._arrays: list[np.ndarray] = []
        self._free_refs = 0  # an array's references when only the list holds it (and the taking frame)

    def take(self) -> np.ndarray:
        for out in self._arrays:
            if sys.getrefcount(out) == self._free_refs:
                return out
        out = np.empty(self.size, dtype=PACKET_DTYPE)
        if len(self._arrays) < self.KEEP:
            self._arrays.append(out)
            self._free_refs = sys.getrefcount(out)
        return out


@dataclass(slots=True)
class _Interface:
    linktype: int
    seconds_per_tick: float = 1e-6


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given, directories replaced by their capture files (recursively, sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(
                sorted(f for f in p.rglob("*") if f.is_file() and f.name.lower().endswith(CAPTURE_SUFFIXES))
            )
        else:
            out.append(p)
    return out


def _open(path: Path) -> io.BufferedIOBase:
    fh = open(path, "rb")  # noqa: SIM115 - returned to the caller, closed there
    if fh.read(2) == b"\x1f\x8b":
        fh.close()
        return gzip.GzipFile(path, "rb")
    fh.seek(0)
    return fh


class CaptureFile:
    """Iterate `Batch`es of one capture file. `bytes_read` tracks progress for progress bars."""

    def __init__(self, path: Path, batch_size: int | None = None, behind: int = 0) -> None:
        self.behind = behind  # windows of a mapped file kept mapped behind the one being read (`Windows`)
        self.path = path
        self.name = str(path)
        self.bytes_read = 0
        self._arrays = RecordArrays(batch_size)
        self._out = self._arrays.take()
        # The file offset of the buffer the last batch's frames are in, when it is a window of the file
        # mapped (`Windows` gives another process that buffer); None for a compressed or streamed file.
        self.window: int | None = None

    def __iter__(self) -> Iterator[Batch]:
        with _open(self.path) as fh:
            head = fh.read(24)
            if len(head) < 4:
                raise CaptureError(self.name, 0, "empty or too short to be a capture")
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                yield from self._pcapng(fh, head)
            else:
                yield from self._pcap(fh, head)

    def _chunks(self, fh: io.BufferedIOBase, first: bytes) -> Iterator[tuple[memoryview, int]]:
        """Yields (view, base): a fresh buffer holding the unread tail of the previous one plus the next
        CHUNK bytes, and the stream offset of view[0]. The consumer sets `self._keep` to the offset of
        its first unread byte. Batches keep views of these buffers, so nothing is copied twice."""
        tail, base = first, 0
        while True:
            buf = bytearray(len(tail) + CHUNK)
            buf[: len(tail)] = tail
            filled, eof = len(tail), False
            view = memoryview(buf)
            try:
                while filled < len(buf):
                    got = fh.readinto(view[filled:])
                    if not got:
                        eof = True
                        break
                    filled += got
            except (EOFError, OSError, zlib.error) as exc:
                raise CaptureError(self.name, base + filled, f"compressed stream broken: {exc}") from exc
            self.bytes_read += filled - len(tail)
            self._keep = 0
            yield view[:filled], base
            if eof:
                return
            tail = bytes(view[self._keep : filled])
            base += self._keep

    _keep = 0

    def _batch(self, view: memoryview, n: int) -> Batch:
        # The records stay with the batch and the next scan writes into another array: no copy.
        recs = self._out[:n]
        self._out = self._arrays.take()
        return Batch(view, recs, self.name)

    def _pcap(self, fh: io.BufferedIOBase, head: bytes) -> Iterator[Batch]:
        form = PcapForm.of(head, self.name)
        mapped = _map(fh)
        if mapped is not None:
            yield from self._segments(mapped, 24, PcapWalk(form))
            return
        swapped, nsec, linktype = form
        off = 0
        for buf, base in self._chunks(fh, b""):
            off = 0
            while True:
                off, n, ret = _fastpath.scan_pcap(
                    buf, off, swapped, nsec, linktype, self._out, self._arrays.size
                )
                if n:
                    yield self._batch(buf, n)
                if ret == _CORRUPT:
                    raise CaptureError(self.name, 24 + base + off, "corrupt pcap record header")
                if ret == _NEED_DATA:
                    break
            self._keep = off
        if off < len(buf):
            raise CaptureError(self.name, 24 + base + off, "truncated record at end of file")

    def _segments(self, mm: mmap.mmap, start: int, walk: SegmentWalk) -> Iterator[Batch]:
        """A mapped file, segment after segment (`pcap_segment`, `pcapng_segment`), from `start`."""
        size = len(mm)
        windows = Windows(mm, self.behind)
        try:
            for batch, window in segments_from(walk, windows, self.name, start, size, self._arrays):
                self.window, self.bytes_read = window, window + len(batch.buf)
                yield batch
            self.bytes_read = size
        finally:
            windows.close()

    def _pcapng(self, fh: io.BufferedIOBase, head: bytes) -> Iterator[Batch]:
        mapped = _map(fh)
        if mapped is not None:
            yield from self._segments(mapped, 0, PcapngWalk(PcapngState()))
            return
        state = PcapngState()
        off = 0
        for buf, base in self._chunks(fh, head):
            off = 0
            while True:
                off, n, ret = _fastpath.scan_pcapng(
                    buf, off, state.swapped, state.packed, self._out, self._arrays.size
                )
                if n:
                    yield self._batch(buf, n)
                if ret == _CORRUPT:
                    raise CaptureError(self.name, base + off, "corrupt pcapng block")
                if ret == _NEED_BLOCK:
                    taken = state.take(buf, off, self.name, base)
                    if taken is None:
                        break
                    off += taken
                    continue
                if ret == _NEED_DATA:
                    break
            self._keep = off
        if off < len(buf):
            raise CaptureError(self.name, base + off, "truncated block at end of file")


class Windows:
    """Windows of a read-only mapping of a plain capture file, in file order: `at(offset, length)`. Pages
    before the latest window (or the one `behind` windows back) are dropped from this process (they stay
    in the page cache and fault back in if a batch still reads them). `CaptureFile` reads through one;
    so does a process handed another's batches by offset (`analyze --workers`: one process reads, each
    worker gets its share of the records and `Windows.of` the file)."""

    def __init__(self, mm: mmap.mmap, behind: int = 0) -> None:
        self._map = mm
        self._whole = memoryview(mm)
        self._dropped = 0
        # Starts of the latest windows: pages are dropped only before the one `behind` windows back,
        # where batches read ahead of their analysis (`pipeline.read_ahead`) still have their frames.
        self._starts: deque[int] = deque(maxlen=behind + 1)

    @classmethod
    def of(cls, path: Path) -> Windows:
        with open(path, "rb") as fh:
            return cls(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))

    def at(self, offset: int, length: int) -> memoryview:
        self._starts.append(offset)
        oldest = self._starts[0]
        behind = oldest - oldest % mmap.PAGESIZE
        if behind > self._dropped:
            self._map.madvise(mmap.MADV_DONTNEED, self._dropped, behind - self._dropped)
            self._dropped = behind
        return self._whole[offset : offset + length]

    def close(self) -> None:
        self._whole.release()
        with contextlib.suppress(BufferError):  # batches still hold views; the GC closes it then
            self._map.close()


class PcapForm(NamedTuple):
    """What a classic pcap's global header says about its records."""

    swapped: bool  # written in the other byte order
    nsec: bool  # fractions of a second are nanoseconds
    linktype: int

    @classmethod
    def of(cls, head: bytes, name: str) -> PcapForm:
        if len(head) < 24:
            raise CaptureError(name, 0, "truncated pcap global header")
        forms = {
            b"\xd4\xc3\xb2\xa1": (False, False),
            b"\xa1\xb2\xc3\xd4": (True, False),
            b"\x4d\x3c\xb2\xa1": (False, True),
            b"\xa1\xb2\x3c\x4d": (True, True),
        }
        magic = head[:4]
        if magic not in forms:
            raise CaptureError(name, 0, f"not a pcap or pcapng file (magic {magic.hex()})")
        swapped, nsec = forms[magic]
        return cls(swapped, nsec, struct.unpack(">I" if swapped else "<I", head[20:24])[0] & 0x0FFFFFF)


def pcap_segment(windows: Windows, form: PcapForm, name: str, start: int, stop: int, size: int,
                 arrays: RecordArrays) -> Generator[tuple[Batch, int], None, int]:  # fmt: skip
    """The records of a mapped classic pcap (`size` bytes) that start at or after `start` (a record's
    start) and before `stop`, in batches written into `arrays`: yields (batch, file offset of the window
    its frames are in) and returns where the record after the last starts, the next segment's `start`.
    A corrupt record header, or a record cut by the end of the file, raises CaptureError with its offset
    after the batches before it."""
    at = start
    while at < stop and at < size:
        view = windows.at(at, min(size, stop + MAX_RECORD) - at)
        out = arrays.take()
        off, n, ret = _fastpath.scan_pcap(view, 0, *form, out, arrays.size, stop - at)
        if n:
            yield Batch(view, out[:n], name), at
        if ret == _CORRUPT:
            raise CaptureError(name, at + off, "corrupt pcap record header")
        if ret != _OUT_FULL and at + off < min(stop, size):
            raise CaptureError(name, at + off, "truncated record at end of file")
        at += off
    return at


class PcapWalk:
    """`pcap_segment` for the records of one form."""

    def __init__(self, form: PcapForm) -> None:
        self.form = form

    def __call__(self, windows: Windows, name: str, start: int, stop: int, size: int,
                 arrays: RecordArrays) -> Generator[tuple[Batch, int], None, int]:  # fmt: skip
        return pcap_segment(windows, self.form, name, start, stop, size, arrays)


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
        if ret == _CORRUPT:
            raise CaptureError(name, at + off, "corrupt pcapng block")
        if ret == _NEED_BLOCK:
            if fixed:
                raise StateChange(at + off)
            at += off
            taken = state.take(windows.at(at, min(size, at + MAX_HEAD_BLOCK) - at), 0, name, at)
            if taken is None:
                raise CaptureError(name, at, "truncated block at end of file")
            at += taken
            continue
        if ret != _OUT_FULL and at + off < min(stop, size):
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


SegmentWalk = PcapWalk | PcapngWalk


def segments_from(walk: SegmentWalk, windows: Windows, name: str, start: int, size: int,
                  arrays: RecordArrays) -> Iterator[tuple[Batch, int]]:  # fmt: skip
    """(batch, window offset) of every segment of a mapped file from the record at `start` to its end, as
    `walk` reads each one."""
    at = start
    while at < size:
        at = yield from walk(windows, name, at, (at // SEGMENT + 1) * SEGMENT, size, arrays)


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


def plain_pcap(path: Path) -> tuple[PcapForm, int, int] | None:
    """(form, size, first record's seconds) of an uncompressed classic pcap file with records after its
    header, which can be read by segments; None for anything else (compressed, pcapng, too short, not a
    regular file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(28)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    try:
        form = PcapForm.of(head, str(path))
    except CaptureError:
        return None
    if size < 28 or not path.is_file():
        return None
    return form, size, struct.unpack(">I" if form.swapped else "<I", head[24:28])[0]


def _map(fh: io.BufferedIOBase) -> mmap.mmap | None:
    """A read-only mapping of a plain, non-empty file; None for compressed or unmappable input."""
    if not isinstance(fh, io.BufferedReader):
        return None
    try:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):  # empty, a pipe or a special file: read it as a stream
        return None
    mm.madvise(mmap.MADV_SEQUENTIAL)
    return mm


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
