"""One priority per finding, from KEV, EPSS, CVSS and an SSVC decision, stating every input it used.

The level is the SSVC decision (deployer tree for a device in the hospital, supplier tree for a product
of a manufacturer): Immediate, Out-of-Cycle, Scheduled or Defer. SSVC is a decision, not a score, so
findings with the same level are ordered by `score` (0-100):

    score = band(level) + 24.9 × mean(known components)

with bands Immediate 75, Out-of-Cycle 50, Scheduled 25, Defer 0, and components CVSS base score / 10,
EPSS percentile (probability when no percentile is known), and KEV listing (1 or 0, when given). A
finding's score therefore never crosses into another level's band. Unknown inputs are left out of the
mean and said to be unknown; SSVC decision points that had to be assumed say so in the SSVC reasons.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from medsentry.vulns.prioritize import cvss as cvsslib
from medsentry.vulns.prioritize import ssvc as ssvclib

LEVELS = ("Immediate", "Out-of-Cycle", "Scheduled", "Defer")  # rank 1..4
_BAND = {"Immediate": 75.0, "Out-of-Cycle": 50.0, "Scheduled": 25.0, "Defer": 0.0}
_BAND_WIDTH = 24.9  # keeps the top of a band below the next band's floor


class PriorityInputError(ValueError):
    """An input outside its domain (EPSS outside 0..1, unknown role, ...)."""


@dataclass(frozen=True, slots=True)
class Kev:
    listed: bool
    date_added: str = ""
    due_date: str = ""
    ransomware: str = ""  # "Known" / "Unknown" / ""
    source: str = "CISA KEV"


@dataclass(frozen=True, slots=True)
class Epss:
    probability: float
    percentile: float | None = None
    date: str = ""


@dataclass(frozen=True, slots=True)
class FindingInputs:
    """What is known about one vulnerability on one subject. Everything but `cve` is optional."""

    cve: str
    kev: Any = None  # bool, a records.KevEntry, a KEV catalog entry dict, or a Kev
    epss: Any = None  # float, a records.EpssScore, {"epss", "percentile"}, or an Epss
    cvss: Any = None  # CvssScore / vector / records.Cvss / (vector, source, kind), or a list of them
    ssvc: Any = None  # Vulnrichment, an options dict (records.Vulnerability.ssvc) or a raw record
    record: Mapping[str, Any] | None = None  # raw NVD 2.0 item or CVE 5 record: CVSS and SSVC read from it
    vulnerability: Any = None  # a records.Vulnerability: cvss4/cvss3 and ssvc read from it
    device_class: str | None = None
    exposure_hint: str | None = None
    role: str = "deployer"  # "deployer" (a device in the hospital) or "supplier" (a product)
    given: Mapping[str, str] = field(default_factory=dict)  # SSVC decision points fixed by the caller


@dataclass(frozen=True, slots=True)
class Priority:
    level: str  # one of LEVELS
    rank: int  # 1 = most urgent
    score: float  # 0-100, see module docstring
    reasons: list[str]
    inputs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "rank": self.rank,
            "score": self.score,
            "reasons": list(self.reasons),
            "inputs": self.inputs,
        }


def _kev(value: Any) -> Kev | None:
    if value is None:
        return None
    if value is False:
        return Kev(False)
    if value is True:
        return Kev(True)
    if isinstance(value, Kev):
        return value
    if isinstance(value, Mapping):
        return Kev(
            True,
            str(value.get("dateAdded", value.get("date_added", ""))),
            str(value.get("dueDate", value.get("due_date", "")) or ""),
            str(value.get("knownRansomwareCampaignUse", "")),
        )
    ransomware = getattr(value, "ransomware", None)
    return Kev(
        True,
        str(getattr(value, "date_added", "") or ""),
        str(getattr(value, "due_date", "") or ""),
        "" if ransomware is None else ("Known" if ransomware else "Unknown"),
    )


def _epss(value: Any) -> Epss | None:
    if value is None:
        return None
    if isinstance(value, Epss):
        found = value
    elif isinstance(value, int | float):
        found = Epss(float(value))
    elif isinstance(value, Mapping):
        pct = value.get("percentile")
        found = Epss(float(value["epss"]), None if pct is None else float(pct), str(value.get("date", "")))
    else:
        pct = getattr(value, "percentile", None)
        when = getattr(value, "date", None)
        found = Epss(
            float(value.epss), None if pct is None else float(pct), "" if when is None else str(when)
        )
    for name, v in (("EPSS probability", found.probability), ("EPSS percentile", found.percentile)):
        if v is not None and not 0.0 <= v <= 1.0:
            raise PriorityInputError(f"{name} {v} is outside 0..1")
    return found


def _cvss_candidates(inputs: FindingInputs) -> list[cvsslib.CvssScore | tuple[str, str, str]]:
    raw = inputs.cvss
    items: Iterable[Any] = raw if isinstance(raw, list | tuple) and not _is_triple(raw) else [raw]
    found: list[cvsslib.CvssScore | tuple[str, str, str]] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, cvsslib.CvssScore):
            found.append(item)
        elif isinstance(item, str):
            found.append((item, "", ""))
        elif isinstance(item, tuple):
            found.append(item)
        else:  # records.Cvss and alike: scored again so version, score and vector agree
            found.append((str(item.vector), str(getattr(item, "source", "")), ""))
    if inputs.vulnerability is not None:
        for attr in ("cvss4", "cvss3"):
            c = getattr(inputs.vulnerability, attr, None)
            if c is not None:
                found.append((c.vector, c.source, ""))
    if inputs.record is not None:
        found += (
            cvsslib.from_nvd(inputs.record) if "cve" in inputs.record else cvsslib.from_cve5(inputs.record)
        )
    return found


def _is_triple(value: Any) -> bool:
    return isinstance(value, tuple) and len(value) == 3 and all(isinstance(v, str) for v in value)


def _assessment(inputs: FindingInputs) -> ssvclib.Vulnrichment | Mapping[str, Any] | None:
    if inputs.ssvc is not None:
        return inputs.ssvc
    if inputs.record is not None:
        return ssvclib.vulnrichment(inputs.record)
    options = getattr(inputs.vulnerability, "ssvc", None)
    return options or None


def prioritize(finding_inputs: FindingInputs | Mapping[str, Any]) -> Priority:
    """The priority of one finding, with the reasons and the inputs it was derived from."""
    if isinstance(finding_inputs, FindingInputs):
        inputs = finding_inputs
    else:
        unknown = set(finding_inputs) - set(FindingInputs.__dataclass_fields__)
        if unknown:
            raise PriorityInputError(f"unknown finding inputs: {', '.join(sorted(unknown))}")
        inputs = FindingInputs(**dict(finding_inputs))
    if inputs.role not in ("deployer", "supplier"):
        raise PriorityInputError(f"role must be 'deployer' or 'supplier', not {inputs.role!r}")
    kev = _kev(inputs.kev)
    epss = _epss(inputs.epss)
    choice = cvsslib.best(_cvss_candidates(inputs))
    chosen = choice.chosen if choice else None
    assessed = _assessment(inputs)

    common: dict[str, Any] = {
        "kev": kev is not None and kev.listed,
        "epss": None if epss is None else epss.probability,
        "assessed": assessed,
        "cvss": chosen,
        "device_class": inputs.device_class,
        "given": inputs.given,
    }
    if inputs.role == "deployer":
        decision = ssvclib.deployer(exposure_hint=inputs.exposure_hint, **common)
    else:
        decision = ssvclib.supplier(**common)

    components: list[tuple[str, float]] = []
    reasons = [f"{inputs.cve}: {decision.decision} (SSVC {inputs.role} decision)"]
    if kev is None:
        reasons.append("KEV status not given")
    elif kev.listed:
        detail = ", ".join(
            p
            for p in (
                f"added {kev.date_added}" if kev.date_added else "",
                f"due {kev.due_date}" if kev.due_date else "",
                f"ransomware use {kev.ransomware}" if kev.ransomware else "",
            )
            if p
        )
        reasons.append(f"listed in CISA KEV{f' ({detail})' if detail else ''}")
        components.append(("KEV 1", 1.0))
    else:
        reasons.append("not listed in CISA KEV")
        components.append(("KEV 0", 0.0))
    if epss is not None:
        pct = f", percentile {epss.percentile:.4f}" if epss.percentile is not None else ""
        when = f" as of {epss.date}" if epss.date else ""
        reasons.append(f"EPSS {epss.probability:.4f}{pct}{when}")
        if epss.percentile is not None:
            components.append((f"EPSS percentile {epss.percentile:.4f}", epss.percentile))
        else:
            components.append((f"EPSS {epss.probability:.4f}", epss.probability))
    else:
        reasons.append("EPSS unknown")
    if choice is not None:
        reasons.append(choice.reason())
        components.append((f"CVSS {choice.chosen.base_score:.1f}/10", choice.chosen.base_score / 10))
        reasons += [f"ignored {r}" for r in choice.rejected]
    else:
        reasons.append("no valid CVSS 3.x/4.0 vector")
    reasons += decision.reasons()

    if not components:  # nothing to order by: the middle of the band, and said so
        components.append(("nothing known: 0.5", 0.5))
    within = sum(v for _, v in components) / len(components)
    score = round(_BAND[decision.decision] + _BAND_WIDTH * within, 1)
    terms = ", ".join(name for name, _ in components)
    band = _BAND[decision.decision]
    reasons.append(f"score {score} = {decision.decision} band {band:.0f} + {_BAND_WIDTH} × mean({terms})")

    return Priority(
        decision.decision,
        LEVELS.index(decision.decision) + 1,
        score,
        reasons,
        {
            "cve": inputs.cve,
            "role": inputs.role,
            "kev": None
            if kev is None
            else {"listed": kev.listed, "date_added": kev.date_added, "due_date": kev.due_date},
            "epss": None
            if epss is None
            else {"probability": epss.probability, "percentile": epss.percentile, "date": epss.date},
            "cvss": None
            if chosen is None
            else {
                "version": chosen.version,
                "vector": chosen.vector,
                "base_score": chosen.base_score,
                "severity": chosen.severity,
                "source": chosen.source,
                "kind": chosen.kind,
            },
            "ssvc": decision.to_dict(),
            "device_class": inputs.device_class,
            "exposure_hint": inputs.exposure_hint,
        },
    )
