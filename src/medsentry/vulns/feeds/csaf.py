"""CSAF 2.0 advisories: offline files/directories, and any provider through its `provider-metadata.json`.

A document needs `document.csaf_version`, `document.tracking.id`, `document.title` and
`document.publisher.{name, namespace}`; it is stored whole (the matcher walks `product_tree`,
`vulnerabilities[].product_status` and `remediations`). Vendor/product names of the product tree are
collected so the store can find documents by name tokens: ICSMA advisories carry no CPE or purl.

Online (CSAF 2.0 section 7.1): `provider-metadata.json` lists `distributions[]`, each a ROLIE feed
(`rolie.feeds[].url` → `feed.entry[]` with `updated` and `content.src`) or a `directory_url` (with
`changes.csv`: "path","timestamp" rows, newest first). Only advisories updated after the last sync are
fetched; progress is committed in chunks, oldest first, so an interrupted sync resumes.
"""

from __future__ import annotations

import csv
import io
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsentry.vulns.feeds._common import (
    CVE_ID,
    BadValue,
    FeedError,
    Problems,
    array,
    decode_json,
    obj,
    parse_json_files,
    report,
    text,
    timestamp,
    unique,
)
from medsentry.vulns.feeds._http import Http, SyncError
from medsentry.vulns.records import CsafDocument, iso

if TYPE_CHECKING:
    from medsentry.vulns.store import VulnStore

FEED = "csaf"
SUFFIXES = (".json", ".json.gz")
CHUNK = 100
_NAMED_BRANCHES = frozenset({"vendor", "product_family", "product_name"})
MAX_DEPTH = 30  # product trees nest vendor/family/name/version; deeper is malformed or hostile


def parse(path: str | Path, problems: Problems | None = None) -> Iterator[CsafDocument]:
    yield from parse_json_files(path, SUFFIXES, problems, from_document)


def is_document(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and isinstance(document.get("document"), dict)
        and ("csaf_version" in document["document"])
    )


def from_document(
    document: Any, path: str | Path, problems: Problems | None = None
) -> Iterator[CsafDocument]:
    try:
        yield from_csaf(document)
    except BadValue as exc:
        report(problems, FeedError(path, exc.where, str(exc)))


def from_csaf(csaf: Any) -> CsafDocument:
    meta = obj(obj(csaf, "").get("document"), "/document")
    version = text(meta.get("csaf_version"), "/document/csaf_version", required=True)
    if not version.startswith("2."):
        raise BadValue("/document/csaf_version", f"unsupported CSAF version {version!r:.20}")
    tracking = obj(meta.get("tracking"), "/document/tracking")
    publisher = obj(meta.get("publisher"), "/document/publisher")
    cves = []
    for i, vulnerability in enumerate(array(csaf.get("vulnerabilities"), "/vulnerabilities")):
        cve = obj(vulnerability, f"/vulnerabilities/{i}").get("cve")
        if isinstance(cve, str) and CVE_ID.match(cve.strip().upper()):
            cves.append(cve.strip().upper())
    tree = csaf.get("product_tree")
    names: list[str] = []
    if tree is not None:
        tree = obj(tree, "/product_tree")
        _branch_names(tree.get("branches"), "/product_tree/branches", names, 0)
        for i, product in enumerate(
            array(tree.get("full_product_names"), "/product_tree/full_product_names")
        ):
            names.append(
                text(
                    obj(product, f"/product_tree/full_product_names/{i}").get("name"),
                    f"/product_tree/full_product_names/{i}/name",
                )
            )
    return CsafDocument(
        tracking_id=text(tracking.get("id"), "/document/tracking/id", required=True).strip(),
        title=text(meta.get("title"), "/document/title", required=True),
        publisher=text(publisher.get("name"), "/document/publisher/name", required=True),
        publisher_namespace=text(publisher.get("namespace"), "/document/publisher/namespace", required=True),
        current_release_date=timestamp(
            tracking.get("current_release_date"), "/document/tracking/current_release_date"
        ),
        document=csaf,
        cve_ids=unique(cves),
        product_names=unique(names),
    )


