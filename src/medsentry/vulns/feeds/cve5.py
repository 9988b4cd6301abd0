"""CVE List V5 records (CVE JSON 5.0–5.2, as in CVEProject/cvelistV5 and cisagov/vulnrichment).

A record is `{"dataType": "CVE_RECORD", "cveMetadata": {cveId, state, datePublished, dateUpdated},
"containers": {"cna": {descriptions, affected[], metrics[], problemTypes[], references[]}, "adp": [...]}}`.
`affected[]` (vendor/product or collectionURL/packageName, versions[] with lessThan/lessThanOrEqual/
versionType, defaultStatus, cpes[], programFiles[], ...) is kept as published for the matcher. CVSS comes
from the CNA, else an ADP (CISA's vulnrichment scores records the CNA did not); SSVC from the CISA ADP.
Rejected records are kept (state "REJECTED") so a rejection replaces an earlier published version.
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
    cvss_from_vector,
    first_english,
    obj,
    parse_json_files,
    report,
    ssvc_options,
    text,
    timestamp,
    unique,
)
from medsentry.vulns.records import MAX_DESCRIPTION, MAX_REFERENCES, Cvss, Vulnerability

FEED = "cve5"
SUFFIXES = (".json", ".json.gz")
_CVSS_KEYS = {"cvssV3_1": "3", "cvssV3_0": "3", "cvssV4_0": "4"}


def parse(path: str | Path, problems: Problems | None = None) -> Iterator[Vulnerability]:
    yield from parse_json_files(path, SUFFIXES, problems, from_document)


def is_document(document: Any) -> bool:
    return isinstance(document, dict) and (
        document.get("dataType") == "CVE_RECORD" or isinstance(document.get("cveMetadata"), dict)
    )


def from_document(
    document: Any, path: str | Path, problems: Problems | None = None
) -> Iterator[Vulnerability]:
    try:
        yield from_record(document, path, problems)
    except BadValue as exc:
        report(problems, FeedError(path, exc.where, str(exc)))


def from_record(record: Any, path: str | Path, problems: Problems | None) -> Vulnerability:
    meta = obj(obj(record, "").get("cveMetadata"), "/cveMetadata")
    containers = obj(record.get("containers"), "/containers")
    cna = obj(containers.get("cna") or {}, "/containers/cna")
    adps = [
        (f"/containers/adp/{i}", obj(a, f"/containers/adp/{i}"))
        for i, a in enumerate(array(containers.get("adp"), "/containers/adp"))
    ]
    sources = [("/containers/cna", cna), *adps]
    cvss: dict[str, Cvss] = {}
    ssvc = None
    for where, container in sources:
        for i, metric in enumerate(array(container.get("metrics"), f"{where}/metrics")):
            metric = obj(metric, f"{where}/metrics/{i}")
            for key, major in _CVSS_KEYS.items():
                if key in metric and major not in cvss:
                    at = f"{where}/metrics/{i}/{key}"
                    try:
                        cvss[major] = cvss_from_vector(
                            obj(metric[key], at).get("vectorString"),
                            _provider(container),
                            f"{at}/vectorString",
                        )
                    except BadValue as exc:
                        report(problems, FeedError(path, exc.where, f"{exc}; metric ignored"))
            other = metric.get("other")
            if ssvc is None and isinstance(other, dict) and other.get("type") == "ssvc":
                content = obj(other.get("content"), f"{where}/metrics/{i}/other/content")
                ssvc = ssvc_options(content.get("options"), f"{where}/metrics/{i}/other/content/options")
    state = text(meta.get("state"), "/cveMetadata/state")
    description_key = (
        "rejectedReasons" if state == "REJECTED" and "descriptions" not in cna else "descriptions"
    )
    return Vulnerability(
        id=cve_id(meta.get("cveId"), "/cveMetadata/cveId"),
        source=FEED,
        published=timestamp(meta.get("datePublished"), "/cveMetadata/datePublished"),
        modified=timestamp(meta.get("dateUpdated") or meta.get("datePublished"), "/cveMetadata/dateUpdated"),
        status=state,
        description=first_english(cna.get(description_key), f"/containers/cna/{description_key}")[
            :MAX_DESCRIPTION
        ],
        cvss3=cvss.get("3"),
        cvss4=cvss.get("4"),
        cwes=_cwes(sources),
        references=unique(
            text(obj(r, f"/containers/cna/references/{i}").get("url"), f"/containers/cna/references/{i}/url")
            for i, r in enumerate(array(cna.get("references"), "/containers/cna/references"))
        )[:MAX_REFERENCES],
        affected=[
            obj(a, f"/containers/cna/affected/{i}")
            for i, a in enumerate(array(cna.get("affected"), "/containers/cna/affected"))
        ],
        ssvc=ssvc,
    )


def _provider(container: dict[str, Any]) -> str:
    meta = container.get("providerMetadata")
    return str(meta.get("shortName", "")) if isinstance(meta, dict) else ""


def _cwes(sources: list[tuple[str, dict[str, Any]]]) -> tuple[str, ...]:
    found = []
    for where, container in sources:
        for i, problem in enumerate(array(container.get("problemTypes"), f"{where}/problemTypes")):
            at = f"{where}/problemTypes/{i}"
            for j, entry in enumerate(array(obj(problem, at).get("descriptions"), f"{at}/descriptions")):
                value = obj(entry, f"{at}/descriptions/{j}").get("cweId")
                if isinstance(value, str) and value.startswith("CWE-"):
                    found.append(value)
    return unique(found)
