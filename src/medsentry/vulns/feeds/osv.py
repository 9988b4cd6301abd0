"""OSV advisories (https://ossf.github.io/osv-schema/): JSON or YAML files, directories, ecosystem `all.zip`.

An advisory is `{"id", "modified", "published"?, "withdrawn"?, "aliases"?, "summary"?, "details"?,
"affected": [{"package": {"ecosystem", "name", "purl"?}, "ranges"?: [{"type", "events": [...]}],
"versions"?: [...]}], "references"?}`. Ranges and versions stay as given: the matcher applies the
ecosystem's version rules. YAML is what the PyPA advisory database keeps in git; the
`https://osv-vulnerabilities.storage.googleapis.com/<ecosystem>/all.zip` archives hold one JSON per advisory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from medsentry.vulns.feeds._common import (
    BadValue,
    FeedError,
    Problems,
    array,
    files_under,
    load_json,
    obj,
    read_bytes,
    report,
    text,
    timestamp,
    unique,
    zip_documents,
)
from medsentry.vulns.records import MAX_DESCRIPTION, MAX_REFERENCES, OsvAdvisory, OsvAffected

FEED = "osv"
ARCHIVE_URL = "https://osv-vulnerabilities.storage.googleapis.com/{ecosystem}/all.zip"
SUFFIXES = (".json", ".json.gz", ".yaml", ".yml", ".zip")


def parse(path: str | Path, problems: Problems | None = None) -> Iterator[OsvAdvisory]:
    for file in files_under(Path(path), SUFFIXES):
        if file.name.endswith(".zip"):
            yield from _archive(file, problems)
            continue
        try:
            document = _load_yaml(file) if file.name.endswith((".yaml", ".yml")) else load_json(file)
        except FeedError as exc:
            report(problems, exc)
            continue
        yield from from_document(document, file, problems)


def is_document(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and isinstance(document.get("id"), str)
        and "modified" in document
        and ("affected" in document or "aliases" in document or "schema_version" in document)
        and "cveMetadata" not in document
    )


def from_document(document: Any, path: str | Path, problems: Problems | None = None) -> Iterator[OsvAdvisory]:
    try:
        yield from_advisory(document)
    except BadValue as exc:
        report(problems, FeedError(path, exc.where, str(exc)))


_Loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


def _load_yaml(path: Path) -> Any:
    try:
        # Every scalar as text: a version list like `- 1.10` must not turn into the float 1.1.
        return yaml.load(read_bytes(path), Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        location = f"line {mark.line + 1} col {mark.column + 1}" if mark is not None else ""
        raise FeedError(path, location, f"invalid YAML: {exc.problem}") from exc
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise FeedError(path, "", f"invalid YAML: {exc}") from exc


def _archive(path: Path, problems: Problems | None) -> Iterator[OsvAdvisory]:
    for name, document in zip_documents(path, problems):
        yield from from_document(document, name, problems)


def from_advisory(document: Any) -> OsvAdvisory:
    doc = obj(document, "")
    affected = []
    for i, entry in enumerate(array(doc.get("affected"), "/affected")):
        entry = obj(entry, f"/affected/{i}")
        package = obj(entry.get("package") or {}, f"/affected/{i}/package")
        affected.append(
            OsvAffected(
                ecosystem=text(package.get("ecosystem"), f"/affected/{i}/package/ecosystem"),
                package=text(package.get("name"), f"/affected/{i}/package/name"),
                purl=text(package.get("purl"), f"/affected/{i}/package/purl"),
                ranges=[
                    obj(r, f"/affected/{i}/ranges/{j}")
                    for j, r in enumerate(array(entry.get("ranges"), f"/affected/{i}/ranges"))
                ],
                versions=tuple(str(v) for v in array(entry.get("versions"), f"/affected/{i}/versions")),
            )
        )
    modified = timestamp(doc.get("modified"), "/modified")
    if modified is None:
        raise BadValue("/modified", "missing modified")
    return OsvAdvisory(
        id=text(doc.get("id"), "/id", required=True).strip(),
        modified=modified,
        published=timestamp(doc.get("published"), "/published"),
        withdrawn=timestamp(doc.get("withdrawn"), "/withdrawn"),
        aliases=unique(
            text(a, f"/aliases/{i}").strip() for i, a in enumerate(array(doc.get("aliases"), "/aliases"))
        ),
        summary=(text(doc.get("summary"), "/summary") or text(doc.get("details"), "/details"))[
            :MAX_DESCRIPTION
        ],
        affected=tuple(affected),
        references=unique(
            text(obj(r, f"/references/{i}").get("url"), f"/references/{i}/url")
            for i, r in enumerate(array(doc.get("references"), "/references"))
        )[:MAX_REFERENCES],
    )
