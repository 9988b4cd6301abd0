#!/usr/bin/env python3
"""Did a performance change alter what the pipeline observes?  Runs the reference and the current
pipeline on the same capture and compares everything they emit.

    .venv/bin/python bench/check_observations.py [CAPTURE ...] [--ref COMMIT] [--workers N]

CAPTURE defaults to the shared general-hospital-normal-60s.pcap.  The reference is the working tree
with the pipeline's own files (capture readers, C fast path, flows, pipeline) taken from COMMIT (default
HEAD) and the fast path compiled from that commit's source, so protocol modules that other people are
changing at the same time are the same on both sides.  Compared: the pipeline statistics, observation
counts per (protocol, kind), and every observation with all its fields, sorted (a change of emission
order alone is not a difference).  PHI hashes use a fixed salt here so that they compare.
--workers N runs the current side sharded and puts the shards together as `analyze --workers` does
(by position; each IP's first TTL): the result must equal the reference.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared/data/captures/virtual-hospital/general-hospital-normal-60s.pcap"
OWN_FILES = (
    "src/medsentry/capture/_fastpath.c",
    "src/medsentry/capture/records.py",
    "src/medsentry/capture/files.py",
    "src/medsentry/capture/errors.py",
    "src/medsentry/capture/windows.py",
    "src/medsentry/capture/pcap.py",
    "src/medsentry/capture/pcapng.py",
    "src/medsentry/capture/live.py",
    "src/medsentry/decode/flows.py",
    "src/medsentry/pipeline.py",
    "src/medsentry/decode/streams.py",
    "src/medsentry/observe/__init__.py",
    *sorted(f"src/medsentry/protocols/{p.name}" for p in (REPO / "src/medsentry/protocols").glob("*.py")),
)
STAT_KEYS = ("packets", "bytes", "malformed", "fragments", "unsupported_link", "flows", "flows_evicted",
             "reassembly_gaps", "observations", "malformed_by_protocol")


def summarise(capture: Path, workers: int) -> dict[str, object]:
    from medsentry import privacy
    from medsentry.observe import Observation
    from medsentry.pipeline import Analyzer, Stats, analyze_files, analyze_shares

    privacy.set_salt(b"check-observations")
    obs: list[Observation] = []
    stats = Stats()
    if workers == 1:
        stats = analyze_files([capture], obs.append)
    else:  # put together as `analyze --workers` does
        import multiprocessing
        from types import SimpleNamespace

        from medsentry.analysis import ShardMerge, _as_tuple
        from medsentry.deal import SegmentReader, Shared, dealt, plan

        segments = plan([capture])
        shared = Shared(multiprocessing.get_context("fork"), workers, len(segments), 1)
        shares: list[list[Any]] = [[] for _ in range(workers)]
        SegmentReader(segments, 0, 1, workers, lambda k, share: shares[k].append(share), shared).run()

        def shard(k: int) -> list[tuple[Any, tuple[Any, ...]]]:
            pairs: list[tuple[Any, tuple[Any, ...]]] = []
            an = Analyzer(lambda o: pairs.append((an.position, _as_tuple(o))))
            queue = SimpleNamespace(get=iter(shares[k]).__next__)  # what one reader's queue would give
            stats.merge(analyze_shares(dealt([queue], len(segments)), an))
            return pairs

        merged = ShardMerge([shard(k) for k in range(workers)])
        obs.extend(merged)
        stats.observations -= merged.dropped_ttl
    lines = sorted(
        json.dumps([o.ts, o.protocol, o.kind, o.src_mac, o.src_ip, o.dst_mac, o.dst_ip, o.sport, o.dport,
                    o.transport, o.fields, o.source], sort_keys=True, default=repr)
        for o in obs
    )
    d = stats.to_dict()
    return {"kinds": dict(Counter(f"{o.protocol} {o.kind}" for o in obs)),
            "stats": {k: d.get(k, getattr(stats, k, None)) for k in STAT_KEYS}, "lines": lines}


def reference_tree(ref: str, tmp: Path) -> Path:
    """The working tree's src/ with the pipeline's own files from `ref`, fast path built."""
    src = tmp / "src"
    shutil.copytree(REPO / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for rel in OWN_FILES:
        shown = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:{rel}"], capture_output=True)
        if shown.returncode:  # not at `ref` (capture/files.py was split into pcap, pcapng, ... later)
            (tmp / rel).unlink(missing_ok=True)
            continue
        (tmp / rel).write_bytes(shown.stdout)
    c = tmp / OWN_FILES[0]
    so = c.with_name("_fastpath" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", str(c), "-o",
                    str(so)], check=True)
    return src


def compare(base: dict, now: dict) -> bool:  # type: ignore[type-arg]
    ok = True
    for part in ("kinds", "stats"):
        for key in sorted(set(base[part]) | set(now[part])):
            a, b = base[part].get(key), now[part].get(key)
            if a != b:
                ok = False
                print(f"  {part} {key}: reference {a} now {b}")
    if base["lines"] != now["lines"]:
        ok = False
        gone = sorted(set(base["lines"]) - set(now["lines"]))
        new = sorted(set(now["lines"]) - set(base["lines"]))
        print(f"  observations differ: {len(gone)} only in the reference, {len(new)} only now")
        for lbl, rows in (("-", gone), ("+", new)):
            for r in rows[:5]:
                print(f"  {lbl} {r[:300]}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("captures", nargs="*", type=Path, default=[DEFAULT])
    ap.add_argument("--ref", default="HEAD", help="commit of the reference pipeline (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--dump", type=Path, help=argparse.SUPPRESS)  # used by the reference subprocess
    args = ap.parse_args()
    if args.dump:
        args.dump.write_text(json.dumps(summarise(args.captures[0], 1)))
        return 0
    all_ok = True
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = reference_tree(args.ref, tmp)
        for capture in args.captures:
            out = tmp / "ref.json"
            subprocess.run([sys.executable, __file__, str(capture), "--dump", str(out)], check=True,
                           env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
            base = json.loads(out.read_text())
            now = summarise(capture, args.workers)
            ok = compare(base, now)
            all_ok &= ok
            print(f"{capture.name}: {len(now['lines'])} observations, {now['stats']['packets']} packets, "
                  f"{'SAME as' if ok else 'DIFFERENT from'} reference {args.ref}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
