#!/usr/bin/env python3
"""Build (or reuse) the scaled vulnerability store for `bench_vulns.py`: N NVD CVE API 2.0 records made
from the shared NVD records (`shared/data/vulns/nvd`, recursive) by re-identification.

Copy i of shared record j = i % R (R records, sorted by path) gets id `CVE-2099-<i:07d>` and, for k =
i // R > 0, every CPE product `<product>_k<k>` and every CNA product/packageName `<name> k<k>`: the copies
spread over distinct product index keys like real NVD does instead of piling 1,500 CVEs on one product.
The first R copies are the real records unchanged. The same mapping is used for cve-bin-tool's cache
(`cve_bin_tool_scaled.py`), so both tools see the same records.

Usage: make_vuln_store.py [--records N] [--out DIR] [--force]  ->  DIR/scaled.db (reused when it already
holds N NVD records)
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from medsentry.vulns.feeds import import_path
from medsentry.vulns.store import VulnStore

REPO = Path(__file__).resolve().parents[1]
SHARED_NVD = REPO.parent / "shared" / "data" / "vulns" / "nvd"
DEFAULT_OUT = REPO.parent / "bench-data" / "vbench"
PAGE = 2000
_CPE = re.compile(r'(cpe:2\.3:[aho]:[^:"]+:[^:"]+|cpe:/[aho]:[^:"]+:[^:"]+)')
_CNA = re.compile(r'"(product|packageName)": "([^"]*)"')


class Records:
    """The shared records as compact JSON text, and their re-identified copies."""

    def __init__(self, nvd: Path = SHARED_NVD) -> None:
        files = sorted(nvd.rglob("*.json"))
        self.texts = [json.dumps(json.loads(p.read_text("utf-8"))) for p in files]
        self.ids = [json.loads(t)["cve"]["id"] for t in self.texts]

    def __len__(self) -> int:
        return len(self.texts)

    def copy(self, i: int, modified: str | None = None, reanalysed: bool = False) -> str:
        """Record copy `i`; `modified` re-issues it with that lastModified, and `reanalysed` also changes
        its configurations (every matchCriteriaId gets the time stamp), as an NVD re-analysis does."""
        j, k = i % len(self.texts), i // len(self.texts)
        s = self.texts[j]
        if k:
            s = s.replace(self.ids[j], f"CVE-2099-{i:07d}")
            s = _CPE.sub(lambda m: f"{m.group(1)}_k{k}", s)
            s = _CNA.sub(lambda m: f'"{m.group(1)}": "{m.group(2)} k{k}"', s)
        if modified:
            s = re.sub(r'"lastModified": "[^"]*"', f'"lastModified": "{modified}"', s, count=1)
            if reanalysed:
                s = s.replace('"matchCriteriaId": "', f'"matchCriteriaId": "{modified}-')
        return s

    def pages(
        self, indices: list[int], modified: str | None = None, reanalysed: bool = False
    ) -> Iterator[str]:
        for n in range(0, len(indices), PAGE):
            chunk = indices[n : n + PAGE]
            body = ",".join(self.copy(i, modified, reanalysed) for i in chunk)
            yield f'{{"totalResults": {len(chunk)}, "vulnerabilities": [{body}]}}'


def write_pages(
    records: Records, folder: Path, indices: list[int], modified: str | None = None, reanalysed: bool = False
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("page-*.json"):
        old.unlink()
    for n, text in enumerate(records.pages(indices, modified, reanalysed)):
        (folder / f"page-{n:04d}.json").write_text(text, "utf-8")


def nvd_count(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM vulnerabilities WHERE source = 'nvd'").fetchone()[0]
        except sqlite3.Error:
            return 0


def build(n: int, out: Path, force: bool = False) -> Path:
    db = out / "scaled.db"
    if not force and nvd_count(db) == n:
        print(f"reusing {db} ({n} records)", flush=True)
        return db
    for old in out.glob("scaled.db*"):
        old.unlink()
    records = Records()
    started = time.perf_counter()
    store = VulnStore(db)
    pages = out / "pages"
    # a page set at a time keeps the generated JSON (several GB for 300k) off the disk all at once
    step = 50 * PAGE
    for start in range(0, n, step):
        write_pages(records, pages, list(range(start, min(n, start + step))))
        summary = import_path(store, pages)
        print(f"  {min(n, start + step)} records, {summary.counts.written} written", flush=True)
    for old in pages.glob("page-*.json"):
        old.unlink()
    store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    print(f"built {db} with {n} records in {time.perf_counter() - started:.0f} s", flush=True)
    return db


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--force", action="store_true", help="rebuild even when a store of that size exists")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    build(args.records, args.out, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
