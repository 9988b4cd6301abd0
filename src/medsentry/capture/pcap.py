"""Classic pcap (libpcap) files, either byte order, micro- or nanosecond time stamps.

    global header (24 bytes)  magic u32 a1b2c3d4 (microseconds) or a1b23c4d (nanoseconds) in the
                              writer's byte order (read as d4c3b2a1 / 4d3cb2a1: the other order),
                              version u16 u16, thiszone i32, sigfigs u32, snaplen u32, linktype u32
                              (its top bits carry frame check sequence flags)
    record header (16 bytes)  ts_sec u32, ts_frac u32, incl_len u32 (bytes captured, which follow),
                              orig_len u32 (bytes on the wire)

Records carry no marker and no length after them: a reader can only walk them from the start or from a
known record start (`pcap_segment`); `analyze --workers` readers guess one (`_fastpath.resync_pcap`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator
from pathlib import Path
from typing import NamedTuple

from medsentry.capture import _fastpath
from medsentry.capture.errors import CaptureError
from medsentry.capture.records import CORRUPT, OUT_FULL, Batch, RecordArrays
from medsentry.capture.windows import Windows

MAX_RECORD = 16 + _fastpath.MAX_CAPLEN  # a record's header and the longest frame _fastpath reads


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
        if ret == CORRUPT:
            raise CaptureError(name, at + off, "corrupt pcap record header")
        if ret != OUT_FULL and at + off < min(stop, size):
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
