"""`medsentry feeds import|status`: offline import of real feed files, idempotent, and its status."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from medsentry.cli.main import main


def invoke(*args: str | Path):  # -> click Result
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_import_then_status_then_reimport(shared_data: Path, tmp_path: Path) -> None:
    db = tmp_path / "vulns.db"
    nvd = shared_data / "vulns/nvd"
    kev = shared_data / "vulns/cisa-kev/known_exploited_vulnerabilities.json"
    empty = json.loads(invoke("feeds", "status", "--json", "-", "--vuln-db", db).stdout)
    assert all(f["records"] == 0 for f in empty["feeds"].values())

    first = json.loads(invoke("feeds", "import", nvd, kev, "--json", "-", "--vuln-db", db).stdout)
    written = {feed: n for i in first["imports"] for feed, n in i["written"].items()}
    assert written["nvd"] >= len(list(nvd.glob("*.json"))) and written["kev"] > 1000

    status = json.loads(invoke("feeds", "status", "--json", "-", "--vuln-db", db).stdout)["feeds"]
    assert status["nvd"]["records"] == written["nvd"] and status["kev"]["records"] == written["kev"]
    assert status["nvd"]["imported"] is not None and status["epss"]["records"] == 0

    again = json.loads(invoke("feeds", "import", nvd, "--json", "-", "--vuln-db", db).stdout)["imports"][0]
    assert sum(again["written"].values()) == 0 and again["unchanged"]["nvd"] == written["nvd"]
    after = json.loads(invoke("feeds", "status", "--json", "-", "--vuln-db", db).stdout)["feeds"]
    assert {f: (s["records"], s["data_time"]) for f, s in after.items()} == {
        f: (s["records"], s["data_time"]) for f, s in status.items()
    }
