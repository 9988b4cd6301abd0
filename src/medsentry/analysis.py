"""One analysis run: inputs -> observations -> identified devices, with statistics.

Used by the CLI (and later the API); file, Zeek and live input all end in the same `Identifier`.
With `workers > 1` reader processes read the captures side by side, each its own byte ranges, and deal
each batch's records to the workers by host (`deal`; the frames stay in the file, which each worker
maps), which dissect and identify their share of the flows; the observations detection reads stream back
to this process in bounded chunks, are put back in one process's order and judged while the workers go
on, so memory does not grow with the capture; the workers' identification state is merged at the end.
The result is the one-process result. Live (`run_live`) with workers: the kernel's AF_PACKET fanout gives
each worker its flows, and detection takes their observations as they arrive.
"""

from __future__ import annotations

import copy
import heapq
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, fields
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsentry.capture.errors import CaptureError
from medsentry.capture.files import CAPTURE_SUFFIXES, expand_paths
from medsentry.deal import Segment, SegmentReader, Shared, dealt, plan
from medsentry.identify import oui
from medsentry.identify.device import Device
from medsentry.observe import Observation, Tee
from medsentry.pipeline import (
    Analyzer,
    Stats,
    analyze_files,
    analyze_live,
    analyze_shares,
    fewer_collections,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from medsentry.identify.inventory import Network

ZEEK_SUFFIXES = (".log", ".log.gz", ".json", ".json.gz")


@dataclass
class Result:
    devices: list[Device]
    stats_dict: dict[str, object]
    inputs: list[str]
    stats: Stats = field(default_factory=Stats)
    alerts: list[Any] = field(default_factory=list)  # medsentry.detect.Alert, when a detector ran


def _sink(ident: Any, detector: Any | None) -> Callable[[Observation], None]:
    """Every observation goes to identification and, when asked, to detection."""
    return ident.add if detector is None else Tee(ident.add, detector.add)


def _finish(ident: Any, detector: Any | None) -> tuple[list[Device], list[Any]]:
    devices = ident.devices()
    if detector is None:
        return devices, []
    # A device may do what others of its class did while the baseline was learned.
    classes = {key: d.device_class for d in devices for key in (d.mac, *d.ips) if key and d.device_class}
    return devices, detector.alerts(classes)


def split_inputs(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(captures, zeek logs); directories may hold either."""
    captures, zeek = [], []
    for p in paths:
        if p.is_dir():
            captures.extend(expand_paths([p]))
            zeek.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(ZEEK_SUFFIXES)))
        elif p.name.endswith(ZEEK_SUFFIXES) and not p.name.endswith(CAPTURE_SUFFIXES):
            zeek.append(p)
        else:
            captures.append(p)
    return captures, zeek


def _identifier(fingerprints: Path | None, address_space: Sequence[Network] | None = None):  # -> Identifier
    """Imported late so that `--help` stays fast. The address space matters only where `devices` is
    called: a worker's identifier just collects state for the parent's."""
    from medsentry.identify.inventory import Identifier

    return Identifier(learned=fingerprints, address_space=address_space)


CHUNK = 2048  # observations per message from a worker
# Observations travel as plain tuples: a frozen dataclass pickles and unpickles several times slower.
_as_tuple = attrgetter(*(f.name for f in fields(Observation)))
MAX_CHUNKS = 16  # chunks in flight per worker: a worker waits when detection falls behind
_AFTER_BATCH = 2  # in a position, after a batch's packets (phase 0) and its ended flows (1): `Analyzer.feed`
MAX_DEALT = 4  # shares dealt ahead to each worker by each reader: a reader waits when a worker falls behind
READER_SHARE = 3  # workers per reader (`readers_for`)


@dataclass
class _ShardEnd:
    """A worker's last message: its statistics, what its identifier learned, and the time span and count
    of the observations it did not send (`Detector.saw`)."""

    k: int
    stats: Stats
    identified: Any  # identify.inventory.ShardState
    unsent: tuple[float, float, int]


def _worker(ident: Any, forward: frozenset[str], out: Any, **options: Any
            ) -> tuple[Analyzer, Callable[..., None], Callable[[int, Callable[[], Stats]], None]]:
    """A worker's (analyzer, flush, run). The analyzer (made with `options`) identifies its observations
    here; those of the kinds in `forward` (the ones detection reads) and each client IP's first TTL go to
    `out` in chunks of (position, observation). flush sends a partial chunk (live: detection must not wait
    for a chunk to fill). run(k, work) runs the worker (`work` returns its statistics), then sends the last
    chunk and a `_ShardEnd`; an exception goes to the parent too, which would otherwise wait for ever."""
    identify = ident.add
    buf: list[tuple[Any, ...]] = []
    unsent = [float("inf"), float("-inf"), 0]

    def emit(o: Observation) -> None:
        kind = o.kind
        if kind == "ip.ttl":  # the parent keeps the first of all shards' (see `_run_sharded`)
            buf.append((analyzer.position, _as_tuple(o)))
        else:
            identify(o)
            if kind in forward:
                buf.append((analyzer.position, _as_tuple(o)))
            else:
                unsent[0] = min(unsent[0], o.ts)
                unsent[1] = max(unsent[1], o.ts)
                unsent[2] += 1
                return
        if len(buf) >= CHUNK:
            flush()

    def flush(mark: tuple[int, int] | None = None) -> None:
        if mark is not None:
            buf.append((mark, None))  # a position and no observation: see `ShardMerge`
        if buf:
            out.put(buf.copy())
            buf.clear()

    def run(k: int, work: Callable[[], Stats]) -> None:
        try:
            stats = work()
        except BaseException as exc:
            out.put(RuntimeError(f"worker {k}: {exc!r}"))
            raise
        out.put(buf)
        out.put(_ShardEnd(k, stats, ident.shard_state(), (unsent[0], unsent[1], int(unsent[2]))))

    analyzer = Analyzer(emit, **options)
    return analyzer, flush, run


def _read(segments: list[Segment], reader: int, inputs: list[list[Any]], shared: Shared) -> None:
    """Reader `reader` of a file run (`deal.SegmentReader`): its segments of every capture read and dealt
    to the workers, `inputs[reader][k]` being worker k's queue from it. An exception goes to every queue
    (each worker waits on one of them), and the workers raise it to the parent; this process ends
    normally, or the parent would see it die before hearing why."""
    mine = inputs[reader]
    try:
        SegmentReader(segments, reader, len(inputs), len(mine), lambda k, share: mine[k].put(share),
                      shared).run()
    except Exception as exc:
        failed = RuntimeError(f"reader {reader}: {exc!r}")
        for queues in inputs:
            for q in queues:
                with suppress(queue.Full):
                    q.put_nowait(failed)


def _shard(k: int, inputs: list[Any], segments: int, out: Any, fingerprints: Path | None,
           forward: frozenset[str]) -> None:  # fmt: skip
    """One worker of a file run: the share of every batch the readers deal it (its hosts: `deal.Dealer`),
    identified here; see `_worker` for what it sends. `inputs`: its queue from each reader."""
    analyzer, flush, run = _worker(_identifier(fingerprints), forward, out)

    def between() -> None:
        # What the shard has so far and a mark "nothing more before the next batch", after every batch:
        # the parent's merge then never waits on a shard with nothing to say while that shard waits on a
        # reader and the reader on another shard the parent is not reading (they would wait forever).
        flush((analyzer.batches, _AFTER_BATCH))

    run(k, lambda: analyze_shares(dealt(inputs, segments), analyzer, between))


def readers_for(workers: int) -> int:
    """Readers for `workers` workers: reading and dealing a capture takes a quarter of the CPU the workers
    spend on it (bench/scaling.py: 0.6 s against 2.4 s for the bench capture), so with one reader per
    three workers the readers keep ahead rather than set the pace."""
    return max(1, -(-workers // READER_SHARE))


def _next_from(out: Any, procs: list[Any], waiting: Callable[[], None]) -> Any:
    """The next item workers sent to `out`, raising what a worker sent as an exception, or if one died.
    `waiting` is called before each wait of at most a second (progress bar, checkpoints)."""
    while True:
        waiting()
        try:
            item = out.get(timeout=1.0)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a worker process died") from None
            continue
        if isinstance(item, Exception):
            raise item
        return item


def _received(out: Any, procs: list[Any], ends: list[_ShardEnd], tick: Callable[[], None]
              ) -> Iterator[tuple[Any, ...]]:
    """One worker's (position, observation) pairs as they arrive; its `_ShardEnd` goes to `ends`. `procs`:
    the worker and the processes it waits for. `tick` is called at least once a second while waiting (the
    progress bar)."""
    while not isinstance(item := _next_from(out, procs, tick), _ShardEnd):
        yield from item
    ends.append(item)


def _run_sharded(captures: list[Path], workers: int, ident: Any, detector: Any | None,
                 fingerprints: Path | None, advance: Callable[[int], None], total: int) -> Stats:
    """Shards on `workers` processes. Each identifies its own observations; `ident` merges what they
    learned at the end. Detection needs the observations it reads in one place and in order: they stream
    here, one bounded queue per worker (a worker waits when detection falls behind, so memory stays
    bounded), and are merged by position, which puts them in the order one process gives them. Every shard
    sees a client IP's first packet of its own flows, so each may report an `ip.ttl` for it: the first in
    that order is kept."""
    oui.preload()  # the parent needs it for the inventory anyway; forked workers share it
    ctx = _forking()
    segments = plan(captures)
    readers = readers_for(workers)
    shared = Shared(ctx, workers, len(segments), readers)
    inputs = [[ctx.Queue(MAX_DEALT) for _ in range(workers)] for _ in range(readers)]
    outs = [ctx.Queue(MAX_CHUNKS) for _ in range(workers)]
    forward = detector.kinds if detector is not None else frozenset()
    reading = [ctx.Process(target=_read, args=(segments, r, inputs, shared), daemon=True)
               for r in range(readers)]
    procs = [
        ctx.Process(target=_shard, args=(k, [q[k] for q in inputs], len(segments), outs[k], fingerprints,
                                         forward), daemon=True)
        for k in range(workers)
    ]
    read = np.frombuffer(shared.read, np.int64)  # capture bytes each reader got through
    shown = 0

    def tick() -> None:
        nonlocal shown
        now = int(read.sum())
        if now > shown:
            advance(now - shown)
            shown = now

    for p in (*reading, *procs):
        p.start()
    ends: list[_ShardEnd] = []
    try:
        merged = ShardMerge([_received(outs[k], [procs[k], *reading], ends, tick) for k in range(workers)])
        judge_merged(merged, ident, detector)
    finally:
        for p in (*reading, *procs):
            if p.is_alive():
                p.terminate()
            p.join()
    advance(total - shown)
    stats = merge_ends(ends, ident, detector)
    stats.observations -= merged.dropped_ttl
    return stats


def judge_merged(merged: Iterable[Observation], ident: Any, detector: Any | None) -> None:
    """The parent's part while the workers run: the merged observations to detection; of identification,
    only the TTL facts (the first of all shards' is kept by the merge)."""
    detect = detector.add if detector is not None else None
    for o in merged:
        if o.kind == "ip.ttl":
            ident.add(o)
        if detect is not None:
            detect(o)


def merge_ends(ends: list[_ShardEnd], ident: Any, detector: Any | None) -> Stats:
    """The parent's part after the workers: their statistics and identification state, in shard order
    (where bounds keep the first values seen), and what detection did not need to see."""
    stats = Stats()
    for end in sorted(ends, key=attrgetter("k")):
        stats.merge(end.stats)
        ident.merge(end.identified)
        if detector is not None:
            detector.saw(*end.unsent)
    return stats


class ShardMerge:
    """Shards' streams of (position, observation tuple) as the observations one process emits, in its
    order (`Analyzer.feed`): merged by position, and of a client IP's TTL facts (each shard reports the
    first packet of its own flows) only the first kept; `dropped_ttl` counts the others."""

    def __init__(self, streams: list[Iterable[tuple[Any, tuple[Any, ...] | None]]]) -> None:
        self.streams = streams
        self.dropped_ttl = 0

    def __iter__(self) -> Iterator[Observation]:
        return self._first_ttl_only(heapq.merge(*self.streams, key=itemgetter(0)))

    def _first_ttl_only(self, pairs: Iterable[tuple[Any, tuple[Any, ...] | None]]) -> Iterator[Observation]:
        ttl_seen: set[str | None] = set()
        for _, t in pairs:
            if t is None:  # a shard's mark that it has nothing more before a position
                continue
            o = Observation(*t)
            if o.kind == "ip.ttl":
                if o.src_ip in ttl_seen:
                    self.dropped_ttl += 1
                    continue
                ttl_seen.add(o.src_ip)
            yield o


def run_inputs(
    paths: list[Path],
    fingerprints: Path | None = None,
    workers: int = 1,
    console: Console | None = None,
    detector: Any | None = None,
    address_space: Sequence[Network] | None = None,
) -> Result:
    """`detector` (a `medsentry.detect.Detector`) sees every observation too; its alerts are in the result.
    `address_space`: the hospital's networks (by default the private ranges); hosts seen only by IP outside
    them are counted (`stats_dict["remote_hosts"]`), not inventoried."""
    with fewer_collections():  # identification and detection (and the inventory at the end) too
        return _run_inputs(paths, fingerprints, workers, console, detector, address_space)


def _run_inputs(
    paths: list[Path],
    fingerprints: Path | None,
    workers: int,
    console: Console | None,
    detector: Any | None,
    address_space: Sequence[Network] | None,
) -> Result:
    captures, zeek = split_inputs(paths)
    ident = _identifier(fingerprints, address_space)
    sink = _sink(ident, detector)
    stats = Stats()
    if captures:
        total = sum(p.stat().st_size for p in captures)
        with _progress(console, total) as advance:
            if workers == 1:
                stats = analyze_files(captures, sink, progress=advance)
            else:
                stats = _run_sharded(captures, workers, ident, detector, fingerprints, advance, total)
    zeek_stats: dict[str, object] = {}
    if zeek:
        from medsentry.capture.zeek import ZeekStats, read_zeek

        zs = ZeekStats()
        for o in read_zeek(zeek, zs):
            sink(o)
        stats.observations += zs.observations
        stats.errors.extend(str(e) for e in zs.errors)
        zeek_stats = {"rows": dict(zs.rows), "skipped": dict(zs.skipped), "errors": zs.error_count}
    devices, alerts = _finish(ident, detector)
    d = stats.to_dict()
    if zeek_stats:
        d["zeek"] = zeek_stats
    d["devices"] = len(devices)
    d["remote_hosts"] = ident.remote_hosts
    if detector is not None:
        d["detection"] = detector.summary()
    return Result(devices, d, [str(p) for p in paths], stats, alerts)


CHECKPOINT_SECONDS = 300.0
Checkpoint = Callable[[list[Device], list[Any], Stats], None]  # devices, alerts so far, statistics so far


def run_live(
    interface: str,
    bpf: str | None,
    duration: float | None,
    fingerprints: Path | None = None,
    console: Console | None = None,
    detector: Any | None = None,
    workers: int = 1,
    checkpoint: Checkpoint | None = None,
    every: float = CHECKPOINT_SECONDS,
    address_space: Sequence[Network] | None = None,
) -> Result:
    """Capture until `duration` has passed or Ctrl-C. With `workers > 1` the kernel shares the interface's
    flows among that many processes (`LiveCapture` fanout), each identifying its own; the observations
    detection reads come here as they arrive, and the identification state at the end. `checkpoint` is
    given the inventory and alerts so far about every `every` seconds while traffic comes (a long capture
    then keeps them even if it never gets to the end). `address_space` as for `run_inputs`."""
    ident = _identifier(fingerprints, address_space)
    deadline = time.monotonic() + duration if duration else None
    stop = _forking().Event()
    due = _Schedule(every if checkpoint is not None else None)
    previous = _interrupt_sets(stop)  # finish what was captured, then report, as at the deadline
    try:
        if workers == 1:
            analyzer = Analyzer(_sink(ident, detector), source="live")

            def save() -> None:  # in a forked child: its copy of the state is its own to change
                assert checkpoint is not None
                judge = _sink(ident, detector)  # flows not ended yet as they stand: a scan still going on too
                for o in analyzer.open_flows():
                    judge(o)
                checkpoint(*_finish(ident, detector), analyzer.stats)

            child = _Child()

            def between() -> None:
                if due():
                    child.run(save)

            try:
                stats = _capture(interface, bpf, deadline, stop, analyzer, between)
            finally:
                child.wait()  # a late checkpoint must not land after the final result
        else:
            stats = _run_live_sharded(interface, bpf, deadline, workers, ident, detector, fingerprints, stop,
                                      checkpoint, due)  # fmt: skip
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    with fewer_collections():
        devices, alerts = _finish(ident, detector)
    d = stats.to_dict() | {"devices": len(devices), "remote_hosts": ident.remote_hosts}
    if detector is not None:
        d["detection"] = detector.summary()
    return Result(devices, d, [f"live:{interface}"], stats, alerts)


class _Child:
    """Runs a function in a forked copy of this process, one at a time: a checkpoint builds the inventory
    and writes the store there while capture goes on here (in this process it would pause analysis for
    0.6-0.8 s at 800 devices, longer than the kernel's buffer lasts at 100k packets/s)."""

    def __init__(self) -> None:
        self.pid = 0

    def run(self, fn: Callable[[], None]) -> None:
        if self.pid and os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            return  # the previous one is still at it: this one is skipped
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                fn()
                code = 0
            except BaseException:  # report it, and never return into the parent's code
                import traceback  # here: live checkpoints only (every run imported it, 1.6 ms)

                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(code)

    def wait(self) -> None:
        if self.pid:
            with suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            self.pid = 0


class _Schedule:
    """Calling it says whether a period has passed since it last said so (never with `every` None). The
    clock is monotonic and shared by forked processes, so a parent and its workers keep one schedule."""

    def __init__(self, every: float | None, lag: float = 0.0) -> None:
        self.every = every
        self.next = time.monotonic() + every + lag if every is not None else float("inf")

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self.next:
            return False
        assert self.every is not None
        self.next = now + self.every
        return True


@dataclass
class _ShardSnapshot:
    """A live worker's identification state and statistics so far (copies made at once: the queue pickles
    in a thread of its own, while the worker goes on changing the originals)."""

    k: int
    identified: bytes
    open_flows: list[tuple[Any, ...]]  # `Analyzer.open_flows`, as observation tuples
    stats: Stats


def _forking() -> Any:
    """multiprocessing's fork context, imported where used: analysing files in one process never is."""
    import multiprocessing

    return multiprocessing.get_context("fork")


def _interrupt_sets(stop: Any) -> Any:
    """Ctrl-C sets `stop` instead of raising; returns the previous handler (None off the main thread, where
    handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, lambda *_: stop.set())


def _capture(interface: str, bpf: str | None, deadline: float | None, stop: Any, analyzer: Analyzer,
             between: Callable[[], None] | None = None) -> Stats:
    """Capture into `analyzer` (one process) until the deadline or `stop`."""
    from medsentry.capture.live import LiveCapture

    try:
        capture = LiveCapture(interface, bpf, deadline=deadline, stop=stop.is_set)
    except CaptureError as exc:
        stats = analyzer.finish()
        stats.errors.append(str(exc))
        return stats
    return analyze_live(capture, analyzer, between)


def _live_worker(capture: Any, k: int, out: Any, fingerprints: Path | None, forward: frozenset[str],
                 due: _Schedule) -> None:
    """Worker k of a live run: the flows the kernel gives its `capture`, identified here; sends as `_shard`
    does, and a `_ShardSnapshot` whenever `due`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent sets the capture's stop event
    ident = _identifier(fingerprints)
    analyzer, flush, run = _worker(ident, forward, out, source="live")

    def between() -> None:
        flush()  # after every batch, and while quiet
        if due():
            state = pickle.dumps(ident.shard_state(), protocol=5)
            flows = [_as_tuple(o) for o in analyzer.open_flows()]
            out.put(_ShardSnapshot(k, state, flows, copy.deepcopy(analyzer.stats)))

    run(k, lambda: analyze_live(capture, analyzer, between))


def _run_live_sharded(interface: str, bpf: str | None, deadline: float | None, workers: int, ident: Any,
                      detector: Any | None, fingerprints: Path | None, stop: Any,
                      checkpoint: Checkpoint | None, due: _Schedule) -> Stats:
    """Workers share the interface by flow (kernel fanout). Every handle is opened (and joins the group)
    here, before the workers fork, so that no frame after the first join reaches two of them (see
    `LiveCapture`). Their streams have no common order: detection takes observations as they arrive (each
    worker's in its own order, workers interleaved by the chunk), so what a rule calls "first" across
    workers can differ by up to a chunk's time. Checkpoints merge the workers' latest snapshots into what
    this process identified, in a forked child (`_Child`)."""
    from medsentry.capture.live import LiveCapture

    oui.preload()
    group = os.getpid() & 0xFFFF
    captures: list[LiveCapture] = []
    try:
        for _ in range(workers):
            captures.append(LiveCapture(interface, bpf, deadline=deadline, stop=stop.is_set, fanout=group))
    except CaptureError as exc:
        for c in captures:
            c.close()
        stats = Stats()
        stats.errors.append(str(exc))
        return stats
    ctx = _forking()
    out = ctx.Queue(MAX_CHUNKS * workers)
    forward = detector.kinds if detector is not None else frozenset()
    procs = [
        ctx.Process(target=_live_worker, args=(c, k, out, fingerprints, forward, due), daemon=True)
        for k, c in enumerate(captures)
    ]
    for p in procs:
        p.start()

    child = _Child()

    def save(snapshots: dict[int, _ShardSnapshot]) -> None:
        if checkpoint is None or not snapshots:
            return
        ordered = [snapshots[k] for k in sorted(snapshots)]

        def in_child() -> None:  # its copy of `ident` is its own to change
            stats = Stats()
            for s in ordered:
                ident.merge(pickle.loads(s.identified))
                stats.merge(s.stats)
            judge = _sink(ident, detector)  # flows not ended yet as they stand: a scan still going on too
            for s in ordered:
                for t in s.open_flows:
                    judge(Observation(*t))
            checkpoint(*_finish(ident, detector), stats)

        child.run(in_child)

    ends: list[_ShardEnd] = []
    # A checkpoint is saved once every worker has sent its snapshot, or half a period late without the
    # snapshots of workers that had no traffic since.
    late = _Schedule(due.every, lag=due.every / 2 if due.every is not None else 0.0)
    arrivals = _Arrivals(out, procs, ends, late, save)
    try:
        with fewer_collections():  # as a file run's parent: unpickled chunks and detection allocate a lot
            judge_merged(arrivals, ident, detector)
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=15)
            if p.is_alive():
                p.terminate()
                p.join()
        for c in captures:  # only now: closing tears down the kernel ring the worker shared
            c.close(count=False)
        child.wait()  # a late checkpoint must not land after the final result
    stats = merge_ends(ends, ident, detector)
    stats.observations -= arrivals.dropped_ttl
    return stats


class _Arrivals(ShardMerge):
    """Live workers' observations in the order their chunks arrive (there is no common order to restore),
    the first TTL fact of a client IP only, until every worker has sent its `_ShardEnd` (into `ends`). The
    workers' latest snapshots go to `save` once each has sent one, or when `due` with some of them."""

    def __init__(self, out: Any, procs: list[Any], ends: list[_ShardEnd], due: _Schedule,
                 save: Callable[[dict[int, _ShardSnapshot]], None]) -> None:
        super().__init__([])
        self.out, self.procs, self.ends, self.due, self.save = out, procs, ends, due, save

    def __iter__(self) -> Iterator[Observation]:
        return self._first_ttl_only(self._pairs())

    def _pairs(self) -> Iterator[tuple[Any, tuple[Any, ...] | None]]:
        snapshots: dict[int, _ShardSnapshot] = {}
        fresh: set[int] = set()  # workers whose snapshot came since the last save

        def checkpoint() -> None:
            if len(fresh) == len(self.procs) or (self.due() and fresh):
                self.save(snapshots)
                fresh.clear()

        while len(self.ends) < len(self.procs):
            item = _next_from(self.out, self.procs, checkpoint)
            if isinstance(item, _ShardEnd):
                self.ends.append(item)
            elif isinstance(item, _ShardSnapshot):
                snapshots[item.k] = item
                fresh.add(item.k)
            else:
                yield from item


def run_stats(result: Result, started: float):  # -> store.base.RunStats
    return run_stats_of(result.stats, started)


def run_stats_of(s: Stats, started: float):  # -> store.base.RunStats
    from medsentry.store.base import RunStats

    return RunStats(
        started=started,
        ended=time.time(),
        packets=s.packets,
        bytes=s.bytes,
        flows=s.flows,
        observations=s.observations,
        # Frames the decoder could not parse count as malformed too, under their own name, and so do
        # payloads a dissector failed on ("dns: TypeError (dissector error)").
        malformed=dict(s.malformed_by_protocol) | ({"frame": s.malformed} if s.malformed else {})
        | {f"{name} (dissector error)": n for name, n in s.dissector_errors.items()},
    )


class _progress:
    """A byte-based progress bar on stderr, or nothing without a console."""

    def __init__(self, console: Console | None, total: int) -> None:
        self.bar: Progress | None = None
        self.total = total
        if console is None or not console.is_terminal:
            return  # and rich.progress is not imported (~10 ms of a quiet run's start)
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )

    def __enter__(self) -> Callable[[int], None]:
        if self.bar is None:
            return lambda n: None
        self.bar.start()
        task = self.bar.add_task("analysing", total=self.total)
        return lambda n: self.bar.advance(task, n)  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
