"""How `analyze --workers` reads captures: readers deal every batch's records to the workers by host.

A run's captures are cut into segments (`plan`): a plain pcap or pcapng file into the records starting in
each SEGMENT bytes of it (`pcap.pcap_segment`, `pcapng.pcapng_segment`: the batches one process reads
too), any other capture (gzip'd) is one segment. Reader r of R reads segments r, r + R, r + 2R, ... and
deals each batch's records to the workers (`Dealer`), ending each segment with END; a worker takes the
segments in order, each from its reader's queue (`dealt`), so it sees every batch in the order one
process reads them while the readers read side by side, each ahead of the workers by its queues' depth.

Where a reader's segment starts is the end of the segment before, which another reader is reading at the
same time: the reader guesses it (`_fastpath.resync_pcap`, `resync_pcapng`: the first place a chain of
plausible record headers or blocks begins) and reads on, then checks the guess against the end the other
reader publishes in the shared `ends`; a wrong guess (a payload that looked like records) is read again
from there. A file that breaks (a corrupt record header, a cut record) stops there as in one process:
the segments after it deal nothing (BROKEN). A pcapng's readers take its first section and interfaces to
hold; the reader that meets another section header or interface block reads the rest of the file itself,
and the segments after it deal nothing (TAKEN).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from medsentry.capture import _fastpath, files
from medsentry.capture.errors import CaptureError
from medsentry.capture.files import SegmentWalk, expand_paths, segments_from
from medsentry.capture.pcap import PcapForm, PcapWalk, plain_pcap
from medsentry.capture.pcapng import MAX_BLOCK, PcapngState, PcapngWalk, StateChange, plain_pcapng
from medsentry.capture.records import Batch, RecordArrays
from medsentry.capture.windows import Windows
from medsentry.pipeline import read_captures, spare_core_ahead

Share = tuple[Any, ...]  # what a worker is sent: ("file", name), ("batch", ...), ("error", text), END
END: Final[Share] = ("end",)  # a segment's last share
WHOLE: Final = -1  # Segment.index of a capture read as one segment
UNKNOWN: Final = -2  # in `ends`: not published yet
BROKEN: Final = -1  # in `ends`: the file broke in or before the segment
TAKEN: Final = -3  # in `ends`: the reader of a segment before this one read the rest of the file
CHAIN: Final = 8  # record headers in a row that make a guessed pcap segment start (`resync_pcap`)
CHAIN_NG: Final = 4  # blocks in a row that make a guessed pcapng segment start (`resync_pcapng`)
Walked = tuple[list[tuple[Batch, int]], int, str | None]  # a segment's (batch, window)s, end, error


@dataclass(frozen=True, slots=True)
class Segment:
    path: Path
    index: int  # of the file's segments, or WHOLE
    size: int = 0  # the file's bytes
    start: int = 0  # where the file's first record (block after its head) starts
    form: PcapForm | None = None  # a classic pcap's
    first_second: int = 0  # a classic pcap's first record's time (`resync_pcap` takes records near it)
    head: PcapngState | None = None  # a pcapng's first section and interfaces

    @property
    def stop(self) -> int:
        return min(self.size, (self.index + 1) * files.SEGMENT)

    def walk(self) -> SegmentWalk:
        """Its records' walk; a pcapng's takes the file's head to hold to the segment (`StateChange`)."""
        if self.form is not None:
            return PcapWalk(self.form)
        assert self.head is not None
        return PcapngWalk(self.head.copy(), fixed=True)


