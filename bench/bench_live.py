#!/usr/bin/env python3
"""Live capture: how much of a replayed capture ``medsentry analyze -i`` and ndpiReader keep up with.

    sudo bench/bench_live.py [CAPTURE] [--rates 100000,200000,top] [--workers 1,2] [--tools medsentry,ndpi]

CAPTURE (default /work/bench-data/big-1of4.pcap, 519,307 packets) is replayed with tcpreplay into one end
of a veth pair in a network namespace of its own; each tool listens on the other end, one after the other,
with the same replay (``--pps RATE`` or ``--topspeed``). Each is stopped with SIGINT a second after the
replay. Printed per run: the rate tcpreplay reached, packets sent, packets the tool analysed, packets it
missed (sent - analysed: kernel drops, and frames the veth dropped because the CPU was busy), the drops
medsentry itself reports (``stats.capture_dropped``), and the tool's CPU time (user + sys, children
included) per analysed packet. Needs root, iproute2, tcpreplay and /usr/bin/time (bench/setup_peers.sh).

The sender, the kernel and the tools share this machine's cores: on a two-core VM the replay's rate itself
drops when a tool uses both cores (``--workers 2``). Compare tools at one rate, in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CAPTURE = Path("/work/bench-data/big-1of4.pcap")


@dataclass
class Run:
    tool: str
    workers: int
    rate: str
    sent: int = 0
    sent_pps: float = 0.0
    analysed: int = 0
    reported_dropped: int | None = None
    cpu: float = 0.0
    note: str = ""


def sh(*cmd: str, **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]


class Namespace:
    def __init__(self) -> None:
        self.name = f"ms-bench-{uuid.uuid4().hex[:6]}"

    def __enter__(self) -> Namespace:
        sh("ip", "netns", "add", self.name)
        for cmd in (
            ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            ["ip", "link", "add", "tx0", "type", "veth", "peer", "name", "rx0"],
            ["ip", "link", "set", "tx0", "up"],
            ["ip", "link", "set", "rx0", "up"],
        ):
            sh(*self.exec(*cmd))
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)

    def exec(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def packet_sockets(self) -> int:
        return len(sh(*self.exec("cat", "/proc/net/packet")).stdout.splitlines()) - 1


def listen(ns: Namespace, run: Run, capture: Path, tmp: Path) -> None:
    json_out = tmp / "live.json"
    if run.tool == "medsentry":
        cmd = [str(REPO / ".venv/bin/python"), "-m", "medsentry", "analyze", "-i", "rx0", "--no-store", "-q",
               "--json", str(json_out), "--workers", str(run.workers)]  # fmt: skip
        sockets = run.workers
    else:
        cmd = ["ndpiReader", "-i", "rx0", "-s", "3600"]
        sockets = 1
    timing = tmp / "time.txt"
    log = (tmp / "out.txt").open("w")
    # ip netns exec execs the tool: its PID is the listener's, /usr/bin/time's child.
    proc = subprocess.Popen(["/usr/bin/time", "-o", str(timing), "-f", "%U %S", *ns.exec(*cmd)], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    for _ in range(300):
        if ns.packet_sockets() >= sockets:
            break
        time.sleep(0.1)
    time.sleep(1.5)  # a socket is listed before its buffer is set up and it has joined its fanout group
    option = ["--topspeed"] if run.rate == "top" else [f"--pps={run.rate}"]
    replay = sh(*ns.exec("tcpreplay", "-i", "tx0", *option, str(capture))).stdout
    run.sent = int(re.search(r"Actual: (\d+) packets", replay).group(1))  # type: ignore[union-attr]
    run.sent_pps = float(re.search(r"([\d.]+) pps", replay).group(1))  # type: ignore[union-attr]
    time.sleep(1.0)
    listener = int(sh("pgrep", "-P", str(proc.pid)).stdout.split()[0])
    os.kill(listener, signal.SIGINT)
    proc.wait(timeout=600)
    log.close()
    user, system = timing.read_text().split()[-2:]
    run.cpu = float(user) + float(system)
    if run.tool == "medsentry":
        stats = json.loads(json_out.read_text())["stats"]
        run.analysed, run.reported_dropped = stats["packets"], stats["capture_dropped"]
    else:
        m = re.search(r"of (\d+) packets total", (tmp / "out.txt").read_text())
        run.analysed = int(m.group(1)) if m else 0
        run.note = "" if m else "no summary"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("capture", nargs="?", type=Path, default=DEFAULT_CAPTURE)
    ap.add_argument("--rates", default="100000,200000,top", help="packets/s for tcpreplay, or 'top'")
    ap.add_argument("--workers", default="1,2", help="medsentry --workers values")
    ap.add_argument("--tools", default="medsentry,ndpi")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespace, packet sockets)")
    for tool in ("ip", "tcpreplay", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"needs {tool} (bench/setup_peers.sh)")
    tools = args.tools.split(",")
    runs = []
    for rate in args.rates.split(","):
        if "medsentry" in tools:
            runs += [Run("medsentry", int(w), rate) for w in args.workers.split(",")]
        if "ndpi" in tools and shutil.which("ndpiReader"):
            runs.append(Run("ndpiReader", 1, rate))
    print(f"capture {args.capture}; load average {os.getloadavg()[0]:.2f}", flush=True)
    print("| tool | workers | tcpreplay rate | reached pps | sent | analysed | missed | dropped (reported) "
          "| CPU s | CPU µs/packet |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    with Namespace() as ns:
        for run in runs:
            with tempfile.TemporaryDirectory() as tmp:
                listen(ns, run, args.capture, Path(tmp))
            missed = run.sent - run.analysed
            per_packet = run.cpu / run.analysed * 1e6 if run.analysed else float("nan")
            reported = "-" if run.reported_dropped is None else f"{run.reported_dropped:,}"
            share = missed / max(run.sent, 1)
            print(f"| {run.tool} | {run.workers} | {run.rate} | {run.sent_pps:,.0f} | {run.sent:,} | "
                  f"{run.analysed:,} | {missed:,} ({share:.1%}) | {reported} | {run.cpu:.2f} | "
                  f"{per_packet:.1f} |{' ' + run.note if run.note else ''}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
