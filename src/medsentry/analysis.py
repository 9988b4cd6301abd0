"""One analysis run: inputs -> observations -> identified devices, with statistics.

Used by the CLI (and later the API); file, Zeek and live input all end in the same `Identifier`.
With `workers > 1` each process reads every capture and keeps only its share of flows (by flow hash), so
the expensive work splits near-linearly while reading stays cheap; observations stream back to this process
in bounded chunks and are identified while the workers go on, so memory does not grow with the capture.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from operator import attrgetter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

from medsentry.capture.files import CAPTURE_SUFFIXES, CaptureError, expand_paths
from medsentry.identify.device import Device
from medsentry.observe import Observation
from medsentry.pipeline import Analyzer, Stats, analyze_files, fewer_collections

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
    if detector is None:
        return ident.add
    identify, detect = ident.add, detector.add

    def both(obs: Observation) -> None:
        identify(obs)
        detect(obs)

    return both


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


def _identifier(fingerprints: Path | None):  # -> Identifier; imported late so `--help` stays fast
    from medsentry.identify.inventory import Identifier

    return Identifier(learned=fingerprints)


CHUNK = 2048  # observations per message from a worker
# Observations travel as plain tuples: a frozen dataclass pickles and unpickles several times slower.
_as_tuple = attrgetter(*(f.name for f in fields(Observation)))
MAX_CHUNKS = 16  # chunks in flight: a worker waits when identification falls behind


def _shard(paths: list[Path], k: int, n: int, out: Any) -> None:
    """One worker: its share of the flows; observations go to `out` in chunks, then its Stats."""
    buf: list[tuple[Any, ...]] = []

    def emit(o: Observation) -> None:
        buf.append(_as_tuple(o))
        if len(buf) >= CHUNK:
            out.put(buf.copy())
            buf.clear()

    try:
        stats = analyze_files(paths, emit, shard=(k, n))
    except BaseException as exc:  # the parent must hear of it, not wait for ever
        out.put(RuntimeError(f"worker {k}: {exc!r}"))
        raise
    out.put(buf)
    out.put(stats)


def _run_sharded(captures: list[Path], workers: int, add: Callable[[Observation], None],
                 advance: Callable[[int], None], total: int) -> Stats:
    """Shards on `workers` processes; each observation goes to `add` in this process while the workers go
    on.  The queue holds at most MAX_CHUNKS chunks: workers wait when identification falls behind, so
    memory stays bounded.  Every shard sees a client IP's first packet of its own flows, so each may
    report an `ip.ttl` for it: only the earliest is kept."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue(MAX_CHUNKS)
    procs = [
        ctx.Process(target=_shard, args=(captures, k, workers, out), daemon=True) for k in range(workers)
    ]
    for p in procs:
        p.start()
    stats = Stats()
    ttl: dict[str | None, Observation] = {}
    dropped_ttl = 0
    done = 0
    try:
        while done < workers:
            try:
                item = out.get(timeout=1.0)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a worker process died") from None
                continue
            if isinstance(item, Stats):
                stats.merge(item)
                done += 1
                advance(total // workers)
            elif isinstance(item, Exception):
                raise item
            else:
                for t in item:
                    o = Observation(*t)
                    if o.kind == "ip.ttl":
                        have = ttl.get(o.src_ip)
                        if have is not None:
                            dropped_ttl += 1
                            if o.ts >= have.ts:
                                continue
                        ttl[o.src_ip] = o
                    else:
                        add(o)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    for o in ttl.values():
        add(o)
    stats.observations -= dropped_ttl
    return stats


def run_inputs(
    paths: list[Path],
    fingerprints: Path | None = None,
    workers: int = 1,
    console: Console | None = None,
    detector: Any | None = None,
) -> Result:
    """`detector` (a `medsentry.detect.Detector`) sees every observation too; its alerts are in the result."""
    with fewer_collections():  # identification and detection (and the inventory at the end) too
        return _run_inputs(paths, fingerprints, workers, console, detector)


def _run_inputs(
    paths: list[Path],
    fingerprints: Path | None,
    workers: int,
    console: Console | None,
    detector: Any | None,
) -> Result:
    captures, zeek = split_inputs(paths)
    ident = _identifier(fingerprints)
    sink = _sink(ident, detector)
    stats = Stats()
    if captures:
        total = sum(p.stat().st_size for p in captures)
        with _progress(console, total) as advance:
            if workers == 1:
                stats = analyze_files(captures, sink, progress=advance)
            else:
                stats = _run_sharded(captures, workers, sink, advance, total)
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
    if detector is not None:
        d["detection"] = detector.summary()
    return Result(devices, d, [str(p) for p in paths], stats, alerts)


def run_live(
    interface: str,
    bpf: str | None,
    duration: float | None,
    fingerprints: Path | None = None,
    console: Console | None = None,
    detector: Any | None = None,
) -> Result:
    from medsentry.capture.live import capture

    ident = _identifier(fingerprints)
    analyzer = Analyzer(_sink(ident, detector), source="live")
    with fewer_collections():
        try:
            for batch in capture(interface, bpf, duration):
                analyzer.feed(batch)
        except CaptureError as exc:
            analyzer.stats.errors.append(str(exc))
        except KeyboardInterrupt:
            pass
        stats = analyzer.finish()
        devices, alerts = _finish(ident, detector)
    d = stats.to_dict() | {"devices": len(devices)}
    if detector is not None:
        d["detection"] = detector.summary()
    return Result(devices, d, [f"live:{interface}"], stats, alerts)


def run_stats(result: Result, started: float):  # -> store.base.RunStats
    from medsentry.store.base import RunStats

    s = result.stats
    return RunStats(
        started=started,
        ended=time.time(),
        packets=s.packets,
        bytes=s.bytes,
        flows=s.flows,
        observations=s.observations,
        # Frames the decoder could not parse count as malformed too, under their own name.
        malformed=dict(s.malformed_by_protocol) | ({"frame": s.malformed} if s.malformed else {}),
    )


class _progress:
    """A byte-based progress bar on stderr, or nothing without a console."""

    def __init__(self, console: Console | None, total: int) -> None:
        self.bar = (
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            if console is not None and console.is_terminal
            else None
        )
        self.total = total

    def __enter__(self) -> Callable[[int], None]:
        if self.bar is None:
            return lambda n: None
        self.bar.start()
        task = self.bar.add_task("analysing", total=self.total)
        return lambda n: self.bar.advance(task, n)  # type: ignore[union-attr]

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
