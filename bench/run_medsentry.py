#!/usr/bin/env python3
"""`medsentry analyze` for the benchmark, also while identification is not there yet.

    .venv/bin/python bench/run_medsentry.py CAPTURE [--workers N] [--json OUT] [--db DB]

When `medsentry.identify.inventory` imports, this is exactly the CLI (`medsentry analyze CAPTURE -q
--json OUT --db DB --workers N`).  When it does not, it runs the same `analysis.run_inputs` path
(reading, flows, dissectors, sharding across workers, observations handed back to the parent) with a
sink in place of the identifier that only counts observations, and says so on stderr.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from medsentry.observe import Observation


class CountingSink:
    """Stands in for `Identifier`: takes every observation, identifies nothing."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()

    def add(self, o: Observation) -> None:
        self.kinds[o.protocol] += 1

    def devices(self) -> list[object]:
        return []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--db", type=Path)
    args = ap.parse_args()
    try:
        import medsentry.identify.inventory  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("medsentry"):
            raise
        from medsentry import analysis

        sink = CountingSink()
        analysis._identifier = lambda fingerprints: sink  # type: ignore[assignment]
        result = analysis.run_inputs([args.capture], workers=args.workers)
        s = result.stats
        print(f"identification: not available ({exc.name} missing), observations counted only",
              file=sys.stderr)
        print(f"packets {s.packets} flows {s.flows} observations {s.observations} by protocol "
              f"{dict(sink.kinds.most_common())}")
        return 0
    from medsentry.cli.main import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.db"
        argv = ["analyze", str(args.capture), "-q", "--db", str(db), "--workers", str(args.workers)]
        if args.json:
            argv += ["--json", str(args.json)]
        print("identification: yes (medsentry analyze CLI)", file=sys.stderr)
        try:
            cli(argv, standalone_mode=False)
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
