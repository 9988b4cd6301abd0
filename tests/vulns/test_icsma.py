"""CSAF matching: the ICSMA known-answer targets, and product-tree features on small documents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.vulns.match.csaf import Advisory, CsafError, match_device
from medsentry.vulns.match.vendors import families

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import eval_icsma


@pytest.fixture(scope="module")
def icsma(shared_data: Path) -> Path:
    return shared_data / "vulns" / "csaf-icsma"


def test_icsma_known_answers(icsma: Path) -> None:
    r = eval_icsma.run(icsma)
    assert r.advisories == 124
    assert r.products > 500 and r.devices_inside > 500 and r.devices_outside > 300
    assert r.recall == 1.0, r.misses[:10]
    assert r.precision >= 0.95, r.false_positives[:10]
    assert not r.unparsed, r.unparsed


def test_icsma_real_advisories(icsma: Path) -> None:
    doc = json.loads((icsma / "2021" / "icsma-21-152-01.json").read_text("utf-8"))
    # Hillrom Welch Allyn Connex Spot Monitor < 1.52; the device is identified under Baxter's family
    got = match_device(doc, "Baxter", "Welch Allyn Connex Spot Monitor (CSM)", "1.51")
    assert {m.cve for m in got if m.affected} == {"CVE-2021-27408", "CVE-2021-27410"}
    assert all(m.range_text == "< 1.52" and m.remediation for m in got)
    assert match_device(doc, "Hillrom", "Connex Spot Monitor", "1.52") == []
    # 18-025-01 spells the vendor "Phillips"
    doc = json.loads((icsma / "2018" / "icsma-18-025-01.json").read_text("utf-8"))
    assert [
        m
        for m in match_device(doc, "Koninklijke Philips N.V.", "IntelliSpace Cardiovascular", "2.3.0")
        if m.affected
    ]
    assert not match_device(doc, "Philips", "IntelliSpace Cardiovascular", "2.3.1")
    assert not match_device(doc, "GE Healthcare", "IntelliSpace Cardiovascular", "2.0")
    # model variant in the version field: Medtronic MiniMed 620G "MMT-1710"
    doc = json.loads((icsma / "2022" / "icsma-22-263-01.json").read_text("utf-8"))
    assert [m for m in match_device(doc, "Medtronic", "MMT-1710", None) if m.affected]
    assert [m for m in match_device(doc, "Medtronic", "MiniMed 620G", "4.2") if m.affected]


def test_vendor_aliases() -> None:
    assert families("Phillips") == families("Philips") == families("Koninklijke Philips N.V.")
    assert families("General Electric (GE)") & families("GE HealthCare")
    assert families("Becton, Dickinson and Company (BD)") & families("BD")
    assert families("Hillrom") & families("Baxter")
    assert families("St. Jude Medical") & families("Abbott Laboratories")
    assert "windriver" in families("ENEA, Green Hills Software, ITRON, IP Infusion, and Wind River")
    assert not families("Philips") & families("Siemens Healthineers")
    assert families("") == frozenset()


def _doc(tree: dict[str, Any], vulns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "document": {"tracking": {"id": "TEST-1"}, "csaf_version": "2.0"},
        "product_tree": tree,
        "vulnerabilities": vulns,
    }


def _branch(category: str, name: str, *branches: dict[str, Any]) -> dict[str, Any]:
    return {"category": category, "name": name, "branches": list(branches)}


def _leaf(category: str, name: str, product: str, product_id: str) -> dict[str, Any]:
    return {"category": category, "name": name, "product": {"name": product, "product_id": product_id}}


def test_status_categories_fixed_and_first_fixed() -> None:
    versions = (
        _leaf("product_version_range", "vers:generic/<3.0", "InfuseX < 3.0", "A"),
        _leaf("product_version", "3.0", "InfuseX 3.0", "F"),
    )
    tree = {"branches": [_branch("vendor", "Acme Medical", _branch("product_name", "InfuseX", *versions))]}
    vulns = [
        {
            "cve": "CVE-2099-0001",
            "product_status": {"known_affected": ["A"], "first_fixed": ["F"]},
            "remediations": [{"category": "vendor_fix", "details": "update to 3.0", "product_ids": ["A"]}],
        }
    ]
    adv = Advisory(_doc(tree, vulns))
    [m] = adv.match("Acme Medical", "InfuseX", "2.9")
    assert (m.cve, m.status, m.affected, m.remediation[0].details) == (
        "CVE-2099-0001",
        "known_affected",
        True,
        "update to 3.0",
    )
    assert [(m.status, m.affected) for m in adv.match("Acme Medical", "InfuseX", "3.1")] == [
        ("first_fixed", False)
    ]
    assert [m.status for m in adv.match("Acme Medical", "InfuseX", "3.0")] == ["first_fixed"]


def test_known_not_affected_beats_all_versions() -> None:
    versions = (
        _leaf("product_version_range", "vers:all/*", "Monitor M1 all", "ALL"),
        _leaf("product_version", "5.1", "Monitor M1 5.1", "OK"),
    )
    tree = {"branches": [_branch("vendor", "Acme", _branch("product_name", "Monitor M1", *versions))]}
    vulns = [
        {"cve": "CVE-2099-0002", "product_status": {"known_affected": ["ALL"], "known_not_affected": ["OK"]}}
    ]
    adv = Advisory(_doc(tree, vulns))
    assert [m.status for m in adv.match("Acme", "Monitor M1", "5.1")] == ["known_not_affected"]
    assert [m.status for m in adv.match("Acme", "Monitor M1", "5.0")] == ["known_affected"]


def test_full_product_names_relationships_and_helpers() -> None:
    tree = {
        "full_product_names": [
            {"name": "Acme Gateway < 2.4.0", "product_id": "GW"},
            {"name": "Acme Pump", "product_id": "PUMP"},
            {
                "name": "Acme Pump Firmware",
                "product_id": "FW",
                "product_identification_helper": {"cpe": "cpe:2.3:o:acme:pump_firmware:*:*:*:*:*:*:*:*"},
            },
            {"name": "WiFi module 1.2", "product_id": "WIFI"},
        ],
        "branches": [
            _branch(
                "vendor",
                "Acme",
                _branch(
                    "product_name",
                    "Pump Firmware",
                    _leaf("product_version_range", "<= 7.1", "Pump Firmware <= 7.1", "FW71"),
                ),
            )
        ],
        "relationships": [
            {
                "category": "installed_on",
                "product_reference": "FW71",
                "relates_to_product_reference": "PUMP",
                "full_product_name": {"name": "Pump Firmware <= 7.1 on Acme Pump", "product_id": "P-FW"},
            }
        ],
    }
    vulns = [{"cve": "CVE-2099-0003", "product_status": {"known_affected": ["GW", "P-FW"]}}]
    adv = Advisory(_doc(tree, vulns))
    assert adv.products["GW"].name == "Acme Gateway" and adv.products["GW"].spec.text == "< 2.4.0"
    assert [m.product_id for m in adv.match("Acme", "Gateway", "2.3")] == ["GW"]
    assert adv.match("Acme", "Gateway", "2.4.0") == []
    assert [m.product_id for m in adv.match("Acme", "Pump", "7.0")] == ["P-FW"]
    assert adv.match("Acme", "Pump", "7.2") == []


def test_product_family_branch() -> None:
    mx40 = _leaf("product_version_range", "vers:generic/<B.06.18", "IntelliVue MX40 < B.06.18", "MX40")
    family = _branch("product_family", "IntelliVue", _branch("product_name", "MX40", mx40))
    tree = {"branches": [_branch("vendor", "Philips", family)]}
    adv = Advisory(_doc(tree, [{"cve": "CVE-2099-0005", "product_status": {"known_affected": ["MX40"]}}]))
    assert [m.product_id for m in adv.match("Philips", "IntelliVue MX40", "B.06.17") if m.affected] == [
        "MX40"
    ]
    assert [m.product_id for m in adv.match("Philips", "MX40", "B.06.17") if m.affected] == ["MX40"]
    assert adv.match("Philips", "IntelliVue MX40", "B.06.18") == []


def test_unknown_version_is_a_candidate_not_a_finding() -> None:
    scanner = _leaf("product_version_range", "< 4.0", "Scanner S < 4.0", "S")
    tree = {"branches": [_branch("vendor", "Acme", _branch("product_name", "Scanner S", scanner))]}
    adv = Advisory(_doc(tree, [{"cve": "CVE-2099-0004", "product_status": {"known_affected": ["S"]}}]))
    [m] = adv.match("Acme", "Scanner S", None)
    assert m.status == "known_affected" and not m.affected and m.confidence < 0.75
    [m] = adv.match("Acme", "Scanner S", "3.9")
    assert m.affected


def test_bad_documents() -> None:
    with pytest.raises(CsafError):
        Advisory({"product_tree": [], "vulnerabilities": []})
    with pytest.raises(CsafError):
        Advisory({"product_tree": {}, "vulnerabilities": {}})
    assert Advisory({}).match("Acme", "X", "1") == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "branches",
                    "category",
                    "name",
                    "product",
                    "product_id",
                    "vendor",
                    "product_status",
                    "known_affected",
                    "cve",
                    "relationships",
                    "full_product_names",
                    "remediations",
                    "product_ids",
                ]
            ),
            kids,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(tree=_json, vulns=_json)
def test_fuzz_csaf_documents(tree: Any, vulns: Any) -> None:
    try:
        adv = Advisory({"product_tree": tree, "vulnerabilities": vulns})
    except CsafError:
        return
    for m in adv.match("Acme", "X", "1.0"):
        assert m.status
