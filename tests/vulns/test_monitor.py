"""Lifecycle monitor: first run all new, an unchanged second run nothing new, then exactly the KEV entry, the
EPSS jump and the re-opened decision that were introduced; rendering of the results."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from rich.console import Console

from medsentry.report.vulns import findings_csv, findings_table, monitor_csv, monitor_table
from medsentry.vulns.feeds import import_path
from medsentry.vulns.monitor import EpssThreshold, monitor
from medsentry.vulns.records import EpssScore, KevEntry
from medsentry.vulns.sbom import Sbom
from medsentry.vulns.store import VulnStore
from medsentry.vulns.triage import TriageStore


@pytest.fixture()
def store(store: VulnStore) -> VulnStore:
    """The shared store copy, with EPSS known for two CVEs before the first run."""
    store.import_records(
        [
            EpssScore("CVE-2020-11023", 0.02, 0.5, date(2026, 11, 1)),
            EpssScore("CVE-2019-11358", 0.001, 0.1, date(2026, 11, 1)),
        ]
    )
    return store


def test_first_run_new_then_nothing_then_exactly_the_changes(
    store: VulnStore, built: tuple[Path, Sbom], shared_data: Path, tmp_path: Path
) -> None:
    sbom = built[1]
    first = monitor(store, [sbom], max_age=None)
    assert first.first_run and first.previous_run is None
    assert len(first.findings) == 22  # 19 affected + 3 candidates of the known answers
    assert first.counts() == {
        "new_finding": 22,
        "new_kev": 0,
        "epss_jump": 0,
        "triage_reopened": 0,
        "gone": 0,
    }

    second = monitor(store, [sbom], max_age=None)
    assert not second.first_run and second.previous_run == first.run
    assert second.changes == []

    # one KEV entry, one EPSS jump (0.02 -> 0.35), one EPSS wobble below the threshold (0.001 -> 0.003)
    store.import_records(
        [
            KevEntry("CVE-2020-11022", "jQuery", "jQuery", "jQuery XSS", date(2026, 12, 1)),
            EpssScore("CVE-2020-11023", 0.35, 0.97, date(2026, 12, 1)),
            EpssScore("CVE-2019-11358", 0.003, 0.2, date(2026, 12, 1)),
        ]
    )
    third = monitor(store, [sbom], max_age=None)
    got = sorted((c.kind, c.vulnerability) for c in third.changes)
    assert got == [("epss_jump", "CVE-2020-11023"), ("new_kev", "CVE-2020-11022")]
    assert "0.0200 -> 0.3500" in third.of_kind("epss_jump")[0].detail
    assert set(third.feed_updates) == {"kev", "epss"}

    # a decision, then the record it rests on changes: re-opened, reported once
    jq = next(f for _, f in third.findings if f.vulnerability == "CVE-2020-11022")
    with TriageStore(store) as ts:
        ts.decide(jq, "not_affected", justification="code_not_reachable")
    assert monitor(store, [sbom], max_age=None).changes == []
    doc = json.loads((shared_data / "vulns" / "nvd" / "CVE-2020-11022.json").read_text())
    doc["cve"]["lastModified"] = "2026-12-02T00:00:00.000"
    modified = tmp_path / "CVE-2020-11022.json"
    modified.write_text(json.dumps(doc))
    import_path(store, modified)
    fourth = monitor(store, [sbom], max_age=None)
    assert [(c.kind, c.vulnerability) for c in fourth.changes] == [("triage_reopened", "CVE-2020-11022")]
    assert "record modified" in fourth.changes[0].detail
    assert monitor(store, [sbom], max_age=None).changes == []


def test_epss_threshold_is_configurable() -> None:
    default = EpssThreshold()
    assert default.jumped(0.02, 0.13) and default.jumped(0.02, 0.05)  # +0.11; x2.5 with +0.03
    assert not default.jumped(0.001, 0.003)  # x3 but +0.002: noise
    assert not default.jumped(0.5, 0.55)
    assert default.jumped(None, 0.2) and not default.jumped(None, 0.05)
    strict = EpssThreshold(absolute=0.5, factor=10.0)
    assert not strict.jumped(0.02, 0.13)


def test_scopes_and_groups_are_separate(store: VulnStore, built: tuple[Path, Sbom]) -> None:
    sbom = built[1]
    monitor(store, [sbom], scope="pump-line", max_age=None)
    other = monitor(store, [sbom], scope="imaging", max_age=None)
    assert other.first_run and other.counts()["new_finding"] == 22
    # a run without the SBOM does not make its findings look gone
    assert monitor(store, [], scope="pump-line", max_age=None).changes == []


def test_renderers(store: VulnStore, built: tuple[Path, Sbom]) -> None:
    report = monitor(store, [built[1]], max_age=None)
    rows = list(csv.DictReader(io.StringIO(monitor_csv(report))))
    assert len(rows) == 22 and {r["change"] for r in rows} == {"new_finding"}
    assert rows[0]["first_run"] == "True"
    findings = [f for _, f in report.findings]
    frows = list(csv.DictReader(io.StringIO(findings_csv(findings))))
    assert {r["vulnerability"] for r in frows} == {f.vulnerability for f in findings}
    assert all(json.loads(r["match"])["method"] for r in frows)
    console = Console(record=True, width=200)
    console.print(monitor_table(report))
    console.print(findings_table(findings))
    text = console.export_text()
    assert "first run" in text and "CVE-2020-11022" in text and "jQuery 3.1.1" in text
    payload = json.loads(json.dumps(report.to_json(), default=str))
    assert payload["first_run"] is True and payload["counts"]["new_finding"] == 22
    top = Console(record=True, width=200)
    top.print(findings_table(findings, limit=5))
    shown = top.export_text()
    best = max(findings, key=lambda f: float((f.priority or {}).get("score") or 0.0))
    assert best.vulnerability in shown and "17 more findings" in shown
    # an 80-column terminal: the narrow layouts, ids, statuses and priorities whole on their lines
    narrow = Console(record=True, width=80)
    narrow.print(monitor_table(report, width=80))
    narrow.print(findings_table(findings, width=80))
    lines = narrow.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    cells = {c.strip() for line in lines for c in line.replace("┃", "│").split("│")}
    for f in findings:
        assert f.vulnerability in cells and f.status in cells
        assert f"{f.priority['level']} {f.priority['score']}" in cells  # type: ignore[index]
    assert {"new_finding", "jQuery 3.1.1", "Subject / matched by", "Subject / detail"} <= cells
    wide = Console(record=True, width=200)
    wide.print(findings_table(findings, width=200))
    assert "Matched by" in wide.export_text()  # a column each where it fits


def _upgraded(sbom: Sbom, name: str, version: str) -> Sbom:
    components = []
    for c in sbom.components:
        if c.name == name:
            c = replace(
                c,
                version=version,
                purl=c.purl.replace(f"@{c.version}", f"@{version}"),
                cpes=tuple(p.replace(f":{c.version}:", f":{version}:") for p in c.cpes),
            )
        components.append(c)
    return replace(sbom, components=components, serial="")


def test_a_new_product_version_reports_the_fixed_findings_gone(
    store: VulnStore, built: tuple[Path, Sbom]
) -> None:
    sbom = built[1]
    monitor(store, [sbom], max_age=None)
    report = monitor(store, [_upgraded(sbom, "jQuery", "3.5.1")], max_age=None)
    assert sorted((c.kind, c.vulnerability) for c in report.changes) == [
        ("gone", "CVE-2019-11358"),
        ("gone", "CVE-2020-11022"),
        ("gone", "CVE-2020-11023"),
    ]
    assert all(c.subject["name"] == "jQuery" for c in report.changes)
    # and back: the old version's findings are new again
    back = monitor(store, [sbom], max_age=None)
    assert back.counts()["new_finding"] == 3 and len(back.changes) == 3


def test_devices_are_grouped_per_device_and_drafts_proposed(shared_data: Path, tmp_path: Path) -> None:
    from medsentry.identify.device import Device, Service

    with VulnStore(tmp_path / "vulns.db") as store:
        import_path(store, shared_data / "vulns" / "csaf-icsma" / "2020" / "icsma-20-170-04.json")
        pump = Device(
            mac="00:09:fb:00:00:03",
            ips=["10.2.0.6"],
            device_class="infusion_pump",
            vendor="Baxter",
            model="Spectrum LVP",
            firmware="v8.1",
            services=[Service("tcp", 51243, None, "offers", 1)],
        )
        first = monitor(store, devices=[pump], max_age=None)
        assert first.first_run and {g for g, _ in first.findings} == {pump.key}
        assert first.counts()["new_finding"] == len(first.findings) >= 4
        assert first.drafts_proposed == 4  # Telnet and FTP flaws on a pump not seen offering either
        second = monitor(store, devices=[pump], max_age=None)
        assert second.changes == [] and second.drafts_proposed == 0
        with TriageStore(store) as ts:
            assert len(ts.drafts()) == 4
        # the pump turns out to answer Telnet on a public address: the Telnet drafts no longer hold
        pump.services.append(Service("tcp", 23, "telnet", "offers", 2))
        pump.ips = ["8.8.4.4"]
        monitor(store, devices=[pump], max_age=None)
        with TriageStore(store) as ts:
            assert sorted(d.statement.vulnerability for d in ts.drafts()) == [
                "CVE-2020-12043",
                "CVE-2020-12047",
            ]
            assert sorted(d.statement.vulnerability for d in ts.drafts("withdrawn")) == [
                "CVE-2020-12041",
                "CVE-2020-12045",
            ]
