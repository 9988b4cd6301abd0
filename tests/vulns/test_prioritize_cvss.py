"""CVSS scoring and choice (medsentry.vulns.prioritize.cvss) against real NVD and CVE 5 records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.vulns.prioritize.cvss import CvssScore, CvssVectorError, best, from_cve5, from_nvd, score

NVD_KEYS = ("cvssMetricV40", "cvssMetricV31", "cvssMetricV30")
# In this NVD record the listed baseScore (9.8) contradicts both its own vector and its own
# baseSeverity (HIGH): the vector C:H/I:N/A:N scores 7.5, which is HIGH. We trust the vector.
INCONSISTENT = {("CVE-2018-18074", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N")}


def _nvd_metrics(root: Path) -> list[tuple[str, dict]]:
    found = []
    for path in sorted([*root.glob("vulns/nvd/*.json"), *root.glob("vulns/nvd/unanalyzed/*.json")]):
        item = json.loads(path.read_text("utf-8"))
        for key in NVD_KEYS:
            for entry in item["cve"].get("metrics", {}).get(key, []):
                found.append((item["cve"]["id"], entry["cvssData"]))
    return found


def test_scores_match_nvd_records(shared_data: Path) -> None:
    metrics = _nvd_metrics(shared_data)
    versions = {data["version"] for _, data in metrics}
    assert {"3.0", "3.1", "4.0"} <= versions  # the records cover every version we score
    checked = 0
    for cve, data in metrics:
        got = score(data["vectorString"])
        assert got.version == data["version"]
        if (cve, data["vectorString"]) in INCONSISTENT:
            assert got.base_score != data["baseScore"] and got.severity == data["baseSeverity"]
            continue
        assert (got.base_score, got.severity) == (data["baseScore"], data["baseSeverity"]), (cve, data)
        checked += 1
    assert checked >= 200


def test_v4_base_score_ignores_threat_metrics(shared_data: Path) -> None:
    # CNA records publish CVSS-B (base) scores for vectors that carry E:U; the library's own score is
    # CVSS-BT. Every CVE 5 score must match the published base score, and the BT score stays available.
    seen_threat = lowered = 0
    for path in sorted(
        [*shared_data.glob("vulns/cve5/*.json"), *shared_data.glob("vulns/vulnrichment/*.json")]
    ):
        record = json.loads(path.read_text("utf-8"))
        containers = [record["containers"].get("cna", {}), *record["containers"].get("adp", [])]
        for container in containers:
            for metric in container.get("metrics", []):
                for key in ("cvssV4_0", "cvssV3_1", "cvssV3_0"):
                    if key in metric:
                        got = score(metric[key]["vectorString"])
                        assert got.base_score == metric[key]["baseScore"], (path.name, metric[key])
                        if "/E:" in metric[key]["vectorString"]:
                            seen_threat += 1
                            assert got.adjusted_score is not None
                            assert got.adjusted_score <= got.base_score  # exploit maturity only lowers
                            lowered += got.adjusted_score < got.base_score
    assert seen_threat >= 2 and lowered >= 1  # CVE-2025-0114 and -4619 carry E:U


def test_best_prefers_newest_version_then_nvd_primary(shared_data: Path) -> None:
    item = json.loads((shared_data / "vulns/nvd/CVE-2021-44228.json").read_text("utf-8"))
    choice = best(from_nvd(item))
    assert choice is not None
    assert choice.chosen.kind == "primary" and choice.chosen.source == "nvd@nist.gov"
    assert choice.alternatives and all(a.kind == "secondary" for a in choice.alternatives)
    assert "nvd@nist.gov" in choice.reason() and "also available" in choice.reason()

    v4_records = [
        json.loads(p.read_text("utf-8"))
        for p in sorted(shared_data.glob("vulns/nvd/*.json"))
        if "cvssMetricV40" in p.read_text("utf-8")
    ]
    assert v4_records
    for item in v4_records:
        choice = best(from_nvd(item))
        assert choice is not None and choice.chosen.version == "4.0"


def test_best_orders_sources_within_a_version() -> None:
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    cna = ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", "psirt@vendor", "secondary")
    choice = best(
        [cna, (vector, "nvd@nist.gov", "Primary"), ("CVSS:3.0/AV:L/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N", "x", "")]
    )
    assert choice is not None
    assert choice.chosen.source == "nvd@nist.gov" and choice.chosen.base_score == 9.8
    assert [a.version for a in choice.alternatives] == ["3.1", "3.0"]


def test_best_reports_rejected_vectors_and_keeps_the_valid_one() -> None:
    choice = best(
        [
            ("CVSS:3.1/AV:X", "cna", "secondary"),
            ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "cna", ""),
        ]
    )
    assert choice is not None and choice.chosen.base_score == 9.3
    assert len(choice.rejected) == 1 and "AV:X" in choice.rejected[0]
    assert best([("nonsense", "", "")]) is None
    assert best([]) is None


def test_from_cve5_reads_cna_and_adp(shared_data: Path) -> None:
    record = json.loads((shared_data / "vulns/vulnrichment/CVE-2019-0708.json").read_text("utf-8"))
    found = from_cve5(record)
    assert ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "CISA-ADP", "adp") in found
    choice = best(found)
    assert choice is not None and choice.chosen.base_score == 9.8 and choice.chosen.severity == "CRITICAL"


@pytest.mark.parametrize(
    "vector",
    [
        "",
        "CVSS:3.1/AV:N",  # missing mandatory metrics
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/AV:N",  # duplicate
        "CVSS:3.1/AV:Q/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",  # unknown value
        "AV:N/AC:L/Au:N/C:P/I:P/A:P",  # CVSS v2 is not used
        "CVSS:2.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "cvss:3.1/av:n/ac:l/pr:n/ui:n/s:u/c:h/i:h/a:h",
        "CVSS:4.0/AV:N/AC:L",
        "CVSS:3.1/" + "AV:N/" * 200,
    ],
)
def test_bad_vectors_raise_a_clear_error(vector: str) -> None:
    with pytest.raises(CvssVectorError) as err:
        score(vector)
    assert "CVSS" in str(err.value)


def test_non_text_vector() -> None:
    with pytest.raises(CvssVectorError, match="must be text"):
        score(None)  # type: ignore[arg-type]


def test_metrics_and_description() -> None:
    got = score(" CVSS:3.1/AV:A/AC:H/PR:L/UI:R/S:C/C:L/I:L/A:N ", source="psirt@x", kind="secondary")
    assert got.metrics == {"AV": "A", "AC": "H", "PR": "L", "UI": "R", "S": "C", "C": "L", "I": "L", "A": "N"}
    # by hand from the v3.1 formulas: 1.08 × (impact 2.727 + exploitability 0.946) = 3.97 -> 4.0
    assert got.base_score == 4.0 and got.severity == "MEDIUM"
    assert "psirt@x" in got.describe() and "(secondary)" in got.describe()


V3_METRICS = {
    "AV": "NALP",
    "AC": "LH",
    "PR": "NLH",
    "UI": "NR",
    "S": "UC",
    "C": "NLH",
    "I": "NLH",
    "A": "NLH",
}


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries({k: st.sampled_from(v) for k, v in V3_METRICS.items()}),
    st.sampled_from(["3.0", "3.1"]),
)
def test_every_valid_v3_vector_scores_in_range(metrics: dict[str, str], version: str) -> None:
    vector = f"CVSS:{version}/" + "/".join(f"{k}:{v}" for k, v in metrics.items())
    got = score(vector)
    assert 0.0 <= got.base_score <= 10.0
    assert got.metrics == metrics
    # CVSS v3: no impact on C, I and A means a score of 0
    assert (got.base_score == 0.0) == (metrics["C"] == metrics["I"] == metrics["A"] == "N")


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120),
        st.builds(lambda s: "CVSS:3.1/" + s, st.text(max_size=80)),
        st.builds(lambda s: "CVSS:4.0/" + s, st.text(alphabet="AVCNLHPUTSIRX:/", max_size=80)),
    )
)
def test_parsing_never_fails_other_than_cleanly(text: str) -> None:
    try:
        got = score(text)
    except CvssVectorError as exc:
        assert str(exc)
    else:
        assert isinstance(got, CvssScore) and 0.0 <= got.base_score <= 10.0
