"""The MITRE medical-device CVSS rubric questionnaire (medsentry.vulns.prioritize.medical_rubric)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medsentry.vulns.prioritize import medical_rubric as rubric

NO_IMPACT = {
    q: "no"
    for q in (
        "XCP",
        "XCD",
        "XCT",
        "XCW",
        "XCS",
        "XIP",
        "XID",
        "XIT",
        "XIW",
        "XIS",
        "XAP",
        "XAD",
        "XAT",
        "XAW",
        "XAS",
    )
} | {"XCO": "none", "XIO": "none", "XAO": "none"}


def answers(**given: Any) -> dict[str, Any]:
    return NO_IMPACT | given


NETWORK_UNAUTH = {"XAVN": "yes", "XACL": "yes", "XPRL": "yes", "XUI": "no", "XS": "no"}


@pytest.mark.parametrize(
    ("given", "vector", "base"),
    [
        # remote, unauthenticated change of therapy on an infusion pump
        (NETWORK_UNAUTH | {"XIT": "yes", "XAT": "yes"}, "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:H/A:H", 9.1),
        # Bluetooth with hard-coded credentials, full control of a monitor
        (
            {"XAVN": "no", "XAVT": "no", "XAVW": True, "XACL": "yes", "XPRL": False, "XPRZ": True}
            | {"XUI": "no", "XS": "no", "XCS": "yes", "XID": "yes", "XAD": "yes"},
            "CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            8.8,
        ),
        # malicious USB stick handed to staff: local, user interaction required
        (
            {"XAVN": "no", "XAVT": "no", "XAVW": "no", "XAVR": "no", "XAVP": "yes", "XAVPA": "yes"}
            | {
                "XACL": "yes",
                "XPRL": "yes",
                "XUI": "yes",
                "XS": "no",
                "XCS": "yes",
                "XIS": "yes",
                "XAS": "yes",
            },
            "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H",
            7.8,
        ),
        # JTAG on an opened device
        (
            {"XAVN": "no", "XAVT": "no", "XAVW": "no", "XAVR": "no", "XAVP": "yes", "XAVPA": "no"}
            | {
                "XACL": "yes",
                "XPRL": "yes",
                "XUI": "no",
                "XS": "no",
                "XCS": "yes",
                "XIS": "yes",
                "XAS": "yes",
            },
            "CVSS:3.1/AV:P/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            6.8,
        ),
        # service-technician account needed over the hospital network
        (
            {"XAVN": "yes", "XACL": "yes", "XPRL": "no", "XPRZ": "no", "XPRS": "yes", "XUI": "no", "XS": "no"}
            | {"XCP": "yes", "XCPM": "yes", "XIT": "yes", "XAT": "yes"},
            "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H",
            7.2,
        ),
        # one patient's PHI readable on the same VLAN, race condition needed
        (
            {"XAVN": "no", "XAVT": "yes", "XACL": "no", "XPRL": "no", "XPRZ": "no", "XPRS": "no", "XUI": "no"}
            | {"XS": "no", "XCP": "yes", "XCPM": "no"},
            "CVSS:3.1/AV:A/AC:H/PR:L/UI:N/S:U/C:L/I:N/A:N",
            2.6,
        ),
    ],
)
def test_flows_produce_known_vectors(given: dict[str, Any], vector: str, base: float) -> None:
    result = rubric.assess(answers(**given))
    assert result.vector == vector
    assert result.cvss.base_score == base
    assert result.metrics == dict(part.split(":") for part in vector.split("/")[1:])
    # the path holds one step per answered question on the route, and only those
    on_path = {s.question for s in result.path}
    assert {q for q in given if q not in NO_IMPACT} <= on_path
    assert result.reasons()[0].startswith("MITRE medical-device CVSS rubric: " + vector)


def test_medtronic_conexus_telemetry_matches_the_advisory(shared_data: Path) -> None:
    # ICSMA-19-080-01, CVE-2019-6538: the Conexus RF telemetry protocol has no authentication; an attacker
    # in radio range can write to the implanted device, reaching its therapy functions.
    advisory = json.loads((shared_data / "vulns/csaf-icsma/2019/icsma-19-080-01.json").read_text("utf-8"))
    published = next(v for v in advisory["vulnerabilities"] if v["cve"] == "CVE-2019-6538")["scores"][0][
        "cvss_v3"
    ]
    result = rubric.assess(
        answers(
            XAVN="no",  # not over a routed network
            XAVT="no",  # no shared LAN segment
            XAVW="yes",  # MICS-band RF telemetry in radio range
            XACL="yes",
            XPRL="yes",  # the protocol has no authentication
            XUI="no",
            XS="yes",  # a protocol flaw that reaches the implant's therapy functions
            XIT="yes",
            XAT="yes",
        )
    )
    ours = result.vector.split("/", 1)[1]
    assert ours == published["vectorString"].split("/", 1)[1]  # same base metrics (advisory used v3.0)
    assert result.cvss.base_score == published["baseScore"] == 9.3


def test_impact_is_the_worst_category() -> None:
    result = rubric.assess(answers(**NETWORK_UNAUTH, XCW="yes", XCD="yes", XIW="yes", XIO="all", XAO="some"))
    assert (result.metrics["C"], result.metrics["I"], result.metrics["A"]) == ("L", "H", "L")
    c_steps = [s for s in result.path if s.metric == "C"]
    assert len(c_steps) == 6  # every category asked


def test_missing_answers_name_the_next_questions() -> None:
    with pytest.raises(rubric.RubricIncomplete) as err:
        rubric.assess({"XAVN": "no"})
    assert err.value.needed[0] == "XAVT"  # the route continues at XAVT
    assert "XACL" in err.value.needed and "XCP" in err.value.needed
    assert "XAVT:" in str(err.value)  # the question text is in the message
    assert rubric.questions_needed(answers(**NETWORK_UNAUTH)) == []
    assert rubric.questions_needed({k: v for k, v in answers(**NETWORK_UNAUTH).items() if k != "XS"}) == [
        "XS"
    ]


def test_bad_answers() -> None:
    with pytest.raises(rubric.RubricError, match="not yes or no"):
        rubric.assess(answers(**NETWORK_UNAUTH | {"XACL": "maybe"}))
    with pytest.raises(rubric.RubricError, match="not one of none, some, all"):
        rubric.assess(answers(**NETWORK_UNAUTH, XCO="lots"))
    with pytest.raises(rubric.RubricError, match="unknown rubric questions: XZZ"):
        rubric.assess(answers(**NETWORK_UNAUTH, XZZ="yes"))
    no_vector = answers(XAVN="no", XAVT="no", XAVW="no", XAVR="no", XAVP="no")
    with pytest.raises(rubric.RubricError, match="cannot score"):
        rubric.assess(no_vector | {k: v for k, v in NETWORK_UNAUTH.items() if k != "XAVN"})


def test_data_file_is_complete() -> None:
    doc = rubric.rubric()
    assert set(doc["metrics"]) == set(rubric.METRIC_ORDER)
    assert "PARAPHRASED" in (Path(rubric.__file__).parents[2] / "data/cvss_medical_rubric.yaml").read_text(
        "utf-8"
    )
    # every question is reachable from some metric's start or chain
    reachable: set[str] = set()
    todo = [q for m in doc["metrics"].values() for q in m.get("chains", [m.get("start")])]
    while todo:
        qid = todo.pop()
        if qid in reachable:
            continue
        reachable.add(qid)
        q = doc["questions"][qid]
        branches = list(q["choices"].values()) if "choices" in q else [q["yes"], q["no"]]
        todo += [b["next"] for b in branches if isinstance(b, dict) and "next" in b]
    assert reachable == set(doc["questions"])
