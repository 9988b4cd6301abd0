"""CISA Known Exploited Vulnerabilities catalog, JSON form.

`{"title", "catalogVersion", "dateReleased", "count", "vulnerabilities": [{"cveID", "vendorProject",
"product", "vulnerabilityName", "dateAdded", "shortDescription", "requiredAction", "dueDate",
"knownRansomwareCampaignUse", "notes", "cwes"}]}` (https://www.cisa.gov/known-exploited-vulnerabilities-catalog).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medsentry.vulns.feeds._common import (
    BadValue,
    FeedError,
    Problems,
    array,
    cve_id,
    day,
    obj,
    parse_json_files,
    pointer,
    report,
    text,
    unique,
)
from medsentry.vulns.records import KevEntry

FEED = "kev"
URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
SUFFIXES = (".json", ".json.gz")


def parse(path: str | Path, problems: Problems | None = None) -> Iterator[KevEntry]:
    yield from parse_json_files(path, SUFFIXES, problems, from_document)


def is_document(document: Any) -> bool:
    return isinstance(document, dict) and "catalogVersion" in document and "vulnerabilities" in document


def from_document(document: Any, path: str | Path, problems: Problems | None = None) -> Iterator[KevEntry]:
    if not is_document(document) or not isinstance(document["vulnerabilities"], list):
        report(problems, FeedError(path, "", "not a CISA KEV catalog (catalogVersion, vulnerabilities[])"))
        return
    for i, item in enumerate(document["vulnerabilities"]):
        where = pointer("vulnerabilities", i)
        try:
            yield _entry(obj(item, where), where)
        except BadValue as exc:
            report(problems, FeedError(path, exc.where, str(exc)))


def _entry(item: dict[str, Any], where: str) -> KevEntry:
    added = day(item.get("dateAdded"), f"{where}/dateAdded")
    if added is None:
        raise BadValue(f"{where}/dateAdded", "missing dateAdded")
    ransomware = text(item.get("knownRansomwareCampaignUse"), f"{where}/knownRansomwareCampaignUse").lower()
    return KevEntry(
        cve=cve_id(item.get("cveID"), f"{where}/cveID"),
        vendor=text(item.get("vendorProject"), f"{where}/vendorProject"),
        product=text(item.get("product"), f"{where}/product"),
        name=text(item.get("vulnerabilityName"), f"{where}/vulnerabilityName"),
        date_added=added,
        due_date=day(item.get("dueDate"), f"{where}/dueDate"),
        ransomware={"known": True, "unknown": False}.get(ransomware),
        short_description=text(item.get("shortDescription"), f"{where}/shortDescription"),
        required_action=text(item.get("requiredAction"), f"{where}/requiredAction"),
        cwes=unique(
            text(c, f"{where}/cwes/{i}") for i, c in enumerate(array(item.get("cwes"), f"{where}/cwes"))
        ),
    )
