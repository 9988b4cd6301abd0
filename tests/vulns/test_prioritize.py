"""One explained priority per finding (medsentry.vulns.prioritize.priority)."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.vulns.prioritize import Epss, FindingInputs, Kev, PriorityInputError, prioritize
from medsentry.vulns.prioritize.priority import LEVELS
from medsentry.vulns.records import Cvss, EpssScore, KevEntry, Vulnerability


def _kev_entry(shared: Path, cve: str) -> dict[str, Any]:
    catalog = json.loads((shared / "vulns/cisa-kev/known_exploited_vulnerabilities.json").read_text("utf-8"))
    return next(v for v in catalog["vulnerabilities"] if v["cveID"] == cve)


def test_bluekeep_on_an_exposed_patient_monitor(shared_data: Path) -> None:
    record = json.loads((shared_data / "vulns/vulnrichment/CVE-2019-0708.json").read_text("utf-8"))
    kev = _kev_entry(shared_data, "CVE-2019-0708")
    got = prioritize(
        FindingInputs(
            "CVE-2019-0708",
            kev=kev,
            epss=Epss(0.94, 0.999, "2025-02-20"),
            record=record,
            device_class="patient_monitor",
            exposure_hint="internet",
        )
    )
    assert (got.level, got.rank) == ("Immediate", 1)
    assert 75 <= got.score <= 100
    text = "\n".join(got.reasons)
    # every input is named in the reasons ...
    assert "listed in CISA KEV (added 2021-11-03, due 2022-05-03, ransomware use Known)" in text
    assert "EPSS 0.9400, percentile 0.9990 as of 2025-02-20" in text
    assert "CVSS 3.1 9.8 CRITICAL from CISA-ADP" in text
    assert "exposure_hint='internet'" in text and "Catastrophic" in text
    # ... and carried in `inputs`
    assert got.inputs["kev"]["due_date"] == "2022-05-03"
    assert got.inputs["epss"]["percentile"] == 0.999
    assert got.inputs["cvss"]["vector"] == "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    assert got.inputs["ssvc"]["decision"] == "Immediate"
    assert [p["value"] for p in got.inputs["ssvc"]["points"]] == ["Active", "Open", "Yes", "Very High"]
    json.dumps(got.to_dict())  # serialisable as it is for the findings contract


def test_same_vulnerability_ranks_by_device_and_exposure(shared_data: Path) -> None:
    record = json.loads((shared_data / "vulns/vulnrichment/CVE-2017-0144.json").read_text("utf-8"))
    base = {"cve": "CVE-2017-0144", "kev": True, "record": record}
    pump = prioritize(base | {"device_class": "infusion_pump", "exposure_hint": "internet"})
    printer = prioritize(base | {"device_class": "printer", "exposure_hint": "no_listener"})
    assert pump.rank < printer.rank and pump.score > printer.score
    assert (pump.level, printer.level) == ("Immediate", "Scheduled")  # rows A,O,Y,VH and A,S,Y,L


def test_records_objects_are_accepted() -> None:
    vector = "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H"
    vuln = Vulnerability(
        "CVE-2099-0001",
        "nvd",
        cvss3=Cvss("3.1", vector, 8.1, "HIGH", "nvd@nist.gov"),
        ssvc={"Exploitation": "poc", "Automatable": "no", "Technical Impact": "total"},
    )
    got = prioritize(
        FindingInputs(
            "CVE-2099-0001",
            kev=KevEntry("CVE-2099-0001", "V", "P", "N", date(2099, 1, 2), date(2099, 1, 23), True),
            epss=EpssScore("CVE-2099-0001", 0.2, 0.96, date(2099, 1, 1)),
            vulnerability=vuln,
            device_class="pacs",
            exposure_hint="hospital",
        )
    )
    assert got.inputs["cvss"]["base_score"] == 8.1 and got.inputs["cvss"]["source"] == "nvd@nist.gov"
    assert got.inputs["kev"]["date_added"] == "2099-01-02"
    # KEV beats the assessment's "poc"; Controlled, not automatable, PACS Human Impact Medium
    assert got.inputs["ssvc"]["points"][0]["value"] == "Active"
    assert got.level == "Scheduled"
    assert "ransomware use Known" in got.reasons[1]


def test_epss_from_the_real_csv_and_no_kev(shared_data: Path) -> None:
    path = next((shared_data / "vulns/epss").glob("*.csv"))
    rows = list(
        csv.DictReader(line for line in path.read_text("utf-8").splitlines() if not line.startswith("#"))
    )
    high = next(r for r in rows if float(r["epss"]) > 0.5)
    low = min(rows, key=lambda r: float(r["epss"]))
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H"
    hot = prioritize({"cve": high["cve"], "kev": False, "epss": high, "cvss": vector})
    cold = prioritize({"cve": low["cve"], "kev": False, "epss": low, "cvss": vector})
    assert hot.inputs["ssvc"]["points"][0]["value"] == "Public PoC"
    assert cold.inputs["ssvc"]["points"][0]["value"] == "None"
    assert hot.score > cold.score
    assert "not listed in CISA KEV" in hot.reasons


def test_supplier_role_uses_the_supplier_tree(shared_data: Path) -> None:
    item = json.loads((shared_data / "vulns/nvd/CVE-2021-44228.json").read_text("utf-8"))
    got = prioritize({"cve": "CVE-2021-44228", "record": item, "role": "supplier", "device_class": "pacs"})
    assert got.inputs["ssvc"]["tree"] == "Supplier Patch Development Priority"
    assert got.level == "Immediate"
    assert got.inputs["cvss"]["kind"] == "primary"  # NVD's own assessment chosen over the CNA's


def test_unknown_inputs_are_said_to_be_unknown() -> None:
    got = prioritize({"cve": "CVE-2099-0002"})
    assert "KEV status not given" in got.reasons and "EPSS unknown" in got.reasons
    assert "no valid CVSS 3.x/4.0 vector" in got.reasons
    assert got.inputs["kev"] is None and got.inputs["epss"] is None and got.inputs["cvss"] is None
    assert any("assumed" in r for r in got.reasons)


def test_bad_vector_is_reported_not_fatal() -> None:
    got = prioritize(
        {
            "cve": "CVE-2099-0003",
            "cvss": ["CVSS:3.1/AV:N/AC:L", "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"],
        }
    )
    assert got.inputs["cvss"]["version"] == "3.0"
    assert any(r.startswith("ignored invalid CVSS vector") for r in got.reasons)


def test_bad_inputs() -> None:
    with pytest.raises(PriorityInputError, match=r"outside 0\.\.1"):
        prioritize({"cve": "CVE-2099-0004", "epss": 1.5})
    with pytest.raises(PriorityInputError, match="unknown finding inputs: severity"):
        prioritize({"cve": "CVE-2099-0004", "severity": "high"})
    with pytest.raises(PriorityInputError, match="role"):
        prioritize({"cve": "CVE-2099-0004", "role": "hospital"})


@settings(max_examples=200, deadline=None)
@given(
    kev=st.one_of(st.none(), st.booleans()),
    epss=st.one_of(st.none(), st.floats(0, 1)),
    cvss=st.sampled_from(
        [None, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"]
    ),
    device_class=st.sampled_from(["infusion_pump", "printer", "pacs", None]),
    hint=st.sampled_from(["internet", "vlan", "no_listener", None]),
)
def test_score_stays_in_its_level_band(
    kev: bool | None, epss: float | None, cvss: str | None, device_class: str | None, hint: str | None
) -> None:
    got = prioritize(
        FindingInputs(
            "CVE-2099-0005", kev=kev, epss=epss, cvss=cvss, device_class=device_class, exposure_hint=hint
        )
    )
    floor = {"Immediate": 75, "Out-of-Cycle": 50, "Scheduled": 25, "Defer": 0}[got.level]
    assert floor <= got.score < floor + 25
    assert got.rank == LEVELS.index(got.level) + 1
    assert got.inputs["ssvc"]["decision"] == got.level


def test_kev_dataclass_passthrough() -> None:
    got = prioritize({"cve": "CVE-2099-0006", "kev": Kev(True, "2024-01-01"), "epss": 0.01})
    assert got.inputs["kev"]["listed"] is True
    assert got.inputs["ssvc"]["points"][0]["source"] == "listed in CISA KEV"
