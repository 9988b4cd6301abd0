"""NVD JSON 1.1 (the retired yearly feeds, still in mirrors), converted to the NVD 2.0 record shape.

Input: a feed `{"CVE_data_type": "CVE", "CVE_Items": [...]}` or single items `{"cve": {"CVE_data_meta":
{"ID"}, "problemtype", "references", "description"}, "configurations": {"nodes": [...]}, "impact":
{"baseMetricV3": {"cvssV3": {"vectorString"}}}, "publishedDate", "lastModifiedDate"}`.

1.1 nodes nest one level: an AND node's `children` are OR nodes holding `cpe_match[]` (`cpe23Uri`,
`versionStart/End…`). In 2.0 each top-level node becomes a configuration whose `nodes` are those children
(or the node itself), with `cpe_match` → `cpeMatch` and `cpe23Uri` → `criteria`, so the matcher evaluates
one shape. Records go to the "nvd" feed.
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
    pointer,
    report,
    text,
    timestamp,
    unique,
)
from medsentry.vulns.records import MAX_DESCRIPTION, MAX_REFERENCES, Vulnerability

FEED = "nvd"
SUFFIXES = (".json", ".json.gz")
_BOUNDS = ("versionStartIncluding", "versionStartExcluding", "versionEndIncluding", "versionEndExcluding")


def parse(path: str | Path, problems: Problems | None = None) -> Iterator[Vulnerability]:
    yield from parse_json_files(path, SUFFIXES, problems, from_document)


def is_document(document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    if isinstance(document.get("CVE_Items"), list):
        return True
    cve = document.get("cve")
    return isinstance(cve, dict) and "CVE_data_meta" in cve


def from_document(
    document: Any, path: str | Path, problems: Problems | None = None
) -> Iterator[Vulnerability]:
    if isinstance(document, dict) and isinstance(document.get("CVE_Items"), list):
        items = [(pointer("CVE_Items", i), item) for i, item in enumerate(document["CVE_Items"])]
    elif is_document(document):
        items = [("", document)]
    else:
        report(problems, FeedError(path, "", "not an NVD JSON 1.1 feed or item"))
        return
    for where, item in items:
        try:
            yield from_item(item, where, path, problems)
        except BadValue as exc:
            report(problems, FeedError(path, exc.where, str(exc)))


def from_item(item: Any, where: str, path: str | Path, problems: Problems | None) -> Vulnerability:
    item = obj(item, where)
    cve = obj(item.get("cve"), f"{where}/cve")
    at = f"{where}/cve"
    cwes = []
    problemtype = obj(cve.get("problemtype") or {}, f"{at}/problemtype")
    for i, block in enumerate(
        array(problemtype.get("problemtype_data"), f"{at}/problemtype/problemtype_data")
    ):
        for j, entry in enumerate(
            array(obj(block, f"{at}/problemtype/{i}").get("description"), f"{at}/pt/{i}")
        ):
            value = text(
                obj(entry, f"{at}/problemtype/problemtype_data/{i}/description/{j}").get("value"), at
            )
            if value.startswith("CWE-"):
                cwes.append(value)
    references = obj(cve.get("references") or {}, f"{at}/references")
    urls = (
        text(obj(r, f"{at}/references/reference_data/{i}").get("url"), f"{at}/references/reference_data/{i}")
        for i, r in enumerate(array(references.get("reference_data"), f"{at}/references/reference_data"))
    )
    description = obj(cve.get("description") or {}, f"{at}/description")
    impact = obj(item.get("impact") or {}, f"{where}/impact")
    cvss3 = None
    v3 = impact.get("baseMetricV3")
    if v3 is not None:
        vector_at = f"{where}/impact/baseMetricV3/cvssV3/vectorString"
        try:
            cvss3 = cvss_from_vector(
                obj(obj(v3, vector_at).get("cvssV3"), vector_at).get("vectorString"),
                "nvd@nist.gov",
                vector_at,
            )
        except BadValue as exc:
            report(problems, FeedError(path, exc.where, f"{exc}; metric ignored"))
    meta = obj(cve.get("CVE_data_meta"), f"{at}/CVE_data_meta")
    return Vulnerability(
        id=cve_id(meta.get("ID"), f"{at}/CVE_data_meta/ID"),
        source=FEED,
        published=timestamp(item.get("publishedDate"), f"{where}/publishedDate"),
        modified=timestamp(item.get("lastModifiedDate"), f"{where}/lastModifiedDate"),
        description=first_english(description.get("description_data"), f"{at}/description")[:MAX_DESCRIPTION],
        cvss3=cvss3,
        cwes=unique(cwes),
        references=unique(urls)[:MAX_REFERENCES],
        configurations=_configurations(item.get("configurations"), f"{where}/configurations"),
    )


def _configurations(configurations: Any, where: str) -> list[dict[str, Any]]:
    nodes = array(obj(configurations or {}, where).get("nodes"), f"{where}/nodes")
    converted = []
    for i, node in enumerate(nodes):
        node = obj(node, f"{where}/nodes/{i}")
        children = array(node.get("children"), f"{where}/nodes/{i}/children")
        if children:
            config: dict[str, Any] = {
                "operator": node.get("operator", "AND"),
                "negate": bool(node.get("negate")),
            }
            config["nodes"] = [_leaf(c, f"{where}/nodes/{i}/children/{j}") for j, c in enumerate(children)]
        else:
            config = {"nodes": [_leaf(node, f"{where}/nodes/{i}")]}
        converted.append(config)
    return converted


def _leaf(node: Any, where: str) -> dict[str, Any]:
    node = obj(node, where)
    if node.get("children"):
        raise BadValue(f"{where}/children", "nodes nested deeper than NVD 2.0 configurations allow")
    matches = []
    for i, match in enumerate(array(node.get("cpe_match"), f"{where}/cpe_match")):
        match = obj(match, f"{where}/cpe_match/{i}")
        converted = {
            "vulnerable": bool(match.get("vulnerable")),
            "criteria": text(match.get("cpe23Uri"), f"{where}/cpe_match/{i}/cpe23Uri", required=True),
        }
        converted.update({k: match[k] for k in _BOUNDS if match.get(k) is not None})
        matches.append(converted)
    return {"operator": node.get("operator", "OR"), "negate": bool(node.get("negate")), "cpeMatch": matches}
