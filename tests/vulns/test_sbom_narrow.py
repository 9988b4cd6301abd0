"""Every known answer of the real medical-device SBOM against the shared NVD records
(`shared/data/sbom/medical-device-narrow.expected.json`): 19 affected, 3 candidates surfaced but not called
affected, the false-positive traps left alone, nothing reported for the other components."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medsentry.vulns.feeds import import_path
from medsentry.vulns.sbom import read_sbom
from medsentry.vulns.scan import ScanResult, scan_sbom
from medsentry.vulns.store import VulnStore


@pytest.fixture(scope="module")
def narrow(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ScanResult, dict[str, Any]]:
    shared = shared_data
    sbom_path = shared / "sbom" / "medical-device-narrow.cdx.json"
    store = VulnStore(tmp_path_factory.mktemp("narrow") / "vulns.db")
    import_path(store, shared / "vulns" / "nvd")  # with nvd/unanalyzed
    expected = json.loads((shared / "sbom" / "medical-device-narrow.expected.json").read_text())["components"]
    return scan_sbom(store, read_sbom(sbom_path), max_age=None), expected


def _status(result: ScanResult) -> dict[tuple[str, str], str]:
    return {(f.subject["ref"], f.vulnerability): f.status for f in result.findings}


def test_every_affected_answer_is_affected(narrow: tuple[ScanResult, dict[str, Any]]) -> None:
    result, expected = narrow
    status = _status(result)
    wanted = {(ref, cve) for ref, w in expected.items() for cve in w["affected"]}
    assert len(wanted) == 19
    missed = sorted(
        (expected[ref]["name"], cve) for ref, cve in wanted if status.get((ref, cve)) != "affected"
    )
    assert missed == []


def test_candidates_are_surfaced_but_not_affected(narrow: tuple[ScanResult, dict[str, Any]]) -> None:
    result, expected = narrow
    status = _status(result)
    wanted = [(ref, cve) for ref, w in expected.items() for cve in w["candidates"]]
    assert len(wanted) == 3
    assert {status.get(k) for k in wanted} == {"under_investigation"}


def test_traps_are_not_affected_and_nothing_else_is_reported(
    narrow: tuple[ScanResult, dict[str, Any]],
) -> None:
    result, expected = narrow
    for (ref, cve), st in _status(result).items():
        want = expected.get(ref)
        assert want is not None, f"finding on a component without known vulnerabilities: {ref} {cve}"
        assert cve in want["affected"] or cve in want["candidates"], f"{want['name']} {cve} is {st}"
    traps = {cve for w in expected.values() for cve in w["not_affected"]}
    reported = {f.vulnerability for f in result.findings}
    assert not traps & reported


def test_evidence_says_how_each_hard_case_was_matched(narrow: tuple[ScanResult, dict[str, Any]]) -> None:
    result, _ = narrow
    by = {(f.subject["name"], f.vulnerability): f for f in result.findings}
    jquery = by[("jQuery", "CVE-2020-11022")]
    assert jquery.match["how"] == "vendor-alias" and jquery.match["target"] == "jquery:jquery"
    assert by[("BouncyCastle", "CVE-2020-15522")].match["target"] == "bouncycastle:bc-csharp"
    assert by[("fatFS", "CVE-2026-6682")].match["method"] == "cna-affected"
    assert "FF_LBA64" in by[("fatFS", "CVE-2026-6684")].match["condition"]
    assert by[("AutoMapper", "CVE-2026-32933")].match["method"] == "description"
    suppressed = {(s["subject"]["name"], s["vulnerability"]) for s in result.suppressed}
    assert ("NLog", "CVE-1999-1278") in suppressed
    assert {("BouncyCastle", "CVE-2024-30171"), ("BouncyCastle", "CVE-2024-30172")} <= suppressed
    assert result.to_json()["feeds"]["nvd"]["records"] > 0
