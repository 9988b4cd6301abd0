"""Capture files: classic pcap and pcapng (`pcap`, `pcapng`), either of them gzip-compressed, and
directories of them.

A plain (uncompressed) file is mapped and read by segments: segment i is the records that start in the
file's bytes [i * SEGMENT, (i + 1) * SEGMENT), so where its batches begin and end depends only on the
file, and `analyze --workers` readers can each take some segments of one file and deal batches one
process would have read (`pcap.pcap_segment`, `pcapng.pcapng_segment`). A compressed or streamed file is
read in fixed-size chunks (memory stays flat whatever the file size); the C fast path walks complete
records in each chunk and the unread tail is carried into the next one.
"""

from __future__ import annotations

import gzip
import io
import mmap
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from medsentry.capture import _fastpath
from medsentry.capture.errors import CaptureError
from medsentry.capture.pcap import PcapForm, PcapWalk
from medsentry.capture.pcapng import PcapngState, PcapngWalk
from medsentry.capture.records import CORRUPT, NEED_BLOCK, NEED_DATA, Batch, RecordArrays
from medsentry.capture.windows import Windows

CHUNK = 8 << 20  # bytes read per step
SEGMENT = 8 << 20  # bytes of a mapped capture whose records make one segment (`pcap.pcap_segment`)
CAPTURE_SUFFIXES: Final = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap.gz", ".pcapng.gz", ".cap.gz")


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

    def _pcap(self, fh: io.BufferedIOBase, head: bytes) -> Iterator[Batch]:
        form = PcapForm.of(head, self.name)
        mapped = _map(fh)
        if mapped is not None:
            yield from self._segments(mapped, 24, PcapWalk(form))
            return
        swapped, nsec, linktype = form
        off = 0
        out, size = self._arrays.take(), self._arrays.size
        for buf, base in self._chunks(fh, b""):
            off = 0
            while True:
                off, n, ret = _fastpath.scan_pcap(buf, off, swapped, nsec, linktype, out, size)
                if n:  # the records stay with the batch, the next scan writes into another array
                    yield Batch(buf, out[:n], self.name)
                    out = self._arrays.take()
                if ret == CORRUPT:
                    raise CaptureError(self.name, 24 + base + off, "corrupt pcap record header")
                if ret == NEED_DATA:
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
        out, size = self._arrays.take(), self._arrays.size
        for buf, base in self._chunks(fh, head):
            off = 0
            while True:
                off, n, ret = _fastpath.scan_pcapng(buf, off, state.swapped, state.packed, out, size)
                if n:
                    yield Batch(buf, out[:n], self.name)
                    out = self._arrays.take()
                if ret == CORRUPT:
                    raise CaptureError(self.name, base + off, "corrupt pcapng block")
                if ret == NEED_BLOCK:
                    taken = state.take(buf, off, self.name, base)
                    if taken is None:
                        break
                    off += taken
                    continue
                if ret == NEED_DATA:
                    break
            self._keep = off
        if off < len(buf):
            raise CaptureError(self.name, base + off, "truncated block at end of file")


SegmentWalk = PcapWalk | PcapngWalk


def segments_from(walk: SegmentWalk, windows: Windows, name: str, start: int, size: int,
                  arrays: RecordArrays) -> Iterator[tuple[Batch, int]]:  # fmt: skip
    """(batch, window offset) of every segment of a mapped file from the record at `start` to its end, as
    `walk` reads each one."""
    at = start
    while at < size:
        at = yield from walk(windows, name, at, (at // SEGMENT + 1) * SEGMENT, size, arrays)


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


