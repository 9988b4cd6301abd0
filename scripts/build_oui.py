"""Build medsentry's packaged OUI table from the IEEE registration authority CSV exports.

Input: a folder with MA-L `oui.csv` (24-bit prefixes), MA-M `mam.csv` (28-bit), MA-S `oui36.csv`
(36-bit) and IAB `iab.csv` (36-bit, the predecessor of MA-S), each with the IEEE's columns
`Registry,Assignment,Organization Name,Organization Address`.

Output: `src/medsentry/data/oui.tsv`, one line per assignment, `prefix<TAB>organisation`, sorted, with
prefixes as 6, 7 or 9 lower-case hex digits (the prefix length says the block size); addresses are
dropped. Sorted lines are the lookup table itself: `identify.oui` bisects them (as bytes), where building
a dict of the 46,000 prefixes took 20 ms of every analysis. Uncompressed (1.4 MB): every analysis reads
the table, and unpacking it (gzip, 490 KB) and decoding all of it cost 15-25 ms.

Usage: python scripts/build_oui.py [IEEE_DIR] [OUT]
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

REGISTRIES = {"oui.csv": 6, "mam.csv": 7, "oui36.csv": 9, "iab.csv": 9}
REPO = Path(__file__).resolve().parents[1]
DEFAULT_IN = REPO.parent / "shared" / "data" / "devices" / "ieee-oui"
DEFAULT_OUT = REPO / "src" / "medsentry" / "data" / "oui.tsv"


def read_registry(folder: Path) -> dict[str, list[str]]:
    by_org: dict[str, list[str]] = defaultdict(list)
    for name, digits in REGISTRIES.items():
        with open(folder / name, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                prefix = row["Assignment"].strip().upper()
                if len(prefix) != digits or any(c not in "0123456789ABCDEF" for c in prefix):
                    raise ValueError(f"{name}: bad assignment {prefix!r}")
                # Tabs/newlines in an organisation name would break the line format.
                org = " ".join(row["Organization Name"].split())
                by_org[org].append(prefix)
    return by_org


def main(argv: list[str]) -> None:
    src = Path(argv[1]) if len(argv) > 1 else DEFAULT_IN
    out = Path(argv[2]) if len(argv) > 2 else DEFAULT_OUT
    by_org = read_registry(src)
    # The IEEE lists a few MA-L assignments twice (0001C8, 080030: three owners): one line each, the owner
    # last by name, as when this table was a dict filled in name order.
    owner = {prefix.lower(): org for org, prefixes in sorted(by_org.items()) for prefix in prefixes}
    text = "".join(f"{prefix}\t{org}\n" for prefix, org in sorted(owner.items()))
    out.write_bytes(text.encode("utf-8"))
    total = len(owner)
    print(f"{out}: {total} prefixes, {len(by_org)} organisations, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv)