def _branch_names(branches: Any, where: str, names: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadValue(where, f"product tree nested deeper than {MAX_DEPTH}")
    for i, branch in enumerate(array(branches, where)):
        branch = obj(branch, f"{where}/{i}")
        category = branch.get("category")
        if isinstance(category, str) and category in _NAMED_BRANCHES:
            names.append(text(branch.get("name"), f"{where}/{i}/name"))
        _branch_names(branch.get("branches"), f"{where}/{i}/branches", names, depth + 1)


@dataclass(slots=True)
class ProviderResult:
    provider: str
    distributions: int = 0
    fetched: int = 0
    imported: int = 0
    skipped_unchanged: int = 0
    errors: list[str] = field(default_factory=list)


def sync_provider(
    store: VulnStore, metadata_url: str, http: Http | None = None, problems: Problems | None = None
) -> ProviderResult:
    """Fetch what changed at one CSAF provider since the last sync and import it."""
    http = http or Http()
    problems = problems if problems is not None else Problems()
    metadata = obj(decode_json(http.get(metadata_url), metadata_url), "")
    result = ProviderResult(metadata_url)
    for i, distribution in enumerate(array(metadata.get("distributions"), "/distributions")):
        distribution = obj(distribution, f"/distributions/{i}")
        result.distributions += 1
        rolie = distribution.get("rolie")
        listings: list[tuple[str, list[tuple[datetime | None, str]]]] = []
        try:
            if isinstance(rolie, dict):
                for j, feed in enumerate(array(rolie.get("feeds"), f"/distributions/{i}/rolie/feeds")):
                    url = urllib.parse.urljoin(
                        metadata_url,
                        text(
                            obj(feed, f"/distributions/{i}/rolie/feeds/{j}").get("url"), "url", required=True
                        ),
                    )
                    listings.append((url, _rolie_entries(http, url)))
            if distribution.get("directory_url"):
                base = urllib.parse.urljoin(
                    metadata_url, text(distribution["directory_url"], "directory_url")
                )
                listings.append((base, _directory_entries(http, base)))
        except (SyncError, FeedError, BadValue) as exc:
            result.errors.append(str(exc))
            continue
        for listing, entries in listings:
            _import_listing(store, http, listing, entries, problems, result)
    return result


def _rolie_entries(http: Http, url: str) -> list[tuple[datetime | None, str]]:
    feed = obj(obj(decode_json(http.get(url), url), "").get("feed"), "/feed")
    entries = []
    for i, entry in enumerate(array(feed.get("entry"), "/feed/entry")):
        entry = obj(entry, f"/feed/entry/{i}")
        content = entry.get("content")
        href = content.get("src") if isinstance(content, dict) else None
        for link in array(entry.get("link"), f"/feed/entry/{i}/link"):
            if href is None and isinstance(link, dict) and link.get("rel") == "self":
                href = link.get("href")
        if isinstance(href, str) and href:
            entries.append(
                (timestamp(entry.get("updated"), f"/feed/entry/{i}/updated"), urllib.parse.urljoin(url, href))
            )
    return entries


def _directory_entries(http: Http, base: str) -> list[tuple[datetime | None, str]]:
    base = base if base.endswith("/") else base + "/"
    changes = http.get(base + "changes.csv").decode("utf-8")
    entries = []
    for number, row in enumerate(csv.reader(io.StringIO(changes)), start=1):
        if len(row) < 2:
            continue
        entries.append((timestamp(row[1], f"changes.csv line {number}"), urllib.parse.urljoin(base, row[0])))
    return entries


def _import_listing(
    store: VulnStore,
    http: Http,
    listing: str,
    entries: list[tuple[datetime | None, str]],
    problems: Problems,
    result: ProviderResult,
) -> None:
    state = store.feed_state(FEED) or {}
    seen = state.get("listings", {}).get(listing)
    since = datetime.fromisoformat(seen) if seen else None
    fresh = sorted(
        (e for e in entries if since is None or e[0] is None or e[0] > since),
        key=lambda e: (e[0] is None, e[0] or datetime.min),
    )
    result.skipped_unchanged += len(entries) - len(fresh)
    for start in range(0, len(fresh), CHUNK):
        chunk = fresh[start : start + CHUNK]
        documents = []
        for _, url in chunk:
            try:
                document = decode_json(http.get(url), url)
            except (SyncError, FeedError) as exc:
                report(problems, exc if isinstance(exc, FeedError) else FeedError(url, "", str(exc)))
                result.errors.append(str(exc))
                continue
            result.fetched += 1
            documents.extend(from_document(document, url, problems))
        newest = max((e[0] for e in chunk if e[0] is not None), default=since)
        state = store.feed_state(FEED) or {}
        listings = {**state.get("listings", {}), listing: iso(newest) if newest else None}
        store.import_records(documents, states={FEED: {**state, "listings": listings}})
        result.imported += len(documents)
