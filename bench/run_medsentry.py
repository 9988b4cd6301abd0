#!/usr/bin/env python3
"""`medsentry analyze` for the benchmark: the CLI itself, with its inventory in a throw-away database.

    .venv/bin/python bench/run_medsentry.py CAPTURE [--workers N] [--json OUT] [--db DB] [--no-detect]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from medsentry.cli.entry import main as cli


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("capture", type=Path)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--db", type=Path)
    ap.add_argument("--no-detect", action="store_true", help="identification only, no attack detection")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "bench.db"
        argv = ["analyze", str(args.capture), "-q", "--db", str(db), "--workers", str(args.workers)]
        if args.json:
            argv += ["--json", str(args.json)]
        if args.no_detect:
            argv.append("--no-detect")
        try:
            cli(argv, standalone_mode=False)
        except SystemExit as exc:
            return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
