#!/usr/bin/env python3
"""Build cve-bin-tool's CVE cache from local NVD CVE API 2.0 records, so it can scan offline.

Runs under cve-bin-tool's own interpreter (a separate venv: its pins clash with ours), called by
`eval_sbom_narrow.py`. cve-bin-tool 3.4 has no "import these NVD JSON files" option: `--offline -u never`
only stops it from downloading, `-n json-nvd` downloads NVD's yearly feeds and `--import-json` wants its
own signed export. So the cache (`$HOME/.cache/cve-bin-tool/cve.db`) is filled the way its NVD source
fills it during an update -- `NVD_Source.format_data_api2` on the API 2.0 items, then
`CVEDB.populate_db` -- and the scan then runs with `HOME` pointing at that cache.

cve-bin-tool 3.4's `format_data_api2` raises (`self.logger` does not exist) on a record without a CVSS
score, which takes down the whole batch; records are therefore formatted one at a time and those it
cannot ingest are listed in the output. Of the shared records one (CVE-2004-0377) has a configuration;
the others have none, which cve-bin-tool could not match anyway (it reads configurations only). None of
them is a known answer for the SBOM.

Usage: cve_bin_tool_offline.py HOME_DIR NVD_DIR... -> prints a JSON summary
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cve_bin_tool.cvedb import CVEDB
from cve_bin_tool.data_sources.nvd_source import NVD_Source


def main(argv: list[str]) -> int:
    home, dirs = Path(argv[0]), [Path(d) for d in argv[1:]]
    cache = home / ".cache" / "cve-bin-tool"
    cache.mkdir(parents=True, exist_ok=True)
    items = [json.loads(p.read_text("utf-8")) for d in dirs for p in sorted(d.glob("*.json"))]
    db = CVEDB(sources=[], cachedir=str(cache))
    db.init_database()
    source = NVD_Source()
    severity: list[dict[str, object]] = []
    affected: list[dict[str, object]] = []
    failed: list[list[str]] = []
    for item in items:
        try:
            sev, aff = source.format_data_api2([item])
        except Exception as exc:  # cve-bin-tool's own bug, reported per record
            failed.append([item["cve"]["id"], f"{type(exc).__name__}: {exc}"])
            continue
        severity += sev
        affected += aff
    db.data = [((severity, affected), "NVD")]
    db.populate_db()
    print(
        json.dumps(
            {"records": len(items), "ingested": len(severity), "ranges": len(affected), "failed": failed}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
