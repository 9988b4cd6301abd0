"""Typed records for vulnerability intelligence, one shape per kind of fact whatever feed it came from.

Raw structures the matcher evaluates (NVD `configurations`, CNA `affected[]`, OSV ranges, CSAF documents)
are kept exactly as published: re-modelling them here would lose what the matcher needs (negate flags,
`versionType`, product-tree relationships). Everything else is reduced to what triage and priority use.
Times are timezone-aware UTC datetimes; NVD's zone-less timestamps are UTC by its documentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

MAX_REFERENCES = 20  # hundreds on famous CVEs (Heartbleed) would only bloat the store
MAX_DESCRIPTION = 2000  # enough for "versions before X" phrases the matcher looks for


@dataclass(frozen=True, slots=True)
class Cvss:
    """One CVSS assessment; `score` is the base score (v4: CVSS-B) recomputed from `vector` by the `cvss`
    library, not copied from the feed."""

    version: str  # "3.0", "3.1" or "4.0"
    vector: str
    score: float
    severity: str  # NONE / LOW / MEDIUM / HIGH / CRITICAL
    source: str = ""  # who scored it: "nvd@nist.gov", a CNA, "CISA-ADP"


@dataclass(frozen=True, slots=True)
class Vulnerability:
    """A CVE as one feed (`source`: "nvd" or "cve5") describes it.

    `affected` holds CVE 5 `affected[]` product entries (vendor, product, versions, cpes, programFiles, ...);
    NVD 2.0's `affected` wrapper ({source, affectedData[]}) is flattened into the same shape, each entry
    gaining `"x_source"` (the CNA that stated it)."""

    id: str
    source: str
    published: datetime | None = None
    modified: datetime | None = None
    status: str = ""  # NVD vulnStatus or CVE 5 state ("Analyzed", "Rejected", "PUBLISHED", ...)
    description: str = ""
    aliases: tuple[str, ...] = ()
    cvss3: Cvss | None = None
    cvss4: Cvss | None = None
    cwes: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    configurations: list[dict[str, Any]] = field(default_factory=list)
    affected: list[dict[str, Any]] = field(default_factory=list)
    ssvc: dict[str, str] | None = None  # decision point -> value, from CISA ADP or NVD ssvcV203
    # the store read this record without its configurations (a scan works on per-product slices of them)
    configurations_left_out: bool = False

    @property
    def has_configurations(self) -> bool:
        return bool(self.configurations) or self.configurations_left_out

    @property
    def rejected(self) -> bool:
        return self.status.lower() == "rejected"


@dataclass(frozen=True, slots=True)
class KevEntry:
    """One CISA Known Exploited Vulnerabilities catalog entry."""

    cve: str
    vendor: str
    product: str
    name: str
    date_added: date
    due_date: date | None = None
    ransomware: bool | None = None  # knownRansomwareCampaignUse: "Known" / "Unknown"
    short_description: str = ""
    required_action: str = ""
    cwes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EpssScore:
    """One FIRST EPSS row: probability of exploitation in the next 30 days, as of `date`."""

    cve: str
    epss: float
    percentile: float
    date: date | None = None
    model_version: str = ""


@dataclass(frozen=True, slots=True)
class OsvAffected:
    """One `affected[]` entry of an OSV advisory, ranges and versions as given."""

    ecosystem: str
    package: str
    purl: str = ""
    ranges: list[dict[str, Any]] = field(default_factory=list)
    versions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OsvAdvisory:
    id: str
    modified: datetime | None = None
    published: datetime | None = None
    withdrawn: datetime | None = None
    aliases: tuple[str, ...] = ()
    summary: str = ""
    affected: tuple[OsvAffected, ...] = ()
    references: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CsafDocument:
    """A CSAF 2.0 document; `key` is unique across publishers (namespace + tracking id, per the spec)."""

    tracking_id: str
    title: str
    publisher: str
    publisher_namespace: str
    current_release_date: datetime | None
    document: dict[str, Any]
    cve_ids: tuple[str, ...] = ()
    product_names: tuple[str, ...] = ()  # vendor / product family / product name labels of the tree

    @property
    def key(self) -> str:
        return f"{self.publisher_namespace}#{self.tracking_id}"


Record = Vulnerability | KevEntry | EpssScore | OsvAdvisory | CsafDocument


def utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """A fixed-width UTC form, so stored timestamps compare correctly as text."""
    return None if value is None else utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
