#!/usr/bin/env python3
"""Fill cve-bin-tool 3.4's cache with the same N re-identified records as `make_vuln_store.py`.

Runs under cve-bin-tool's own interpreter (`/work/cbt-venv`, its pins clash with ours). As in
`scripts/cve_bin_tool_offline.py`, each shared NVD API 2.0 record goes through cve-bin-tool's own
`NVD_Source.format_data_api2` (one at a time: it raises on records without CVSS, those are listed).
Formatting 300k JSON records through it would take longer than the benchmark, so the formatted rows of the
shared records are re-identified exactly as `make_vuln_store.Records.copy` re-identifies the JSON: copy i
of record j = i % R is `CVE-2099-<i:07d>` with CPE products `<product>_k<k>`, k = i // R. Then
`CVEDB.populate_db` writes them, as an update would.

Usage: cve_bin_tool_scaled.py HOME_DIR N NVD_DIR  ->  prints a JSON summary
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from cve_bin_tool.cvedb import CVEDB
from cve_bin_tool.data_sources.nvd_source import NVD_Source


def main(argv: list[str]) -> int:
    home, n, nvd = Path(argv[0]), int(argv[1]), Path(argv[2])
    started = time.perf_counter()
    cache = home / ".cache" / "cve-bin-tool"
    cache.mkdir(parents=True, exist_ok=True)
    items = [json.loads(p.read_text("utf-8")) for p in sorted(nvd.rglob("*.json"))]
    source = NVD_Source()
    formatted: list[tuple[dict, list[dict]] | None] = []
    failed: list[str] = []
    for item in items:
        try:
            sev, aff = source.format_data_api2([item])
        except Exception:  # cve-bin-tool's own bug on records without CVSS
            failed.append(item["cve"]["id"])
            formatted.append(None)
            continue
        formatted.append((sev[0], aff) if sev else None)
    severity: list[dict] = []
    affected: list[dict] = []
    for i in range(n):
        j, k = i % len(items), i // len(items)
        got = formatted[j]
        if got is None:
            continue
        sev, aff = got
        if not k:
            severity.append(dict(sev))
            affected += [dict(a) for a in aff]
            continue
        cve = f"CVE-2099-{i:07d}"
        severity.append({**sev, "ID": cve})
        affected += [{**a, "cve_id": cve, "product": f"{a['product']}_k{k}"} for a in aff]
    db = CVEDB(sources=[], cachedir=str(cache))
    db.init_database()
    db.data = [((severity, affected), "NVD")]
    db.populate_db()
    print(
        json.dumps(
            {
                "records": n,
                "ingested": len(severity),
                "ranges": len(affected),
                "failed_shared": failed,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
