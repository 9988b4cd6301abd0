#!/usr/bin/env python3
"""Throughput and memory of ``medsentry analyze`` against tshark, ndpiReader and NFStream.

    bench/bench_analyze.py [CAPTURE] [--tools tshark,ndpi,nfstream,medsentry] [--workers N]
                           [--sizes] [--timeout 900] [--medsentry-cmd TEMPLATE]

CAPTURE defaults to /work/bench-data/big.pcap (bench/make_bench_capture.sh, 2,077,230 packets);
peers come from bench/setup_peers.sh.  Standard library only: runs under any python3.

Each tool reads the whole capture once and must do flow tracking plus application-protocol work:

* tshark ``-r CAPTURE -q -z conv,tcp -z conv,udp``: every frame goes through Wireshark's full
  dissector chain (TCP reassembly, heuristic and application dissectors on by default) to feed a
  TCP+UDP conversation table.  The display tree is not built (no -V/-T/filter), as in any tshark
  statistics run; ``-z io,phs`` would add tree building and be slower.
* ndpiReader ``-i CAPTURE`` (nDPI 4.x): flow table + DPI with its defaults (DPI gives up after
  80 TCP / 24 UDP packets per flow, like medsentry looking at flow heads), prints a summary only
  (-q would suppress the summary that gives the flow count; the per-flow list needs -v).
* NFStream ``NFStreamer(source=CAPTURE, statistical_analysis=False)``, iterating over all flows
  (nDPI dissection of the first 20 packets per flow), in its own venv; its meters are auto-sized
  (1 meter process on a 2-core machine) - the count is printed.
* medsentry ``--medsentry-cmd`` (default below), once per ``--workers`` value (e.g. ``1,2``), with
  ``--workers N`` appended; skipped with a message when the command fails.  ``--label`` names the
  row (e.g. to compare a build from another commit, via PYTHONPATH in the command).
* medsentry-nodetect: the same command with ``--no-detect`` (one process): the issue's measure, decode +
  flows + dissectors + identification, without attack and PHI detection.  The speed-up column stays
  against the full run's row.

Measured per run: wall time, CPU time (user+sys of the process and its reaped children),
packets/s = capture packets (capinfos) / wall time, max RSS = largest single process (what
``/usr/bin/time -v`` prints as "Maximum resident set size", package ``time``) and the peak
PSS summed over every process of the run's session, polled every second (counts forked workers
once each, shared pages split).  The capture is read once beforehand so that every tool starts
from the page cache, and medsentry's modules are byte-compiled as an install would have them.
``--sizes`` repeats the runs on the first 1/4 and 1/2 of the capture's packets (editcap -r, cached
next to it) to show whether memory stays flat as captures grow.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CAPTURE = Path("/work/bench-data/big.pcap")
REPO = Path(__file__).resolve().parents[1]
# bench/run_medsentry.py is `medsentry analyze` with a throw-away inventory database.
DEFAULT_MEDSENTRY = f"{REPO}/.venv/bin/python {REPO}/bench/run_medsentry.py {{capture}} --json {{json}}"
DEFAULT_NFSTREAM_PYTHON = "/work/peers-venv/bin/python"
NFSTREAM_SNIPPET = (
    "import sys\n"
    "from nfstream import NFStreamer\n"
    "s = NFStreamer(source=sys.argv[1], statistical_analysis=False)\n"
    "print('flows', sum(1 for _ in s), 'n_meters', s.n_meters)\n"
)
TOOLS = ("tshark", "ndpi", "nfstream", "medsentry", "medsentry-nodetect")
FRACTIONS = ((1, 4), (1, 2), (1, 1))
POLL_S = 0.1
# Reading smaps_rollup walks the page tables of every mapping (the capture's 2.2 GB mmap included) under
# the process's mmap lock: at 10 Hz the poller took ~13 % of a core and held up the run's page faults.
PSS_EVERY_S = 1.0
MB = 1024 * 1024


@dataclass
class Result:
    tool: str
    capture: Path
    packets: int
    # measurements stay None when the run failed or timed out
    wall_s: float | None = None
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    peak_pss_mb: float | None = None
    flows: int | None = None
    note: str = ""

    @property
    def pps(self) -> float | None:
        return self.packets / self.wall_s if self.wall_s else None


def packet_count(capture: Path) -> int:
    out = subprocess.run(["capinfos", "-T", "-r", "-c", str(capture)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[-1])


def warm_page_cache(capture: Path) -> None:
    """Read the capture, so that a run starts from the page cache. Before every run: a VM's proactive
    reclaim (DAMON's kdamond here) evicts cold pages of a 2.2 GB file while another tool runs, and the
    next run then waits for the disk (0.37 s to walk the capture cached, 1.1 s after a reclaim)."""
    with capture.open("rb") as f:
        while f.read(16 * MB):
            pass


def byte_compile() -> None:
    """Byte-compile medsentry's own Python modules, as installing a package does. An editable install
    (setup.sh) leaves that to the first import, and where PYTHONDONTWRITEBYTECODE is set (as on the
    machines these figures come from) every run would compile the uncompiled ones again: 20 ms."""
    python = REPO / ".venv/bin/python"
    if python.exists():
        subprocess.run([str(python), "-m", "compileall", "-q", str(REPO / "src" / "medsentry")],
                       check=False, stdout=subprocess.DEVNULL)


def interpreter() -> str:
    """The Python of medsentry's venv: how it was built matters (pyenv's default build, without PGO and
    with a shared libpython, ran the analysis ~10 % slower than Debian's python3.11)."""
    probe = "import sys; print(sys.version.split()[0], 'from', sys.base_prefix)"
    out = subprocess.run([str(REPO / ".venv/bin/python"), "-c", probe], capture_output=True, text=True)
    return f"Python {out.stdout.strip()}" if out.returncode == 0 else "an unknown Python"


def prefix_capture(capture: Path, num: int, den: int, total: int) -> Path:
    """The first num/den of the packets, made once next to the capture."""
    if num == den:
        return capture
    part = capture.with_name(f"{capture.stem}-{num}of{den}{capture.suffix}")
    want = total * num // den
    if not part.exists() or packet_count(part) != want:
        subprocess.run(["editcap", "-F", "pcap", "-r", str(capture), str(part), f"1-{want}"], check=True)
    return part


def session_pss_kb(sid: int) -> int:
    """PSS of every process whose session is sid (the run is started in a new session)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            # fields after "(comm)": state ppid pgrp session; comm may contain spaces
            if int(stat.rsplit(")", 1)[1].split()[3]) != sid:
                continue
            for line in Path(entry.path, "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except (OSError, IndexError, ValueError):
            continue  # the process ended while being read
    return total


def measure(result: Result, cmd: list[str], log: Path, timeout: float) -> str:
    """Run cmd, fill the timing/memory fields of result, return its output (stdout+stderr)."""
    # /usr/bin/time reports the max RSS: rusage read here would include this script's own RSS,
    # which a forked child carries up to its exec
    rss_file = log.with_suffix(".maxrss")
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    peak_kb = 0
    failure = ""
    next_pss = start
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            failure = f"timeout after {timeout:.0f} s"
            break
        if time.perf_counter() >= next_pss:
            peak_kb = max(peak_kb, session_pss_kb(proc.pid))
            next_pss = time.perf_counter() + PSS_EVERY_S
        time.sleep(POLL_S)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, tell Popen
    output = log.read_text(errors="replace")
    if not failure and proc.returncode != 0:
        failure = f"exit {proc.returncode}: " + " ".join(output.strip().splitlines()[-1:])[:120]
    if failure:
        result.note = "; ".join(filter(None, [result.note, failure]))
        return output
    result.wall_s = wall
    result.cpu_s = usage.ru_utime + usage.ru_stime
    result.max_rss_mb = int(rss_file.read_text().split()[-1]) / 1024
    result.peak_pss_mb = peak_kb / 1024
    return output


def first_int(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


def run_tool(tool: str, capture: Path, packets: int, args: argparse.Namespace, workers: int = 1) -> Result:
    result = Result(tool, capture, packets)
    log = args.workdir / f"{tool}-w{workers}-{capture.stem}.log"
    if tool == "tshark":
        out = measure(result, ["tshark", "-r", str(capture), "-q", "-z", "conv,tcp", "-z", "conv,udp"],
                      log, args.timeout)
        result.flows = out.count("<->") or None
    elif tool == "ndpi":
        out = measure(result, ["ndpiReader", "-i", str(capture)], log, args.timeout)
        result.flows = first_int(r"Unique flows:\s+(\d+)", out)
    elif tool == "nfstream":
        out = measure(result, [args.nfstream_python, "-c", NFSTREAM_SNIPPET, str(capture)], log, args.timeout)
        result.flows = first_int(r"flows (\d+)", out)
        meters = first_int(r"n_meters (\d+)", out)
        if meters is not None and not result.note:
            result.note = f"{meters} meter process(es)"
    else:
        json_path = args.workdir / f"medsentry-{capture.stem}.json"
        cmd = shlex.split(args.medsentry_cmd.format(capture=capture, json=json_path))
        cmd += ["--workers", str(workers)]
        result.tool = args.label
        if tool == "medsentry-nodetect":
            cmd.append("--no-detect")
            result.tool = f"{args.label} --no-detect"
        result.note = f"--workers {workers}"
        out = measure(result, cmd, log, args.timeout)
        result.flows = first_int(r"flows (\d+)", out)
        if result.wall_s is None:
            print(f"medsentry skipped ({result.note}); command: {shlex.join(cmd)}; log: {log}",
                  file=sys.stderr)
    return result


def fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[Result]) -> str:
    ours = {r.capture: r.pps for r in results if r.tool.startswith("medsentry") and r.note == "--workers 1"
            and r.pps and not r.tool.endswith("--no-detect")}
    lines = [
        "| tool | capture | packets | wall s | CPU s | packets/s | max RSS MB | peak PSS MB (all procs) "
        "| flows | medsentry speed-up | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        ratio = f"{ours[r.capture] / r.pps:.2f}x" if r.capture in ours and r.pps else "-"
        lines.append(
            f"| {r.tool} | {r.capture.name} | {r.packets:,} | {fmt(r.wall_s, '.1f')} | {fmt(r.cpu_s, '.1f')} "
            f"| {fmt(r.pps, ',.0f')} | {fmt(r.max_rss_mb, ',.0f')} | {fmt(r.peak_pss_mb, ',.0f')} "
            f"| {fmt(r.flows, ',')} "
            f"| {ratio} | {r.note} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("capture", nargs="?", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--medsentry-cmd", default=DEFAULT_MEDSENTRY,
                    help="command template with {capture} and {json} (default: %(default)s)")
    ap.add_argument("--workers", default="1", help="comma-separated medsentry --workers values (default: 1)")
    ap.add_argument("--label", default="medsentry", help="name of the medsentry rows (default: %(default)s)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool and capture; the fastest is kept")
    ap.add_argument("--nfstream-python", default=DEFAULT_NFSTREAM_PYTHON,
                    help="python of the venv holding nfstream (default: %(default)s)")
    ap.add_argument("--sizes", action="store_true", help="also run on the first 1/4 and 1/2 of the capture")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run (default: %(default)s)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/medsentry-bench"),
                    help="tool outputs and logs (default: %(default)s)")
    args = ap.parse_args()
    tools = args.tools.split(",")
    if unknown := set(tools) - set(TOOLS):
        ap.error(f"unknown tools: {', '.join(sorted(unknown))}")
    args.workdir.mkdir(parents=True, exist_ok=True)

    byte_compile()
    total = packet_count(args.capture)
    captures = [(prefix_capture(args.capture, n, d, total), total * n // d)
                for n, d in (FRACTIONS if args.sizes else FRACTIONS[-1:])]
    results = []
    for capture, packets in captures:
        warm_page_cache(capture)
        for tool in tools:
            for workers in [int(w) for w in args.workers.split(",")] if tool == "medsentry" else [1]:
                runs = []
                for i in range(args.repeat):
                    print(f"running {tool} (workers {workers}, run {i + 1}) on {capture.name} ({packets:,} "
                          f"packets), load {os.getloadavg()[0]:.2f}...", file=sys.stderr, flush=True)
                    warm_page_cache(capture)  # again: the kernel may have reclaimed some during the last run
                    runs.append(run_tool(tool, capture, packets, args, workers))
                    print(table(runs[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
                done = [r for r in runs if r.wall_s is not None]
                results.append(min(done, key=lambda r: r.wall_s or 0) if done else runs[-1])
    compiled = any((REPO / "src" / "medsentry").glob("pipeline.*.so"))  # setup.py: mypyc unless pure
    print(f"load average after the runs: {os.getloadavg()[0]:.2f} (2 cores; best of {args.repeat}); "
          f"medsentry {'compiled by mypyc' if compiled else 'pure Python (MEDSENTRY_PURE_PYTHON)'}, "
          f"on {interpreter()}")
    print(table(results))


if __name__ == "__main__":
    main()