def plan(paths: Iterable[Path]) -> list[Segment]:
    """Every capture's segments, in order: a plain pcap or pcapng file's SEGMENT-byte ranges, any other
    capture whole."""
    out: list[Segment] = []
    for path in expand_paths(list(paths)):
        pcap, pcapng = plain_pcap(path), None
        if pcap is not None:
            form, size, first_second = pcap
            parts = [Segment(path, 0, size, 24, form=form, first_second=first_second)]
        elif (pcapng := plain_pcapng(path)) is not None:
            head, start, size = pcapng
            parts = [Segment(path, 0, size, start, head=head)]
        else:
            out.append(Segment(path, WHOLE))
            continue
        first = parts[0]
        out.extend(replace(first, index=i) for i in range((first.size - 1) // files.SEGMENT + 1))
    return out


class Dealer:
    """Deals each batch's records to `n` shards by host (`_fastpath.deal`: a flow's client, a non-IP
    frame's source MAC), so a flow's packets, and all of its client's flows, are always in the same
    shard; a host's bucket goes to the shard with the least work when first met, and stays there.
    `owner` (bucket -> shard, -1 none) and `load` (work per shard) may be shared by readers in several
    processes (`Shared`)."""

    BUCKETS = 4096

    def __init__(self, n: int, owner: np.ndarray | None = None, load: np.ndarray | None = None) -> None:
        self.owner = owner if owner is not None else np.full(self.BUCKETS, -1, np.int64)
        self.load = load if load is not None else np.zeros(n, np.int64)

    def shares(self, recs: np.ndarray) -> list[np.ndarray]:
        """The positions of each shard's records in the batch."""
        shard: np.ndarray = np.empty(len(recs), np.int32)
        _fastpath.deal(recs, self.owner, self.load, shard)
        return [np.flatnonzero(shard == k) for k in range(len(self.load))]


class Shared:
    """What a run's readers share, made before they fork: the dealer's owners and loads, each segment's
    end (`ends`), and the capture bytes each reader got through (`read`, for the progress bar)."""

    def __init__(self, ctx: Any, workers: int, segments: int, readers: int) -> None:
        self.owner = ctx.RawArray("q", Dealer.BUCKETS)
        self.load = ctx.RawArray("q", workers)
        self.ends = ctx.RawArray("q", segments)
        self.read = ctx.RawArray("q", readers)
        np.frombuffer(self.owner, np.int64)[:] = -1
        np.frombuffer(self.ends, np.int64)[:] = UNKNOWN

    def dealer(self) -> Dealer:
        return Dealer(len(self.load), np.frombuffer(self.owner, np.int64), np.frombuffer(self.load, np.int64))


class SegmentReader:
    """Reader `reader` of `readers`: reads its segments of `segments` and deals them to `workers` workers
    with `send(k, share)`; each segment ends with END to every worker."""

    def __init__(self, segments: list[Segment], reader: int, readers: int, workers: int,
                 send: Callable[[int, Share], None], shared: Shared) -> None:  # fmt: skip
        self.segments, self.reader, self.readers, self.workers = segments, reader, readers, workers
        self.send = send
        self.dealer = shared.dealer()
        self.ends: np.ndarray = np.frombuffer(shared.ends, np.int64)
        self.read: np.ndarray = np.frombuffer(shared.read, np.int64)
        self.guessed_wrong = 0  # segments read again from their true start
        self._windows: Windows | None = None
        self._mapped: Path | None = None
        self._arrays = RecordArrays()

    def run(self) -> None:
        try:
            for g in range(self.reader, len(self.segments), self.readers):
                seg = self.segments[g]
                if seg.index == WHOLE:
                    self._whole(seg)
                else:
                    self._ranged(g, seg)
                self._to_all(END)
        finally:
            if self._windows is not None:
                self._windows.close()

    def _to_all(self, share: Share) -> None:
        for k in range(self.workers):
            self.send(k, share)

    def _deal(self, batch: Batch, window: int | None) -> None:
        recs = batch.recs
        where = (window, len(batch.buf)) if window is not None else bytes(batch.buf)
        now = float(recs["ts"][-1])
        for k, kept in enumerate(self.dealer.shares(recs)):
            self.send(k, ("batch", where, kept, recs.take(kept), now))

    def _whole(self, seg: Segment) -> None:
        def progress(n_bytes: int) -> None:
            self.read[self.reader] += n_bytes

        # walked ahead by a second thread where there is a core for it, as one process reads (a capture
        # read whole is not split between readers)
        with closing(read_captures([seg.path], progress, spare_core_ahead())) as events:
            for event in events:
                if event[0] == "batch":
                    self._deal(event[1], event[2])
                else:
                    self._to_all(event)

    def _ranged(self, g: int, seg: Segment) -> None:
        """A segment of a plain pcap or pcapng: guessed start, walk, check, deal."""
        if seg.index == 0:
            self._to_all(("file", str(seg.path)))
        windows = self._windows_of(seg.path)
        start = seg.start if seg.index == 0 else int(self.ends[g - 1])
        guessed = start == UNKNOWN
        if guessed:
            start = self._resync(windows, seg)
            if start == UNKNOWN:
                start = self._wait(g - 1)
        walked: Walked = ([], start, None)
        changed: int | None = None
        if start >= 0:
            walked, changed = self._walk(windows, seg, start)
        if guessed and start >= 0:
            true = self._wait(g - 1)
            if true != start:
                self.guessed_wrong += 1
                walked, changed = self._walk(windows, seg, true) if true >= 0 else (([], true, None), None)
        batches, end, error = walked
        self.ends[g] = TAKEN if changed is not None else end
        for batch, window in batches:
            self._deal(batch, window)
        if error is not None:
            self._to_all(("error", error))
        if end != TAKEN:  # the reader that took the rest of the file counts its bytes
            self.read[self.reader] += seg.stop - seg.index * files.SEGMENT
        if changed is not None:
            self._rest(windows, seg, changed)

    def _rest(self, windows: Windows, seg: Segment, at: int) -> None:
        """The rest of a pcapng file from the section header or interface block at `at`, in segment `seg`:
        read here, segment after segment as one process reads it, with the file's first interfaces (they
        held up to `at`); the readers of the segments after `seg`, which took them to hold on, deal nothing
        of theirs (TAKEN)."""
        assert seg.head is not None
        walk = PcapngWalk(seg.head.copy())
        counted = seg.index * files.SEGMENT  # bytes of the file given to the progress bar so far
        try:
            for batch, window in segments_from(walk, windows, str(seg.path), at, seg.size, self._arrays):
                self._deal(batch, window)
                reached = min(seg.size, window + len(batch.buf))
                self.read[self.reader] += max(0, reached - counted)
                counted = max(counted, reached)
        except CaptureError as exc:
            self._to_all(("error", str(exc)))
        self.read[self.reader] += seg.size - counted

    def _windows_of(self, path: Path) -> Windows:
        if self._mapped != path:
            if self._windows is not None:
                self._windows.close()
            self._windows, self._mapped = Windows.of(path), path
        assert self._windows is not None
        return self._windows

    def _resync(self, windows: Windows, seg: Segment) -> int:
        """A guess of where the segment's first record starts, or UNKNOWN."""
        lo = seg.index * files.SEGMENT
        view = windows.at(lo, min(seg.size, seg.stop + MAX_BLOCK) - lo)
        if seg.form is not None:
            found = _fastpath.resync_pcap(view, 0, seg.form.swapped, seg.form.nsec, CHAIN, seg.first_second)
        else:
            assert seg.head is not None
            found = _fastpath.resync_pcapng(view, 0, seg.head.swapped, CHAIN_NG)
        return lo + found if found >= 0 else UNKNOWN

    def _wait(self, g: int) -> int:
        """Segment g's end, once its reader has published it."""
        while (end := int(self.ends[g])) == UNKNOWN:
            time.sleep(0.0002)
        return end

    def _walk(self, windows: Windows, seg: Segment, start: int) -> tuple[Walked, int | None]:
        """The segment's (batch, window) pairs from `start`, its end (BROKEN if the file broke), the error;
        and where a pcapng's section or interfaces changed, if they did."""
        out: list[tuple[Batch, int]] = []
        walk = seg.walk()(windows, str(seg.path), start, seg.stop, seg.size, self._arrays)
        try:
            while True:
                out.append(next(walk))
        except StopIteration as done:
            return (out, int(done.value), None), None
        except StateChange as change:
            return (out, TAKEN, None), change.offset
        except CaptureError as exc:
            return (out, BROKEN, str(exc)), None


def dealt(inputs: list[Any], segments: int) -> Iterable[Share]:
    """A worker's shares: every segment's, in order, each from its reader's queue (`inputs[r]`); an
    exception a reader sent is raised."""
    for g in range(segments):
        source = inputs[g % len(inputs)]
        while True:
            share = source.get()
            if isinstance(share, BaseException):
                raise share
            if share[0] == "end":
                break
            yield share
