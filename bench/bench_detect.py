#!/usr/bin/env python3
"""What attack and PHI detection adds to `medsentry analyze` (issue target: at most +25 %).

    bench/bench_detect.py [CAPTURE] [--repeat 3] [--workers 1]

Runs `bench/run_medsentry.py CAPTURE` with and without `--no-detect`, alternating so that load on a
shared machine hits both alike, and compares the best CPU time (user + sys of the child) and wall time
of each. CPU time is the fairer figure where other processes compete for the cores.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_analyze import byte_compile, warm_page_cache

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CAPTURE = Path("/work/bench-data/big.pcap")


def run_once(capture: Path, workers: int, detect: bool) -> tuple[float, float]:
    """(wall s, CPU s) of one analyze run."""
    cmd = [str(REPO / ".venv/bin/python"), str(REPO / "bench/run_medsentry.py"), str(capture)]
    cmd += ["--workers", str(workers)] + ([] if detect else ["--no-detect"])
    warm_page_cache(capture)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("capture", type=Path, nargs="?", default=DEFAULT_CAPTURE)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if not args.capture.exists():
        print(f"{args.capture}: missing; build it with bench/make_bench_capture.sh", file=sys.stderr)
        return 2
    byte_compile()
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for i in range(args.repeat):
        for detect in (False, True) if i % 2 == 0 else (True, False):
            wall, cpu = run_once(args.capture, args.workers, detect)
            runs[detect].append((wall, cpu))
            label = "with detection" if detect else "--no-detect   "
            print(f"run {i + 1} {label}: wall {wall:6.2f} s  CPU {cpu:6.2f} s", flush=True)
    c0, c1 = (min(cpu for _, cpu in runs[flag]) for flag in (False, True))
    w0, w1 = (min(wall for wall, _ in runs[flag]) for flag in (False, True))
    print(f"best CPU: {c0:.2f} s without, {c1:.2f} s with detection: +{100 * (c1 - c0) / c0:.1f} %")
    print(f"best wall: {w0:.2f} s without, {w1:.2f} s with detection: +{100 * (w1 - w0) / w0:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
