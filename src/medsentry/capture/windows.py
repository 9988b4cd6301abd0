"""Windows of a capture file mapped read-only: how a reader reads a plain file without copying it, and
how `analyze --workers` hands a batch to another process (by the file offset of its window)."""

from __future__ import annotations

import contextlib
import mmap
from collections import deque
from pathlib import Path


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
