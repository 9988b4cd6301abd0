"""`medsentry vulns sbom|devices`: the findings contract, and no silent "0 vulnerabilities"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from medsentry.cli.main import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hospital-ward.pcap"
FINDING_KEYS = {
    "subject", "vulnerability", "source", "match", "status", "priority", "ssvc", "cvss", "kev", "epss",
}  # fmt: skip


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def sbom(shared_data: Path) -> Path:
    return shared_data / "sbom/medical-device-narrow.cdx.json"


def test_empty_store_is_an_error_not_zero_findings(sbom: Path, tmp_path: Path) -> None:
    result = run("vulns", "sbom", sbom, "--vuln-db", tmp_path / "v.db", "--json", tmp_path / "f.json")
    assert result.exit_code == 1 and "feeds" in result.stderr
    assert not (tmp_path / "f.json").exists()


def test_sbom_findings_contract_and_staleness(sbom: Path, shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    assert run("feeds", "import", shared_data / "vulns/nvd", "--vuln-db", db, "--json", "-").exit_code == 0
    stale = run("vulns", "sbom", sbom, "--vuln-db", db)
    assert stale.exit_code == 1 and "older than" in stale.stderr  # the shared records are months old
    document = json.loads(run("vulns", "sbom", sbom, "--max-age", "0", "--json", "-", "--vuln-db", db).stdout)
    assert document["feeds"]["nvd"]["records"] > 0
    findings = document["findings"]
    assert findings and all(f.keys() >= FINDING_KEYS for f in findings)
    affected = {(f["subject"]["name"], f["vulnerability"]) for f in findings if f["status"] == "affected"}
    expected = json.loads(sbom.with_name("medical-device-narrow.expected.json").read_text())["components"]
    wolfssl = next(c for c in expected.values() if c["name"] == "WolfSSL")
    assert {("WolfSSL", cve) for cve in wolfssl["affected"]} <= affected


def test_devices_from_the_inventory(shared_data: Path, tmp_path: Path) -> None:
    inventory, db = tmp_path / "inv.db", tmp_path / "v.db"
    assert run("analyze", EXAMPLE, "--db", inventory, "-q", "--no-detect").exit_code == 0
    advisories = shared_data / "vulns/csaf-icsma"
    assert run("feeds", "import", advisories, "--vuln-db", db, "--json", "-").exit_code == 0
    result = run("vulns", "devices", "--max-age", "0", "--json", "-", "--db", inventory, "--vuln-db", db)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert all(f.keys() >= FINDING_KEYS for f in document["findings"])
    assert document["feeds"]["csaf"]["records"] > 100
    # the terminal views (CliRunner's 80 columns): every finding's id whole, and the scan's drafts
    table = run("vulns", "devices", "--max-age", "0", "--db", inventory, "--vuln-db", db).stdout
    assert document["findings"] and all(f["vulnerability"] in table for f in document["findings"][:10])
    assert max(map(len, table.splitlines())) <= 80
    drafts = run("vulns", "triage", "--vuln-db", db, "drafts")
    assert drafts.exit_code == 0 and "Triage drafts" in drafts.stdout
    missing = run("vulns", "triage", "--vuln-db", db, "reject", "00:09:fb:72:00:ff", "CVE-2017-0144")
    assert missing.exit_code == 1 and "no draft for 00:09:fb:72:00:ff CVE-2017-0144" in missing.stderr


def test_triage_decision_applies_and_monitor_reports_only_news(
    sbom: Path, shared_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "v.db"
    assert run("feeds", "import", shared_data / "vulns/nvd", "--vuln-db", db, "--json", "-").exit_code == 0
    scan = ("vulns", "sbom", sbom, "--max-age", "0", "--json", "-", "--vuln-db", db)
    finding = next(f for f in json.loads(run(*scan).stdout)["findings"] if f["status"] == "affected")
    subject = finding["subject"]["ref"] if "ref" in finding["subject"] else finding["subject"]["name"]
    decided = run(
        "vulns", "triage", "--vuln-db", db, "set", subject, finding["vulnerability"], "not_affected",
        "--justification", "vulnerable_code_not_in_execute_path", "--author", "psirt",
    )  # fmt: skip
    assert decided.exit_code == 0, decided.output
    again = {
        (f["subject"].get("ref", f["subject"]["name"]), f["vulnerability"]): f["status"]
        for f in json.loads(run(*scan).stdout)["findings"]
    }
    assert again[subject, finding["vulnerability"]] == "not_affected"
    listed = run("vulns", "triage", "--vuln-db", db).stdout
    for value in (finding["vulnerability"], "not_affected", "psirt", "vulnerable_code_not_in_execute_path"):
        assert value in listed
    exported = json.loads(run("vulns", "triage", "--vuln-db", db, "export", "--format", "openvex").stdout)
    assert [s["vulnerability"]["name"] for s in exported["statements"]] == [finding["vulnerability"]]

    watch = ("monitor", "--sbom", sbom, "--max-age", "0", "--json", "-", "--vuln-db", db)
    first, second = json.loads(run(*watch).stdout), json.loads(run(*watch).stdout)
    assert first["first_run"] and sum(first["counts"].values()) > 0
    assert not second["first_run"] and sum(second["counts"].values()) == 0
