#!/usr/bin/env python3
"""Known answers for the real medical-device SBOM, medsentry and cve-bin-tool 3.4 side by side.

Both tools get the same records: the NVD CVE API 2.0 items of `shared/data/vulns/nvd/` and
`nvd/unanalyzed/` (`--cve5` adds the CVE 5 records to medsentry only). medsentry imports them into a
temporary store and runs `vulns.scan.scan_sbom`; cve-bin-tool runs offline (`--offline -u never`) on a
cache built from the same items (`cve_bin_tool_offline.py`, in cve-bin-tool's own venv) and scans the SBOM
with `--sbom cyclonedx`. Scored against `medical-device-narrow.expected.json`:
* affected: must be reported as affected;
* candidates: must be surfaced (medsentry: status under_investigation) but not as affected;
* not_affected (traps): must not be reported as affected;
* any affected finding on a component the file lists no vulnerability for is a false positive.

Usage: scripts/eval_sbom_narrow.py [--shared DIR] [--cbt-python PY] [--no-cbt] [--cve5] [--markdown FILE]
Exit status 1 when medsentry misses a known answer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from medsentry.vulns.feeds import import_path
from medsentry.vulns.sbom import read_sbom
from medsentry.vulns.scan import ScanResult, scan_sbom
from medsentry.vulns.store import VulnStore

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"
DEFAULT_CBT = Path("/work/cbt-venv/bin/python")


@dataclass
class Score:
    tool: str
    affected_found: list[str] = field(default_factory=list)
    affected_missed: list[str] = field(default_factory=list)
    candidates_surfaced: list[str] = field(default_factory=list)  # reported, not as affected
    candidates_as_affected: list[str] = field(default_factory=list)
    candidates_dropped: list[str] = field(default_factory=list)
    traps_reported: list[str] = field(default_factory=list)
    extra_affected: list[str] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""


def score(
    tool: str, expected: dict[str, dict], affected: dict[str, set[str]], reported: dict[str, set[str]]
) -> Score:
    """`affected`/`reported`: component ref -> CVE ids called affected / reported in any status."""
    s = Score(tool)
    for ref, want in expected.items():
        got_aff, got_any = affected.get(ref, set()), reported.get(ref, set())
        label = want["name"]
        for cve in want["affected"]:
            (s.affected_found if cve in got_aff else s.affected_missed).append(f"{label} {cve}")
        for cve in want["candidates"]:
            if cve in got_aff:
                s.candidates_as_affected.append(f"{label} {cve}")
            elif cve in got_any:
                s.candidates_surfaced.append(f"{label} {cve}")
            else:
                s.candidates_dropped.append(f"{label} {cve}")
        s.traps_reported += [f"{label} {cve}" for cve in want["not_affected"] if cve in got_aff]
        known = set(want["affected"]) | set(want["candidates"]) | set(want["not_affected"])
        s.extra_affected += [f"{label} {cve}" for cve in sorted(got_aff - known)]
    for ref, cves in affected.items():
        if ref not in expected:
            s.extra_affected += [f"{ref} {cve}" for cve in sorted(cves)]
    return s


def run_medsentry(shared: Path, sbom_path: Path, cve5: bool) -> tuple[ScanResult, float, Path]:
    tmp = Path(tempfile.mkdtemp(prefix="medsentry-narrow-"))
    store = VulnStore(tmp / "vulns.db")
    import_path(store, shared / "vulns" / "nvd")  # recursive: nvd/unanalyzed too
    if cve5:
        import_path(store, shared / "vulns" / "cve5")
    sbom = read_sbom(sbom_path)
    started = time.perf_counter()
    result = scan_sbom(store, sbom, max_age=None)  # a fixed snapshot: its age is deliberate
    return result, time.perf_counter() - started, tmp


def run_cve_bin_tool(cbt_python: Path, shared: Path, sbom_path: Path) -> tuple[list[dict], dict, float]:
    home = Path(tempfile.mkdtemp(prefix="cbt-home-"))
    nvd = shared / "vulns" / "nvd"
    built = subprocess.run(
        [
            str(cbt_python),
            str(REPO / "scripts" / "cve_bin_tool_offline.py"),
            str(home),
            str(nvd),
            str(nvd / "unanalyzed"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(built.stdout.strip().splitlines()[-1])
    out = home / "out.json"
    started = time.perf_counter()
    subprocess.run(
        [
            str(cbt_python.parent / "cve-bin-tool"),
            "--offline",
            "-u",
            "never",
            "--sbom",
            "cyclonedx",
            "--sbom-file",
            str(sbom_path),
            "-f",
            "json",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
    )  # exits 1 when it found CVEs: not checked
    seconds = time.perf_counter() - started
    if not out.exists():
        raise RuntimeError("cve-bin-tool wrote no report")
    return json.loads(out.read_text("utf-8")), summary, seconds


def _cbt_by_ref(rows: list[dict], expected: dict[str, dict], sbom_path: Path) -> dict[str, set[str]]:
    """cve-bin-tool reports vendor/product/version, not the component: map back by product and version."""
    sbom = read_sbom(sbom_path)
    out: dict[str, set[str]] = {}
    for row in rows:
        for comp in sbom.components:
            names = {comp.name.lower()} | {c.split(":")[4] for c in comp.cpes}
            if row["product"].lower() in names and row["version"] == comp.version:
                out.setdefault(comp.ref, set()).add(row["cve_number"])
                break
        else:
            out.setdefault(f"{row['vendor']}:{row['product']}@{row['version']}", set()).add(row["cve_number"])
    return out


def table(scores: list[Score], expected: dict[str, dict]) -> list[str]:
    n_aff = sum(len(w["affected"]) for w in expected.values())
    n_cand = sum(len(w["candidates"]) for w in expected.values())
    n_trap = sum(len(w["not_affected"]) for w in expected.values())
    lines = [
        "| | " + " | ".join(s.tool for s in scores) + " |",
        "|---|" + "---:|" * len(scores),
        f"| affected found (of {n_aff}) | " + " | ".join(str(len(s.affected_found)) for s in scores) + " |",
        f"| candidates surfaced, not as affected (of {n_cand}) | "
        + " | ".join(str(len(s.candidates_surfaced)) for s in scores)
        + " |",
        "| candidates called affected | "
        + " | ".join(str(len(s.candidates_as_affected)) for s in scores)
        + " |",
        f"| traps reported as affected (of {n_trap}) | "
        + " | ".join(str(len(s.traps_reported)) for s in scores)
        + " |",
        "| other affected findings | " + " | ".join(str(len(s.extra_affected)) for s in scores) + " |",
        "| scan time (s) | " + " | ".join(f"{s.seconds:.2f}" for s in scores) + " |",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--cbt-python", type=Path, default=DEFAULT_CBT)
    ap.add_argument("--no-cbt", action="store_true")
    ap.add_argument("--cve5", action="store_true", help="also import CVE 5 records (medsentry only)")
    ap.add_argument("--markdown", type=Path, help="write the table here")
    args = ap.parse_args(argv)
    sbom_path = args.shared / "sbom" / "medical-device-narrow.cdx.json"
    expected = json.loads((args.shared / "sbom" / "medical-device-narrow.expected.json").read_text())[
        "components"
    ]

    result, seconds, _ = run_medsentry(args.shared, sbom_path, args.cve5)
    ours_aff: dict[str, set[str]] = {}
    ours_any: dict[str, set[str]] = {}
    for f in result.findings:
        ref = f.subject["ref"]
        ours_any.setdefault(ref, set()).add(f.vulnerability)
        if f.status == "affected":
            ours_aff.setdefault(ref, set()).add(f.vulnerability)
    ours = score("medsentry", expected, ours_aff, ours_any)
    ours.seconds = seconds
    scores = [ours]

    cbt_note = ""
    if not args.no_cbt:
        if not args.cbt_python.exists():
            cbt_note = (
                f"cve-bin-tool not run: {args.cbt_python} missing (pip install cve-bin-tool==3.4 in a venv)"
            )
        else:
            try:
                rows, summary, cbt_seconds = run_cve_bin_tool(args.cbt_python, args.shared, sbom_path)
            except (subprocess.CalledProcessError, RuntimeError, json.JSONDecodeError) as exc:
                cbt_note = f"cve-bin-tool could not run offline: {exc}"
            else:
                got = _cbt_by_ref(rows, expected, sbom_path)
                cbt = score("cve-bin-tool 3.4", expected, got, got)
                cbt.seconds = cbt_seconds
                failed = ", ".join(cve for cve, _ in summary["failed"])
                cbt.note = (
                    f"cve-bin-tool ingested {summary['ingested']} of {summary['records']} records; its "
                    f"NVD parser raises on records without CVSS ({failed})"
                )
                scores.append(cbt)

    lines = table(scores, expected)
    print("\n".join(lines))
    print()
    for s in scores:
        print(f"== {s.tool}")
        for title, items in (
            ("missed affected", s.affected_missed),
            ("candidates dropped", s.candidates_dropped),
            ("candidates called affected", s.candidates_as_affected),
            ("traps reported", s.traps_reported),
            ("other affected", s.extra_affected),
        ):
            if items:
                print(f"  {title}: {', '.join(items)}")
        if s.note:
            print(f"  note: {s.note}")
    if cbt_note:
        print(cbt_note)
    if len(scores) == 2:
        only_ours = sorted(set(ours.affected_found) - set(scores[1].affected_found))
        print(f"\nfound by medsentry only ({len(only_ours)}): {', '.join(only_ours)}")
    print("\nmedsentry suppressed (false-positive guards):")
    for s in result.suppressed:
        print(f"  {s['subject']['name']} {s['vulnerability']}: {s['reason']}")
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n", "utf-8")
    ok = not (
        ours.affected_missed
        or ours.candidates_dropped
        or ours.candidates_as_affected
        or ours.traps_reported
        or ours.extra_affected
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
