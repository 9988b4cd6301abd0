#!/usr/bin/env python3
"""Vulnerability matching at NVD scale: `medsentry vulns sbom` against cve-bin-tool 3.4, same records,
same SBOM, same run.

1. The store: N (default 300,000) re-identified copies of the shared NVD records (`make_vuln_store.py`,
   reused when built); its size is printed.
2. The SBOM: a CycloneDX 1.5 JSON of 1,000 components, `--hits` of them named after (vendor, product)
   pairs the store indexes (CPE + purl + supplier, a version taken from the indexed constraints so some
   are inside a vulnerable range and some not), the rest names no record holds.
3. medsentry: the CLI (`medsentry vulns sbom --max-age 0 --json`, a fresh process: interpreter start,
   parse, scan, triage, output), `--repeat` times; then in-process parse and scan timed apart.
4. cve-bin-tool 3.4 (`--offline -u never --sbom cyclonedx`), its cache filled with the same N records
   (`cve_bin_tool_scaled.py`), same SBOM: ratio = its time / ours.
5. One day of NVD changes: `--day` records re-issued with a new lastModified, imported into the store; then
   `--day` others whose configurations changed too (a re-analysis).

Usage: bench/bench_vulns.py [--records N] [--hits 700] [--repeat 3] [--day 2000] [--cold] [--no-cbt]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_vuln_store import DEFAULT_OUT, SHARED_NVD, Records, build, write_pages

from medsentry.vulns.feeds import import_path
from medsentry.vulns.sbom import read_sbom
from medsentry.vulns.scan import scan_sbom
from medsentry.vulns.store import VulnStore
from medsentry.vulns.triage import apply_triage, load_triage

REPO = Path(__file__).resolve().parents[1]
CBT_PYTHON = Path("/work/cbt-venv/bin/python")
MEDSENTRY = REPO / ".venv" / "bin" / "medsentry"


def _version(constraints: list[list[str | None]]) -> str:
    """A version for the component: an exact listed one, an end bound, or the start of the range."""
    ver, _update, start_incl, _start_excl, end_incl, end_excl = constraints[0]
    if ver not in ("*", "-", "", None):
        return str(ver).replace("\\", "")
    return str(end_incl or start_incl or end_excl or "1.0")


def make_sbom(db: Path, path: Path, total: int, hits: int, seed: int = 7) -> None:
    with sqlite3.connect(db) as conn:
        pairs = sorted(
            conn.execute(
                "SELECT DISTINCT vendor, product FROM products WHERE origin = 'cpe' AND vendor != ''"
            )
        )
        chosen = random.Random(seed).sample(pairs, hits)
        components = []
        for n, (vendor, product) in enumerate(chosen):
            row = conn.execute(
                "SELECT versions FROM products WHERE vendor = ? AND product = ? AND origin = 'cpe' LIMIT 1",
                (vendor, product),
            ).fetchone()
            version = _version(json.loads(row[0]))
            components.append(
                {
                    "type": "library",
                    "bom-ref": f"hit-{n}",
                    "supplier": {"name": vendor},
                    "name": product,
                    "version": version,
                    "cpe": f"cpe:2.3:a:{vendor}:{product}:{version}:*:*:*:*:*:*:*",
                    "purl": f"pkg:generic/{vendor}/{product}@{version}",
                }
            )
    for n in range(total - hits):
        comp = {
            "type": "library",
            "bom-ref": f"miss-{n}",
            "name": f"quiet-lib-{n}",
            "version": f"{n % 7}.{n % 11}.{n % 5}",
            "purl": f"pkg:npm/quiet-lib-{n}@{n % 7}.{n % 11}.{n % 5}",
        }
        if n % 2:
            comp["cpe"] = f"cpe:2.3:a:quiet_vendor_{n}:quiet_lib_{n}:{comp['version']}:*:*:*:*:*:*:*"
        components.append(comp)
    random.Random(seed).shuffle(components)
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "version": 1,
        "metadata": {
            "component": {"type": "device", "bom-ref": "root", "name": "bench-device", "version": "1"}
        },
        "components": components,
    }
    path.write_text(json.dumps(doc, indent=1), "utf-8")


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def run_cli(db: Path, sbom: Path, out: Path) -> float:
    """`--json -`: the machine-readable path, as cve-bin-tool's `-f json` is. With `--json FILE` the CLI
    also renders the findings as a terminal table, ~2.5 s more for 700 findings."""
    started = time.perf_counter()
    with out.open("wb") as sink:
        subprocess.run(
            [
                str(MEDSENTRY),
                "vulns",
                "sbom",
                str(sbom),
                "--vuln-db",
                str(db),
                "--max-age",
                "0",
                "--json",
                "-",
            ],
            check=True,
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )
    return time.perf_counter() - started


def run_cbt(home: Path, sbom: Path, out: Path, timeout: float) -> float | None:
    """Seconds, or None when it had not finished after `timeout` (it is stopped then)."""
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        subprocess.run(
            [
                str(CBT_PYTHON.parent / "cve-bin-tool"),
                "--offline",
                "-u",
                "never",
                "--sbom",
                "cyclonedx",
                "--sbom-file",
                str(sbom),
                "-f",
                "json",
                "-o",
                str(out),
            ],
            capture_output=True,
            env={**os.environ, "HOME": str(home)},
            timeout=timeout,
        )  # exits 1 when it found CVEs: not checked
    except subprocess.TimeoutExpired:
        return None
    seconds = time.perf_counter() - started
    if not out.exists():
        raise RuntimeError("cve-bin-tool wrote no report")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--components", type=int, default=1000)
    ap.add_argument("--hits", type=int, default=700)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--day", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--cold", action="store_true", help="drop the page cache before the first CLI run")
    ap.add_argument("--no-cbt", action="store_true")
    ap.add_argument("--cbt-timeout", type=float, default=600.0, help="stop cve-bin-tool after this")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} cpus", flush=True)

    db = build(args.records, args.out)
    with VulnStore(db) as store:
        size = store.size_bytes()
        nvd = store.feed_status()["nvd"].records
    print(
        f"store: {nvd} NVD records, {size / 1e6:.0f} MB (file {db.stat().st_size / 1e6:.0f} MB)", flush=True
    )

    sbom = args.out / f"sbom-{args.components}.cdx.json"
    make_sbom(db, sbom, args.components, args.hits)
    out = args.out / "medsentry-findings.json"

    cold = None
    if args.cold:
        cold = run_cli(db, sbom, out) if drop_caches() else None
        print(f"CLI cold: {cold:.2f} s" if cold is not None else "CLI cold: cannot drop caches", flush=True)
    cli = [run_cli(db, sbom, out) for _ in range(args.repeat)]
    findings = json.loads(out.read_text("utf-8"))
    found = findings["findings"] if isinstance(findings, dict) else findings
    statuses: dict[str, int] = {}
    for f in found:
        statuses[f["status"]] = statuses.get(f["status"], 0) + 1
    print(
        f"CLI `medsentry vulns sbom` ({args.components} components): "
        f"{', '.join(f'{s:.2f}' for s in cli)} s, median {statistics.median(cli):.2f}; findings {statuses}",
        flush=True,
    )

    started = time.perf_counter()
    parsed = read_sbom(sbom)
    t_parse = time.perf_counter() - started
    with VulnStore(db) as store:
        started = time.perf_counter()
        result = scan_sbom(store, parsed, load_triage(store), max_age=None)
        t_scan = time.perf_counter() - started
        started = time.perf_counter()
        apply_triage(store, result.findings)
        t_triage = time.perf_counter() - started
    hit_refs = {f.subject["ref"] for f in result.findings}
    print(
        f"in-process: parse {t_parse:.2f} s, scan {t_scan:.2f} s, triage {t_triage:.2f} s; "
        f"{len(result.findings)} findings on {len(hit_refs)} components",
        flush=True,
    )

    ratio = None
    if not args.no_cbt and CBT_PYTHON.exists():
        home = args.out / "cbt-home"
        cache = home / ".cache" / "cve-bin-tool" / "cve.db"
        marker = home / f"records-{args.records}"
        if not marker.exists():
            for old in home.glob("records-*"):
                old.unlink()
            cache.unlink(missing_ok=True)
            filled = subprocess.run(
                [
                    str(CBT_PYTHON),
                    str(Path(__file__).with_name("cve_bin_tool_scaled.py")),
                    str(home),
                    str(args.records),
                    str(SHARED_NVD),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            marker.write_text(filled.stdout)
        summary = json.loads(marker.read_text().strip().splitlines()[-1])
        print(
            f"cve-bin-tool cache: {summary['ingested']} of {summary['records']} records "
            f"({summary['ranges']} ranges; its parser rejects {len(summary['failed_shared'])} shared "
            f"records without CVSS, and their copies), {cache.stat().st_size / 1e6:.0f} MB",
            flush=True,
        )
        cbt_out = args.out / "cbt-out.json"
        # one run: it takes minutes per SBOM at this size (a full cve_range scan per product)
        cbt = run_cbt(home, sbom, cbt_out, args.cbt_timeout)
        if cbt is None:
            ratio = args.cbt_timeout / statistics.median(cli)
            print(f"cve-bin-tool 3.4: not finished after {args.cbt_timeout:.0f} s (stopped)", flush=True)
            print(f"ratio cve-bin-tool / medsentry CLI (median): > {ratio:.0f}x", flush=True)
        else:
            rows = json.loads(cbt_out.read_text("utf-8"))
            ratio = cbt / statistics.median(cli)
            print(f"cve-bin-tool 3.4: {cbt:.2f} s; {len(rows)} CVE rows", flush=True)
            print(f"ratio cve-bin-tool / medsentry CLI (median): {ratio:.1f}x", flush=True)

    # A day of NVD changes is mostly re-issued records (references, CVSS, status) with their configurations
    # as they were; re-analyses change configurations, and then every index row of the record is rewritten.
    records = Records()
    day_dir = args.out / "day"
    for reanalysed in (False, True):
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        picks = sorted(random.Random(stamp).sample(range(args.records), args.day))
        write_pages(records, day_dir, picks, stamp, reanalysed)
        with VulnStore(db) as store:
            started = time.perf_counter()
            summary = import_path(store, day_dir)
            t_day = time.perf_counter() - started
        kind = "configurations changed too" if reanalysed else "configurations as they were"
        print(
            f"one day of changes ({args.day} modified records, {kind}): {t_day:.2f} s, "
            f"{summary.counts.written} written",
            flush=True,
        )
    print(f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
