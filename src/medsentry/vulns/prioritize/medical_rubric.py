"""The MITRE "Rubric for Applying CVSS to Medical Devices" as a questionnaire that yields a CVSS vector.

Questions and the answer -> metric-value flow are data (data/cvss_medical_rubric.yaml; its header says
which parts are paraphrased). `assess(answers)` walks each base metric's questions with the given
answers (question id -> yes/no, or a listed choice), returns the CVSS v3.1 vector, its score from the
`cvss` library, and the path taken. Missing answers are an error that names every question still needed
on the path, so a caller can ask exactly those (`questions_needed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from medsentry.vulns.prioritize.cvss import CvssScore, score

METRIC_ORDER = ("AV", "AC", "PR", "UI", "S", "C", "I", "A")
_IMPACT_RANK = {"N": 0, "L": 1, "H": 2}
_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}


class RubricError(ValueError):
    """Unknown questions or answers, or answers that describe no scorable attack."""


class RubricIncomplete(RubricError):
    def __init__(self, needed: list[str]) -> None:
        self.needed = needed
        texts = "; ".join(f"{q}: {question(q)['text']}" for q in needed)
        super().__init__(f"the rubric needs answers to {', '.join(needed)} ({texts})")


@dataclass(frozen=True, slots=True)
class Step:
    metric: str
    question: str  # id, e.g. "XAVN"
    text: str
    answer: str  # "yes" / "no" / a choice
    outcome: str  # "next XAVT" or "AV:N"


@dataclass(frozen=True, slots=True)
class RubricResult:
    vector: str
    cvss: CvssScore
    metrics: dict[str, str]
    path: tuple[Step, ...]

    def reasons(self) -> list[str]:
        c = self.cvss
        out = [f"MITRE medical-device CVSS rubric: {c.vector} = {c.base_score} {c.severity}"]
        out += [f"  {s.metric} {s.question} {s.answer} -> {s.outcome}: {s.text}" for s in self.path]
        return out


@cache
def rubric() -> dict[str, Any]:
    doc = yaml.safe_load((files("medsentry") / "data" / "cvss_medical_rubric.yaml").read_text("utf-8"))
    _check(doc)
    return doc


def question(qid: str) -> dict[str, Any]:
    try:
        return rubric()["questions"][qid]
    except KeyError:
        raise RubricError(f"unknown rubric question {qid!r}") from None


def _check(doc: dict[str, Any]) -> None:
    """Fail loudly on a broken data file: dangling `next`, missing branches, cycles."""
    questions = doc["questions"]
    for qid, q in questions.items():
        branches = list(q["choices"].values()) if "choices" in q else [q.get("yes"), q.get("no")]
        for b in branches:
            if isinstance(b, dict) and "next" in b and b["next"] not in questions:
                raise RubricError(f"rubric question {qid} leads to unknown {b['next']}")
            if b is None or (isinstance(b, dict) and "next" not in b and "value" not in b):
                raise RubricError(f"rubric question {qid} has an answer with no outcome")
    for name, m in doc["metrics"].items():
        for start in m.get("chains", [m.get("start")]):
            seen: set[str] = set()
            todo = [start]
            while todo:
                qid = todo.pop()
                if qid in seen:
                    raise RubricError(f"rubric metric {name}: cycle through {qid}")
                seen.add(qid)
                q = questions[qid]
                branches = list(q["choices"].values()) if "choices" in q else [q["yes"], q["no"]]
                todo += [b["next"] for b in branches if isinstance(b, dict) and "next" in b]


def _normalise(qid: str, raw: Any) -> str:
    q = question(qid)
    text = str(raw).strip().lower() if not isinstance(raw, bool) else ("yes" if raw else "no")
    if "choices" in q:
        if text not in q["choices"]:
            raise RubricError(f"{qid}: answer {raw!r} is not one of {', '.join(q['choices'])}")
        return text
    if text in _YES:
        return "yes"
    if text in _NO:
        return "no"
    raise RubricError(f"{qid}: answer {raw!r} is not yes or no")


def _walk(metric: str, start: str, answers: Mapping[str, Any], path: list[Step]) -> str:
    """The value one chain reaches; _Unanswered when it stops at a question without an answer."""
    qid = start
    while True:
        q = question(qid)
        if qid not in answers:
            raise _Unanswered(qid)
        answer = _normalise(qid, answers[qid])
        branch = q["choices"][answer] if "choices" in q else q[answer]
        branch = {"value": branch} if isinstance(branch, str) else branch
        if "next" in branch:
            path.append(Step(metric, qid, " ".join(q["text"].split()), answer, f"next {branch['next']}"))
            qid = branch["next"]
            continue
        value = branch["value"]
        if value is None:
            raise RubricError(
                f"{metric}: answering {answer!r} to {qid} leaves no attack vector; the rubric cannot score it"
            )
        path.append(Step(metric, qid, " ".join(q["text"].split()), answer, f"{metric}:{value}"))
        return str(value)


class _Unanswered(Exception):
    def __init__(self, qid: str) -> None:
        self.qid = qid


def assess(answers: Mapping[str, Any]) -> RubricResult:
    """Walk the rubric with `answers` (question id -> answer); RubricIncomplete lists what is missing."""
    unknown = [q for q in answers if q not in rubric()["questions"]]
    if unknown:
        raise RubricError(f"unknown rubric questions: {', '.join(sorted(unknown))}")
    path: list[Step] = []
    metrics: dict[str, str] = {}
    needed: list[str] = []
    for metric in METRIC_ORDER:
        m = rubric()["metrics"][metric]
        reached: list[str] = []
        for start in m.get("chains", [m.get("start")]):
            try:
                reached.append(_walk(metric, start, answers, path))
            except _Unanswered as gap:
                needed.append(gap.qid)
        if reached:
            # C/I/A: the worst credible impact over all categories; other metrics have one chain
            metrics[metric] = max(reached, key=lambda v: _IMPACT_RANK.get(v, 0))
    if needed:
        raise RubricIncomplete(needed)
    vector = "CVSS:3.1/" + "/".join(f"{k}:{metrics[k]}" for k in METRIC_ORDER)
    return RubricResult(
        vector, score(vector, source="MITRE medical-device CVSS rubric"), metrics, tuple(path)
    )


def questions_needed(answers: Mapping[str, Any]) -> list[str]:
    """The next unanswered question of every chain that is not finished, in rubric order."""
    try:
        assess(answers)
    except RubricIncomplete as gap:
        return gap.needed
    return []
