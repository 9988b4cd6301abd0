"""Triage decisions: persistence, VEX import applied by a scan, round trips, re-opening on changed evidence,
network-aware drafts. Real NVD records and the real medical-device SBOM from ../shared/data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from medsentry.identify.device import Device, Service
from medsentry.vulns.feeds import import_path
from medsentry.vulns.sbom import Sbom
from medsentry.vulns.scan import Finding, ScanResult, scan_devices, scan_sbom
from medsentry.vulns.store import VulnStore
from medsentry.vulns.triage import TriageStore, apply_triage, load_triage, network_drafts
from medsentry.vulns.vex import VexStatement, dump_vex

JQUERY_CVE = "CVE-2020-11022"
SMB_CVE = "CVE-2017-0144"  # EternalBlue: "The SMBv1 server in Microsoft Windows ..."


@pytest.fixture()
def sbom(built: tuple[Path, Sbom]) -> Sbom:
    return built[1]


def _scan(store: VulnStore, sbom: Sbom) -> ScanResult:
    return scan_sbom(store, sbom, triage=load_triage(store), max_age=None)


def _finding(result: ScanResult, cve: str) -> Finding:
    return next(f for f in result.findings if f.vulnerability == cve)


def test_decisions_persist_across_reopen_with_history(store: VulnStore, sbom: Sbom) -> None:
    jq = _finding(_scan(store, sbom), JQUERY_CVE)
    assert jq.status == "affected"
    with TriageStore(store) as ts:
        ts.decide(jq, "under_investigation", author="analyst")
        ts.decide(jq, "not_affected", justification="code_not_reachable", author="analyst")
    path = store.path
    store.close()
    with VulnStore(path) as again, TriageStore(again) as ts:
        current = ts.current()
        assert [(d.statement.status, d.statement.justification) for d in current] == [
            ("not_affected", "code_not_reachable")
        ]
        assert [d.statement.status for d in ts.history(vulnerability=JQUERY_CVE)] == [
            "under_investigation",
            "not_affected",
        ]
        rescanned = _finding(_scan(again, sbom), JQUERY_CVE)
    assert rescanned.status == "not_affected"
    assert rescanned.triage is not None and rescanned.triage["author"] == "analyst"


def test_vex_import_is_applied_by_a_scan(store: VulnStore, sbom: Sbom, tmp_path: Path) -> None:
    jq = _finding(_scan(store, sbom), JQUERY_CVE)
    purl = jq.subject["purl"]  # a VEX file from elsewhere names the component by its purl
    vex = VexStatement(
        JQUERY_CVE, purl, "not_affected", justification="vulnerable_code_not_in_execute_path", author="maker"
    )
    path = tmp_path / "maker.openvex.json"
    path.write_text(dump_vex([vex], "openvex"))
    with TriageStore(store) as ts:
        first = ts.import_vex(path)
        again = ts.import_vex(path)
    assert (first.recorded, again.recorded, again.unchanged) == (1, 0, 1)
    result = _scan(store, sbom)
    applied = _finding(result, JQUERY_CVE)
    assert applied.status == "not_affected"
    assert applied.triage is not None and applied.triage["subject"] == purl
    # the other jQuery findings are untouched
    others = [f for f in result.findings if f.subject["name"] == "jQuery" and f.vulnerability != JQUERY_CVE]
    assert others and {f.status for f in others} == {"affected"}


@pytest.mark.parametrize("fmt", ["cyclonedx", "openvex", "csaf"])
def test_export_import_round_trip(store: VulnStore, sbom: Sbom, tmp_path: Path, fmt: str) -> None:
    result = _scan(store, sbom)
    statuses = [
        ("not_affected", "code_not_present", ()),
        ("affected", "", ("update",)),
        ("fixed", "", ()),
        ("under_investigation", "", ()),
        ("not_affected", "inline_mitigations_already_exist", ()),
    ]
    with TriageStore(store) as ts:
        for f, (status, justification, responses) in zip(result.findings, statuses, strict=False):
            ts.decide(
                f,
                status,
                justification=justification,
                responses=responses,
                impact_statement=f"reviewed {f.vulnerability}",
                author="analyst",
            )
        before = ts.triage()
        text = ts.export_vex(fmt)
    assert len(before) == len(statuses)
    exported = tmp_path / f"out.{fmt}.json"
    exported.write_text(text)
    other = tmp_path / "other.db"
    with VulnStore(other) as fresh, TriageStore(fresh) as ts:
        got = ts.import_vex(exported)
        assert got.recorded == len(statuses) and not got.problems
        assert ts.triage() == before


def _modified_copy(shared: Path, tmp: Path, cve: str, end: str) -> Path:
    """The real NVD record with a later lastModified and a different range end."""
    doc = json.loads((shared / "vulns" / "nvd" / f"{cve}.json").read_text())
    doc["cve"]["lastModified"] = "2026-11-30T10:00:00.000"
    for config in doc["cve"]["configurations"]:
        for node in config["nodes"]:
            for m in node["cpeMatch"]:
                if "jquery:jquery" in m["criteria"]:
                    m["versionEndExcluding"] = end
    out = tmp / "modified"
    out.mkdir(exist_ok=True)
    (out / f"{cve}.json").write_text(json.dumps(doc))
    return out


def test_decision_reopened_when_evidence_changes(
    store: VulnStore, sbom: Sbom, shared_data: Path, tmp_path: Path
) -> None:
    with TriageStore(store) as ts:
        ts.decide(
            _finding(_scan(store, sbom), JQUERY_CVE), "not_affected", justification="code_not_reachable"
        )
        # a re-scan and a re-import of the same feed data change nothing
        import_path(store, shared_data / "vulns" / "nvd" / f"{JQUERY_CVE}.json")
        assert ts.reconcile(_scan(store, sbom).findings) == []

        import_path(store, _modified_copy(shared_data, tmp_path, JQUERY_CVE, "3.6.0"))
        result = _scan(store, sbom)
        assert _finding(result, JQUERY_CVE).status == "not_affected"  # the old decision, until reconciled
        reopened = ts.reconcile(result.findings)
        assert [(r.vulnerability, r.previous.statement.status) for r in reopened] == [
            (JQUERY_CVE, "not_affected")
        ]
        assert "record modified" in reopened[0].reason and "match evidence changed" in reopened[0].reason
        finding = _finding(result, JQUERY_CVE)
        assert finding.status == "under_investigation" and finding.triage is not None
        assert "code_not_reachable" in finding.triage["impact_statement"]  # the previous decision is named
        history = ts.history(vulnerability=JQUERY_CVE)
        assert [d.origin for d in history] == ["manual", "reopened"]
        # re-opened once: the same evidence again is no new change
        assert ts.reconcile(_scan(store, sbom).findings) == []
    assert _finding(_scan(store, sbom), JQUERY_CVE).status == "under_investigation"


def test_imported_decision_binds_to_first_evidence_then_reopens_on_change(
    store: VulnStore, sbom: Sbom, shared_data: Path, tmp_path: Path
) -> None:
    jq = _finding(_scan(store, sbom), JQUERY_CVE)
    path = tmp_path / "v.cdx.json"
    path.write_text(dump_vex([VexStatement(JQUERY_CVE, jq.subject["ref"], "fixed")], "cyclonedx"))
    with TriageStore(store) as ts:
        ts.import_vex(path)
        assert ts.reconcile(_scan(store, sbom).findings) == []  # binds, no re-open
        assert ts.current()[0].fingerprint is not None
        import_path(store, _modified_copy(shared_data, tmp_path, JQUERY_CVE, "3.5.1"))
        assert len(ts.reconcile(_scan(store, sbom).findings)) == 1


def _device(services: list[Service], ips: list[str]) -> Device:
    return Device(
        mac="00:11:22:33:44:55",
        ips=ips,
        device_class="clinical_workstation",
        vendor="Microsoft",
        model="Windows 7",
        first_seen=1_700_000_000.0,
        last_seen=1_700_086_400.0,
        services=services,
    )


def _device_finding(device: Device, cve: str) -> Finding:
    return Finding(
        subject={
            "type": "device",
            "id": device.key,
            "vendor": device.vendor,
            "model": device.model,
            "firmware": None,
            "ips": device.ips,
        },
        vulnerability=cve,
        source="nvd",
        match={"method": "nvd-configuration", "target": "microsoft:windows_7"},
        status="affected",
        cvss={"vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"},
    )


def test_network_drafts_for_unexposed_service(store: VulnStore) -> None:
    web_only = _device([Service("tcp", 443, "tls", "offers", 5), Service("tcp", 104, "dicom", "offers", 2)],
                       ["10.1.2.3"])  # fmt: skip
    smb_internal = _device([Service("tcp", 445, None, "offers", 3)], ["10.1.2.4"])
    smb_public = _device([Service("tcp", 445, "smb", "offers", 3)], ["8.8.4.4"])
    drafts = {}
    for name, device in (("web", web_only), ("internal", smb_internal), ("public", smb_public)):
        got = network_drafts(store, [_device_finding(device, SMB_CVE)], [device])
        drafts[name] = got[0] if got else None
    web = drafts["web"]
    assert web is not None and web.statement.status == "not_affected"
    assert web.statement.justification == "vulnerable_code_not_in_execute_path"
    assert web.evidence["services_in_description"] == ["smb"]
    assert "tcp/445" in web.evidence["ports_of_those_services"]
    assert web.evidence["device_offers"] == ["tcp/443 tls", "tcp/104 dicom"]
    assert drafts["internal"] is not None
    assert drafts["internal"].statement.justification == "protected_by_mitigating_control"
    assert drafts["internal"].confidence < web.confidence
    assert drafts["public"] is None  # offered on a public address: nothing to propose


def test_drafts_apply_only_when_accepted(store: VulnStore) -> None:
    device = _device([Service("tcp", 443, "tls", "offers", 5)], ["10.1.2.3"])
    finding = _device_finding(device, SMB_CVE)
    with TriageStore(store) as ts:
        assert ts.propose(network_drafts(store, [finding], [device])) == 1
        assert load_triage(store) == {}  # a draft is no decision
        assert [d.statement.vulnerability for d in ts.drafts()] == [SMB_CVE]
        decision = ts.accept_draft(device.key, SMB_CVE, author="biomed")
        assert decision.origin == "draft" and decision.fingerprint is not None
        assert ts.drafts() == []
        assert ts.propose(network_drafts(store, [finding], [device])) == 0  # decided: not proposed again
    triage = load_triage(store)
    assert triage[(device.key, SMB_CVE)].status == "not_affected"
    assert triage[(device.key, SMB_CVE)].author == "biomed"


def test_drafts_and_decisions_fit_the_terminal_with_ids_and_values_whole(store: VulnStore) -> None:
    import io

    from rich.console import Console

    from medsentry.report.vulns import decisions_table, drafts_table

    device = _device([Service("tcp", 443, "tls", "offers", 5)], ["10.1.2.3"])
    with TriageStore(store) as ts:
        ts.propose(network_drafts(store, [_device_finding(device, SMB_CVE)], [device]))
        drafts = ts.drafts()
        decision = ts.accept_draft(device.key, SMB_CVE, author="biomed")
    for width in (80, 220):
        for table in (drafts_table(drafts, width=width), decisions_table([decision], width=width)):
            out = io.StringIO()
            Console(file=out, width=width).print(table)
            lines = out.getvalue().splitlines()
            assert max(map(len, lines)) <= width
            for value in (SMB_CVE, device.key, "not_affected", "vulnerable_code_not_in_execute_path"):
                assert any(value in line for line in lines), (width, value)
            assert ("Justification" in lines[1] + lines[2]) == (width == 220)  # a column each when it fits


def test_a_rejected_draft_is_not_proposed_again(store: VulnStore) -> None:
    device = _device([Service("tcp", 443, "tls", "offers", 5)], ["10.1.2.3"])
    finding = _device_finding(device, SMB_CVE)
    with TriageStore(store) as ts:
        assert ts.propose(network_drafts(store, [finding], [device])) == 1
        ts.reject_draft(device.key, SMB_CVE.lower())  # ids in any case
        assert ts.drafts() == [] and [d.state for d in ts.drafts(None)] == ["rejected"]
        assert ts.propose(network_drafts(store, [finding], [device])) == 0
        assert ts.drafts() == []
        with pytest.raises(KeyError):
            ts.reject_draft(device.key, SMB_CVE)  # no proposed draft left
    assert load_triage(store) == {}  # rejecting decides nothing


def test_no_draft_for_a_flaw_without_a_named_network_service(store: VulnStore) -> None:
    device = _device([], ["10.1.2.3"])
    # jQuery XSS: a client-side library flaw, no network service the inventory could rule out
    assert network_drafts(store, [_device_finding(device, JQUERY_CVE)], [device]) == []
    # the same device and an SMB flaw: a draft
    assert len(network_drafts(store, [_device_finding(device, SMB_CVE)], [device])) == 1


def test_drafts_for_a_real_icsma_device(shared_data: Path, tmp_path: Path) -> None:
    # ICSMA-20-170-04: Baxter Spectrum wireless battery modules run Telnet (CVE-2020-12045, -12041) and FTP
    # (CVE-2020-12047, -12043); the pump below was seen offering only its own port
    store = VulnStore(tmp_path / "vulns.db")
    import_path(store, shared_data / "vulns" / "csaf-icsma" / "2020" / "icsma-20-170-04.json")
    pump = Device(
        mac="00:09:fb:00:00:03",
        ips=["10.2.0.6"],
        device_class="infusion_pump",
        vendor="Baxter",
        model="Spectrum LVP",
        firmware="v8.1",
        first_seen=1_700_000_000.0,
        last_seen=1_700_086_400.0,
        services=[Service("tcp", 51243, None, "offers", 1)],
    )
    result = scan_devices(store, [pump], max_age=None)
    assert {f.vulnerability for f in result.findings} >= {"CVE-2020-12045", "CVE-2020-12047"}
    drafts = {d.statement.vulnerability: d for d in network_drafts(store, result.findings, [pump])}
    assert set(drafts) == {"CVE-2020-12045", "CVE-2020-12041", "CVE-2020-12047", "CVE-2020-12043"}
    assert drafts["CVE-2020-12045"].evidence["services_in_description"] == ["telnet"]
    assert drafts["CVE-2020-12047"].evidence["services_in_description"] == ["ftp"]
    assert drafts["CVE-2020-12045"].evidence["device_offers"] == ["tcp/51243"]
    # the physical-access flaw (AV:P, hard-coded passwords) is nothing the network view can rule out
    assert "CVE-2020-12039" not in drafts
    # once the pump is seen answering Telnet, the Telnet drafts go (no public address: a weak control draft)
    pump.services.append(Service("tcp", 23, "telnet", "offers", 2))
    again = {d.statement.vulnerability: d for d in network_drafts(store, result.findings, [pump])}
    assert again["CVE-2020-12045"].statement.justification == "protected_by_mitigating_control"
    assert again["CVE-2020-12047"].statement.justification == "vulnerable_code_not_in_execute_path"
    store.close()


def test_decision_reopened_when_the_component_version_changes(store: VulnStore, sbom: Sbom) -> None:
    wolf = next(f for f in _scan(store, sbom).findings if f.subject["name"] == "WolfSSL")
    with TriageStore(store) as ts:
        ts.decide(wolf, "not_affected", justification="code_not_present", author="maker")
        upgraded = replace(
            sbom,
            components=[
                replace(c, version="4.9.0", cpes=tuple(p.replace(":4.8.1:", ":4.9.0:") for p in c.cpes))
                if c.name == "WolfSSL"
                else c
                for c in sbom.components
            ],
        )
        result = _scan(store, upgraded)
    reopened = apply_triage(store, result.findings)
    assert [(r.vulnerability, r.subject) for r in reopened] == [(wolf.vulnerability, wolf.subject["ref"])]
    assert "version 4.8.1 -> 4.9.0" in reopened[0].reason
    still = next(f for f in result.findings if f.vulnerability == wolf.vulnerability)
    assert still.status == "under_investigation"


def test_real_vex_examples_import_and_survive_export(shared_data: Path, tmp_path: Path) -> None:
    cdx = sorted((shared_data / "sbom/cyclonedx-examples/VEX").rglob("*.json"))
    csaf = sorted((shared_data / "vulns/csaf-oasis").glob("csaf_2.*/examples/csaf/csaf_vex/*.json"))
    assert cdx and csaf
    for i, path in enumerate([*cdx, *csaf]):
        with TriageStore(tmp_path / f"a{i}.db") as ts:
            try:
                got = ts.import_vex(path)
            except ValueError:
                continue  # examples that are no VEX (a plain BOM in the folder) are refused, not half-read
            if not got.recorded:
                continue
            before = ts.triage()
            for fmt in ("cyclonedx", "openvex", "csaf"):
                out = tmp_path / f"{i}.{fmt}.json"
                out.write_text(ts.export_vex(fmt))
                with TriageStore(tmp_path / f"b{i}{fmt}.db") as other:
                    other.import_vex(out)
                    assert other.triage() == before, (path.name, fmt)


def test_malformed_vex_is_an_error_and_writes_nothing(store: VulnStore, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{"status": 1}]}')
    with TriageStore(store) as ts:
        with pytest.raises(ValueError, match=r"bad\.json"):
            ts.import_vex(bad)
        assert ts.current() == []


def test_version_specific_statements_apply_to_their_version_only(
    store: VulnStore, sbom: Sbom, tmp_path: Path
) -> None:
    jq = _finding(_scan(store, sbom), JQUERY_CVE)
    ref = jq.subject["ref"]
    path = tmp_path / "versions.cdx.json"
    statements = [
        VexStatement(JQUERY_CVE, ref, "not_affected", version="3.1.1", justification="code_not_reachable"),
        VexStatement(JQUERY_CVE, ref, "fixed", version="vers:nuget/>=3.5.0"),
        VexStatement(JQUERY_CVE, ref, "affected", version="3.0.0"),
    ]
    path.write_text(dump_vex(statements, "cyclonedx"))
    with TriageStore(store) as ts:
        assert ts.import_vex(path).recorded == 3
        assert len(ts.current()) == 3  # three versions, three current decisions
        assert ts.triage() == {}  # none is for every version: the scan alone cannot apply them
        result = _scan(store, sbom)
        assert _finding(result, JQUERY_CVE).status == "affected"
        ts.reconcile(result.findings)
        applied = _finding(result, JQUERY_CVE)
        assert applied.status == "not_affected" and applied.triage is not None
        assert applied.triage["version"] == "3.1.1"
        # a decision for every version is less specific than the one for 3.1.1
        ts.record(VexStatement(JQUERY_CVE, ref, "under_investigation"))
        again = _scan(store, sbom)
        assert _finding(again, JQUERY_CVE).status == "under_investigation"
        ts.reconcile(again.findings)
        assert _finding(again, JQUERY_CVE).status == "not_affected"
        exported = ts.export_vex("openvex")
    assert exported.count(JQUERY_CVE) == 4
