#!/usr/bin/env python3
"""Did a performance change alter the ORDER in which the pipeline emits observations?

    .venv/bin/python bench/check_order.py [CAPTURE ...] [--ref COMMIT] [--batch N]

`check_observations.py` compares sorted observations, so a change of emission order passes it. Order
matters downstream: detection's windows, rate limits and "who was first" see observations in emission
order (identification does not depend on it since the sixth pass). This runs the reference pipeline (the
same reference tree as check_observations.py, default HEAD) and the current one and compares the sequences
as emitted;
--batch sets the records per batch on both sides (small batches exercise state kept across batches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_observations as co


def sequence(capture: Path, batch: int) -> list[str]:
    from medsentry import privacy
    from medsentry.capture import files, records
    from medsentry.pipeline import analyze_files

    for module in (files, records):  # BATCH moved from files to records (0fef399); a reference may predate it
        if hasattr(module, "BATCH"):
            module.BATCH = batch  # type: ignore[attr-defined]
    privacy.set_salt(b"check-order")
    out: list[str] = []
    analyze_files([capture], lambda o: out.append(json.dumps(
        [o.ts, o.protocol, o.kind, o.src_mac, o.src_ip, o.dst_mac, o.dst_ip, o.sport, o.dport, o.transport,
         o.fields], sort_keys=True, default=repr)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("captures", nargs="*", type=Path, default=[co.DEFAULT])
    ap.add_argument("--ref", default="HEAD")
    ap.add_argument("--batch", type=int, default=1 << 16)
    args = ap.parse_args()
    if dump := os.environ.get("CHECK_ORDER_DUMP"):
        Path(dump).write_text(json.dumps(sequence(args.captures[0], args.batch)))
        return 0
    ok = True
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = co.reference_tree(args.ref, tmp)
        for capture in args.captures:
            out = tmp / "ref.json"
            env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "CHECK_ORDER_DUMP": str(out)}
            cmd = [sys.executable, __file__, str(capture), "--batch", str(args.batch)]
            subprocess.run(cmd, check=True, env=env)
            base, now = json.loads(out.read_text()), sequence(capture, args.batch)
            first = next((i for i, (a, b) in enumerate(zip(base, now, strict=False)) if a != b), None)
            if base == now:
                print(f"{capture.name}: {len(now)} observations, SAME ORDER as reference {args.ref}")
                continue
            ok = False
            print(f"{capture.name}: DIFFERENT from {args.ref} ({len(base)} / {len(now)} observations)")
            if first is not None:
                print(f"  first difference at {first}:\n  - {base[first][:300]}\n  + {now[first][:300]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
