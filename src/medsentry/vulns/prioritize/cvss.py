"""CVSS v3.0 / v3.1 / v4.0 vectors scored with the `cvss` library, and the choice between several scores.

A CVE often carries several assessments: NVD's own ("Primary" in the NVD API), the CNA's ("Secondary" in
NVD, `containers.cna.metrics` in CVE 5), CISA's vulnrichment ADP. `best()` picks one, newest CVSS
version first (4.0 > 3.1 > 3.0), then NVD's primary assessment over the CNA's over an ADP's, and says
which it used and what else was available. Scores are always recomputed from the vector, never copied
from the feed, so a vector and its score cannot disagree.

CVSS v2 is not used for prioritisation: its scale is not comparable and NVD stopped producing it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError

VERSIONS = ("4.0", "3.1", "3.0")  # preference order
BASE_V4 = ("AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA")
BASE_V3 = ("AV", "AC", "PR", "UI", "S", "C", "I", "A")
# v4 supplemental metrics never change a score (CVSS v4.0 specification, section 5)
SUPPLEMENTAL_V4 = ("S", "AU", "R", "V", "RE", "U")
SOURCE_RANK = {"primary": 0, "cna": 1, "secondary": 1, "adp": 2, "": 3}
MAX_VECTOR = 512  # a real v4.0 vector with every metric is about 300 characters


class CvssVectorError(ValueError):
    """A vector the `cvss` library rejects, or one of an unsupported version."""


@dataclass(frozen=True, slots=True)
class CvssScore:
    version: str  # "3.0", "3.1" or "4.0"
    vector: str  # normalised by the library (metric order fixed), with any threat/environmental metrics
    base_score: float  # base metrics only (v4: CVSS-B), comparable with the score feeds publish
    severity: str  # of base_score: NONE / LOW / MEDIUM / HIGH / CRITICAL
    source: str = ""  # who assessed it: "nvd@nist.gov", a CNA's e-mail or UUID, "CISA-ADP"
    kind: str = ""  # "primary" (NVD's own), "secondary"/"cna", "adp", or "" when unknown
    # the score with the vector's temporal/threat/environmental metrics (v4: CVSS-BT/BE/BTE), if it has any
    adjusted_score: float | None = None

    @property
    def metrics(self) -> dict[str, str]:
        """Metric abbreviation -> value as in the vector, e.g. {"AV": "N", ...}; the prefix left out."""
        return dict(part.split(":", 1) for part in self.vector.split("/")[1:])

    def describe(self) -> str:
        who = f" from {self.source}" if self.source else ""
        kind = f" ({self.kind})" if self.kind else ""
        extra = "" if self.adjusted_score is None else f" (threat/environmental: {self.adjusted_score:.1f})"
        return f"CVSS {self.version} {self.base_score:.1f} {self.severity}{who}{kind}: {self.vector}{extra}"


def score(vector: str, source: str = "", kind: str = "") -> CvssScore:
    """Validate and score one vector; raises CvssVectorError with the reason for a bad one."""
    if not isinstance(vector, str):
        raise CvssVectorError(f"CVSS vector must be text, not {type(vector).__name__}")
    if isinstance(source, str) and isinstance(kind, str):
        return _score(vector, source, kind)
    return _score.__wrapped__(vector, source, kind)


# A store repeats a few hundred distinct vectors across all its records; scoring one through the `cvss`
# library is most of a finding's priority. The result is frozen and a bad vector raises (not cached).
@lru_cache(maxsize=4096)
def _score(vector: str, source: str, kind: str) -> CvssScore:
    text = vector.strip()
    if len(text) > MAX_VECTOR:
        raise CvssVectorError(f"CVSS vector too long ({len(text)} characters): {text[:60]!r}...")
    try:
        if text.startswith("CVSS:4.0/"):
            v4 = CVSS4(text)
            given = [k for k in _metric_names(text) if k not in SUPPLEMENTAL_V4]
            if any(k not in BASE_V4 for k in given):
                # the library scores every metric present; feeds publish the base-only score
                base = CVSS4("CVSS:4.0/" + "/".join(f"{k}:{v4.metrics[k]}" for k in BASE_V4))
                adjusted: float | None = float(v4.base_score)
            else:
                base, adjusted = v4, None
            return CvssScore(
                "4.0",
                v4.clean_vector(),
                float(base.base_score),
                base.severity.upper(),
                source,
                kind,
                adjusted,
            )
        if text.startswith(("CVSS:3.0/", "CVSS:3.1/")):
            v3 = CVSS3(text)
            scores = v3.scores()
            extra = any(k not in BASE_V3 for k in _metric_names(text))
            return CvssScore(
                text[5:8],
                v3.clean_vector(),
                float(scores[0]),
                v3.severities()[0].upper(),
                source,
                kind,
                float(scores[2]) if extra else None,
            )
    except CVSSError as exc:
        raise CvssVectorError(f"invalid CVSS vector {text!r:.120}: {exc}") from exc
    raise CvssVectorError(
        f"not a CVSS 3.0/3.1/4.0 vector (expected a 'CVSS:3.1/...' or 'CVSS:4.0/...' prefix): {text!r:.120}"
    )


def _metric_names(vector: str) -> list[str]:
    return [part.split(":", 1)[0] for part in vector.split("/")[1:]]


@dataclass(frozen=True, slots=True)
class CvssChoice:
    chosen: CvssScore
    alternatives: tuple[CvssScore, ...]  # the other valid assessments, best first
    rejected: tuple[str, ...]  # vectors that did not validate, with the reason

    def reason(self) -> str:
        text = f"used {self.chosen.describe()}"
        if self.alternatives:
            others = "; ".join(
                f"{a.version} {a.base_score:.1f} from {a.source or 'unknown'}" for a in self.alternatives
            )
            text += f" (also available: {others})"
        return text


def _rank(s: CvssScore) -> tuple[int, int]:
    return VERSIONS.index(s.version), SOURCE_RANK.get(s.kind.lower(), 3)


def best(candidates: Iterable[CvssScore | tuple[str, str, str]]) -> CvssChoice | None:
    """The preferred assessment among `candidates` (scores, or (vector, source, kind) to be scored)."""
    valid: list[CvssScore] = []
    rejected: list[str] = []
    for c in candidates:
        if isinstance(c, CvssScore):
            valid.append(c)
            continue
        try:
            valid.append(score(*c))
        except CvssVectorError as exc:
            rejected.append(str(exc))
    if not valid:
        return None
    valid.sort(key=_rank)
    return CvssChoice(valid[0], tuple(valid[1:]), tuple(rejected))


_NVD_KEYS = {"cvssMetricV40": "4.0", "cvssMetricV31": "3.1", "cvssMetricV30": "3.0"}


def from_nvd(item: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(vector, source, kind) of every CVSS 3.x/4.0 metric in an NVD API 2.0 item (`{"cve": {...}}`)."""
    cve = item.get("cve", item)
    metrics = cve.get("metrics") if isinstance(cve, Mapping) else None
    found: list[tuple[str, str, str]] = []
    if not isinstance(metrics, Mapping):
        return found
    for key in _NVD_KEYS:
        entries = metrics.get(key)
        for entry in entries if isinstance(entries, list) else []:
            data = entry.get("cvssData") if isinstance(entry, Mapping) else None
            if isinstance(data, Mapping) and isinstance(data.get("vectorString"), str):
                kind = str(entry.get("type", "")).lower()
                found.append((data["vectorString"], str(entry.get("source", "")), kind))
    return found


_CVE5_KEYS = ("cvssV4_0", "cvssV3_1", "cvssV3_0")


def from_cve5(record: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(vector, source, kind) of every CVSS 3.x/4.0 metric in a CVE JSON 5 record: CNA, then ADPs."""
    containers = record.get("containers")
    if not isinstance(containers, Mapping):
        return []
    tagged: list[tuple[Mapping[str, Any], str]] = []
    if isinstance(containers.get("cna"), Mapping):
        tagged.append((containers["cna"], "cna"))
    adps = containers.get("adp")
    tagged.extend((a, "adp") for a in (adps if isinstance(adps, list) else []) if isinstance(a, Mapping))
    found: list[tuple[str, str, str]] = []
    for container, kind in tagged:
        meta = container.get("providerMetadata")
        source = str(meta.get("shortName", "")) if isinstance(meta, Mapping) else ""
        metrics = container.get("metrics")
        for metric in metrics if isinstance(metrics, list) else []:
            for key in _CVE5_KEYS:
                data = metric.get(key) if isinstance(metric, Mapping) else None
                if isinstance(data, Mapping) and isinstance(data.get("vectorString"), str):
                    found.append((data["vectorString"], source, kind))
    return found
