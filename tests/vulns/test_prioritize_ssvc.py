"""SSVC decisions (medsentry.vulns.prioritize.ssvc): tables, derived decision points, real vulnrichment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsentry.identify import taxonomy
from medsentry.vulns.prioritize import ssvc

CERTCC_EXPORT = "vulns/ssvc/ssvc_decision_tables_certcc-ssvc-2026.10.0.json"
TABLE_NAMES = {
    "deployer": "Deployer Patch Application Priority",
    "supplier": "Supplier Patch Development Priority",
    "human_impact": "Human Impact",
    "utility": "Utility",
    "public_safety_impact": "Public Safety Impact",
}


def _point(name: str, value: str) -> ssvc.Point:
    return ssvc.make_point(name, value, "test")


def test_tables_equal_the_certcc_export(shared_data: Path) -> None:
    export = json.loads((shared_data / CERTCC_EXPORT).read_text("utf-8"))
    for short, name in TABLE_NAMES.items():
        ours = ssvc.tables()[short]
        theirs = export[name]
        columns = list(theirs["decision_points"])
        assert ours.source == f"{theirs['namespace']}:{theirs['key']}:{theirs['version']}"
        expected = {tuple(row[c] for c in columns[:-1]): row[columns[-1]] for row in theirs["mapping"]}
        assert ours.rows == expected, short
        # a complete table: one row for every combination of input values
        size = 1
        for point in ours.points:
            size *= len(ours.values[point])
        assert len(ours.rows) == size


@pytest.mark.parametrize(
    ("exploitation", "exposure", "automatable", "human", "decision"),
    [
        # checked by hand against the CERT/CC SSVC deployer table (docs: "Deployer Patch Application
        # Priority", decision table DT_DP 1.0.0)
        ("none", "small", "no", "low", "Defer"),
        ("none", "open", "yes", "very high", "Out-of-Cycle"),
        ("poc", "controlled", "no", "low", "Defer"),
        ("active", "small", "no", "low", "Scheduled"),
        ("active", "controlled", "yes", "very high", "Out-of-Cycle"),
        ("active", "open", "no", "very high", "Immediate"),
        ("active", "open", "yes", "high", "Immediate"),
        # also the worked example of the SSVC::Deployer Perl module (metacpan): Immediate, Very High
        ("active", "open", "yes", "very high", "Immediate"),
    ],
)
def test_known_deployer_rows(
    exploitation: str, exposure: str, automatable: str, human: str, decision: str
) -> None:
    got = ssvc.deployer(
        given={
            "Exploitation": exploitation,
            "Exposure": exposure,
            "Automatable": automatable,
            "Human Impact": human,
        }
    )
    assert got.decision == decision
    assert got.table == "ssvc:DT_DP:1.0.0"
    assert all(p.source == "given by the caller" for p in got.points)


@pytest.mark.parametrize(
    ("safety", "mission", "human"),
    [
        ("Negligible", "Degraded", "Low"),
        ("Marginal", "MEF Failure", "Medium"),
        ("Critical", "MEF Support Crippled", "High"),
        ("Negligible", "Mission Failure", "Very High"),
        ("Catastrophic", "Degraded", "Very High"),
    ],
)
def test_known_human_impact_rows(safety: str, mission: str, human: str) -> None:
    got = ssvc.human_impact(safety_impact=safety, mission_impact=mission)
    assert got.value == human
    assert got.via is not None and got.via.table == "ssvc:DT_HI:1.0.0"


def test_human_impact_by_device_class() -> None:
    by_class = {name: ssvc.human_impact(name).value for name in taxonomy.classes()}
    # patient-safety criticality expected for a hospital: life-sustaining devices are Very High
    assert by_class["infusion_pump"] == "Very High"
    assert by_class["patient_monitor"] == "Very High"
    assert by_class["imaging_modality"] == "High"
    assert by_class["lab_analyzer"] == "High"
    assert by_class["printer"] == "Low" and by_class["iot_camera"] == "Low"
    point = ssvc.human_impact("infusion_pump")
    assert "taxonomy.yaml" in point.via.points[0].source and "infusion_pump" in point.via.points[0].source
    with pytest.raises(ssvc.SsvcError, match="unknown device class"):
        ssvc.human_impact("toaster")


def test_vulnrichment_records(shared_data: Path) -> None:
    for path in sorted((shared_data / "vulns/vulnrichment").glob("*.json")):
        record = json.loads(path.read_text("utf-8"))
        facts = ssvc.vulnrichment(record)
        assert facts is not None, path.name
        assert set(facts.options) == {"Exploitation", "Automatable", "Technical Impact"}
        assert facts.role == "CISA Coordinator" and facts.timestamp
        # all five are KEV-listed (EternalBlue, BlueKeep, IIS): the ADP carries the kev entry
        assert facts.kev_date and facts.kev_date[:2] == "20"
        got = ssvc.deployer(assessed=record, device_class="imaging_modality", exposure_hint="vlan")
        exploitation = got.point("Exploitation")
        assert exploitation.value == "Active" and "KEV" in exploitation.source
        assert got.point("Automatable").source.startswith("CISA-ADP")


def test_bluekeep_on_an_internet_facing_monitor(shared_data: Path) -> None:
    record = json.loads((shared_data / "vulns/vulnrichment/CVE-2019-0708.json").read_text("utf-8"))
    got = ssvc.deployer(assessed=record, device_class="patient_monitor", exposure_hint="internet")
    assert got.decision == "Immediate"
    assert [p.value for p in got.points] == ["Active", "Open", "Yes", "Very High"]
    text = "\n".join(got.reasons())
    assert "exposure_hint='internet'" in text and "Catastrophic" in text
    # the same vulnerability on a printer in a segmented VLAN waits for the next cycle
    quiet = ssvc.deployer(assessed=record, device_class="printer", exposure_hint="vlan")
    assert quiet.decision == "Out-of-Cycle" and quiet.point("Human Impact").value == "Low"


def test_nvd_ssvc_v203(shared_data: Path) -> None:
    item = json.loads((shared_data / "vulns/nvd/CVE-2021-44228.json").read_text("utf-8"))
    facts = ssvc.vulnrichment(item)
    assert facts is not None and facts.source.startswith("NVD ssvcV203")
    assert facts.options == {"Exploitation": "active", "Automatable": "yes", "Technical Impact": "total"}
    assert facts.kev_date is None  # NVD's ssvcV203 carries no KEV entry
    got = ssvc.supplier(assessed=item, device_class="pacs")
    assert got.decision == "Immediate"
    assert got.point("Utility").value == "Super Effective"  # automatable × concentrated (PACS)
    assert got.point("Public Safety Impact").value == "Significant"


def test_records_vulnerability_ssvc_dict_is_accepted() -> None:
    # shape written by the feeds (records.Vulnerability.ssvc)
    got = ssvc.deployer(
        assessed={"Exploitation": "poc", "Automatable": "no", "Technical Impact": "partial"},
        device_class="pacs",
        exposure_hint="hospital",
    )
    assert got.point("Exploitation").value == "Public PoC"
    assert got.decision == "Scheduled"  # P, C, N, Medium


def test_exploitation_takes_the_strongest_evidence() -> None:
    none = ssvc.Vulnrichment({"Exploitation": "none"}, "CISA Coordinator", "2024-01-01T00:00:00Z")
    assert ssvc.exploitation(assessed=none).value == "None"
    raised = ssvc.exploitation(assessed=none, epss=0.5)
    assert raised.value == "Public PoC" and "EPSS 0.5000 >= 0.1" in raised.source
    assert ssvc.exploitation(assessed=none, epss=0.5, kev=True).value == "Active"
    low = ssvc.exploitation(epss=0.02)
    assert low.value == "None" and "< 0.1" in low.source
    # EPSS alone never claims exploitation in the wild
    assert ssvc.exploitation(epss=1.0).value == "Public PoC"
    assert "no KEV" in ssvc.exploitation().source


def test_exposure_hints() -> None:
    assert ssvc.exposure("internet").value == "Open"
    assert ssvc.exposure("vlan").value == "Controlled"
    assert ssvc.exposure("no_listener").value == "Small"
    assumed = ssvc.exposure(None)
    assert assumed.value == "Controlled" and "assumed" in assumed.source
    with pytest.raises(ssvc.SsvcError, match="unknown exposure hint"):
        ssvc.exposure("cloudy")


def test_automatable_and_technical_impact_from_cvss() -> None:
    network = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    auto = ssvc.automatable(cvss=network)
    assert auto.value == "Yes" and "heuristic" in auto.source
    assert ssvc.automatable(cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H").value == "No"
    # CVSS 4.0 supplemental AU wins over the heuristic
    v4 = "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/AU:Y"
    assert ssvc.automatable(cvss=v4).value == "Yes"
    assert ssvc.technical_impact(cvss=network).value == "Total"
    assert ssvc.technical_impact(cvss="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N").value == "Partial"
    # an assessment beats any heuristic
    told = ssvc.Vulnrichment({"Automatable": "no", "Technical Impact": "partial"})
    assert ssvc.automatable(assessed=told, cvss=network).value == "No"
    assert ssvc.technical_impact(assessed=told, cvss=network).value == "Partial"
    # a broken vector is not evidence
    assert "assumed" in ssvc.automatable(cvss="CVSS:3.1/AV:N").source


def test_supplier_rows() -> None:
    got = ssvc.supplier(
        given={"Exploitation": "none", "Utility": "laborious", "Technical Impact": "partial"},
        device_class="printer",
    )
    assert got.decision == "Defer"  # N, L, P, Minimal
    assert got.point("Public Safety Impact").value == "Minimal"
    pump = ssvc.supplier(
        given={"Exploitation": "none", "Utility": "laborious", "Technical Impact": "partial"},
        device_class="infusion_pump",
    )
    assert pump.decision == "Scheduled"  # N, L, P, Significant
    assert pump.to_dict()["points"][3]["via"]["table"] == "ssvc:DT_PSI:1.0.0"


def test_given_safety_and_mission_impact_replace_the_class_defaults() -> None:
    got = ssvc.deployer(
        device_class="printer", given={"Safety Impact": "catastrophic", "Mission Impact": "degraded"}
    )
    human = got.point("Human Impact")
    assert human.value == "Very High"
    assert [p.source for p in human.via.points] == ["given", "given"]
    product = ssvc.supplier(device_class="printer", given={"Safety Impact": "critical"})
    assert product.point("Public Safety Impact").value == "Significant"
    with pytest.raises(ssvc.SsvcError, match="deployer tree does not use Technical Impact"):
        ssvc.deployer(given={"Technical Impact": "total"})


def test_bad_input_is_named() -> None:
    with pytest.raises(ssvc.SsvcError, match="not a value of SSVC Exploitation"):
        ssvc.deployer(given={"Exploitation": "rumoured"})
    with pytest.raises(ssvc.SsvcError, match="unknown SSVC decision point"):
        ssvc.deployer(given={"Mood": "bad"})
    # a malformed record yields no assessment instead of an exception
    assert ssvc.vulnrichment({"containers": {"adp": [{"metrics": [{"other": "x"}]}]}}) is None
    assert ssvc.vulnrichment({"cve": {"metrics": {"ssvcV203": "junk"}}}) is None


def test_every_cve5_adp_assessment_is_usable(shared_data: Path) -> None:
    catalog = json.loads(
        (shared_data / "vulns/cisa-kev/known_exploited_vulnerabilities.json").read_text("utf-8")
    )
    kev_added = {v["cveID"]: v["dateAdded"] for v in catalog["vulnerabilities"]}
    assessed = 0
    for path in sorted((shared_data / "vulns/cve5").glob("*.json")):
        record = json.loads(path.read_text("utf-8"))
        facts = ssvc.vulnrichment(record)
        if facts is None:
            continue
        assessed += 1
        assert set(facts.options) == {"Exploitation", "Automatable", "Technical Impact"}, path.name
        # every published value maps onto the tables (else make_point raises)
        for name, value in facts.options.items():
            ssvc.make_point(name, value, path.name)
        if facts.kev_date:  # the ADP's KEV entry agrees with the catalog
            assert kev_added[record["cveMetadata"]["cveId"]] == facts.kev_date
        decision = ssvc.supplier(assessed=facts, device_class="general_it")
        assert "CISA-ADP" in decision.point("Exploitation").source
    assert assessed >= 15
