"""Explained prioritisation: CVSS scoring (cvss), CERT/CC SSVC decisions (ssvc), the MITRE medical-device
CVSS rubric (medical_rubric) and one priority per finding combining KEV, EPSS, CVSS and SSVC (priority).
Everything here is pure: no store, no network; callers pass the facts in."""

from medsentry.vulns.prioritize.cvss import CvssChoice, CvssScore, CvssVectorError, best, score
from medsentry.vulns.prioritize.medical_rubric import RubricError, RubricIncomplete, RubricResult, assess
from medsentry.vulns.prioritize.priority import (
    Epss,
    FindingInputs,
    Kev,
    Priority,
    PriorityInputError,
    prioritize,
)
from medsentry.vulns.prioritize.ssvc import (
    Explained,
    Point,
    SsvcError,
    Vulnrichment,
    deployer,
    supplier,
    vulnrichment,
)

__all__ = [
    "CvssChoice",
    "CvssScore",
    "CvssVectorError",
    "Epss",
    "Explained",
    "FindingInputs",
    "Kev",
    "Point",
    "Priority",
    "PriorityInputError",
    "RubricError",
    "RubricIncomplete",
    "RubricResult",
    "SsvcError",
    "Vulnrichment",
    "assess",
    "best",
    "deployer",
    "prioritize",
    "score",
    "supplier",
    "vulnrichment",
]
