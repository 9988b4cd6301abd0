"""NVD CVE API 2.0: offline items/pages, and incremental online sync.

Offline input is a file or directory of `.json`/`.json.gz`, each either one item `{"cve": {...}}` or an API
page `{"resultsPerPage", "startIndex", "totalResults", "vulnerabilities": [{"cve": {...}}, ...]}`.

Online sync (https://nvd.nist.gov/developers/vulnerabilities) pages with `startIndex`/`resultsPerPage`
(≤ 2000). The first sync pages through everything; later ones ask for `lastModStartDate`..`lastModEndDate`
windows of at most 120 days (the API's limit) from where the last one stopped. Each page is imported in
its own transaction together with the cursor, so an interrupted sync resumes at the page it lost and the
store never holds a half-written page. Without an API key NVD allows 5 requests per rolling 30 s, with
one (header `apiKey`) 50.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsentry.vulns.feeds._common import (
    BadValue,
    FeedError,
    Problems,
    array,
    cve_id,
    cvss_from_vector,
    decode_json,
    first_english,
    obj,
    parse_json_files,
    pointer,
    report,
    ssvc_options,
    text,
    timestamp,
    unique,
)
from medsentry.vulns.feeds._http import Http, RateLimiter, SyncError
from medsentry.vulns.records import MAX_DESCRIPTION, MAX_REFERENCES, Cvss, Vulnerability, iso

if TYPE_CHECKING:
    from medsentry.vulns.store import VulnStore

FEED = "nvd"
API_URL = "https://services.nvd.nist.gov/rest/json/cves/2.0"
MAX_WINDOW = timedelta(days=120)
PAGE_SIZE = 2000
SUFFIXES = (".json", ".json.gz")


def parse(path: str | Path, problems: Problems | None = None) -> Iterator[Vulnerability]:
    yield from parse_json_files(path, SUFFIXES, problems, from_document)


def is_document(document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    items = document.get("vulnerabilities")
    if isinstance(items, list):
        # CSAF documents also have vulnerabilities[].cve, but as a string
        return "totalResults" in document or any(
            isinstance(i, dict) and isinstance(i.get("cve"), dict) for i in items[:1]
        )
    return isinstance(document.get("cve"), dict) and "id" in document["cve"]


def from_document(
    document: Any, path: str | Path, problems: Problems | None = None
) -> Iterator[Vulnerability]:
    if isinstance(document, dict) and isinstance(document.get("vulnerabilities"), list):
        items = [(pointer("vulnerabilities", i), item) for i, item in enumerate(document["vulnerabilities"])]
    elif isinstance(document, dict) and "cve" in document:
        items = [("", document)]
    else:
        report(problems, FeedError(path, "", "not an NVD CVE API 2.0 item or page"))
        return
    for where, item in items:
        try:
            yield from_item(item, where, path, problems)
        except BadValue as exc:
            report(problems, FeedError(path, exc.where, str(exc)))


def from_item(item: Any, where: str, path: str | Path, problems: Problems | None) -> Vulnerability:
    cve = obj(obj(item, where).get("cve"), f"{where}/cve")
    at = f"{where}/cve"
    metrics = obj(cve.get("metrics") or {}, f"{at}/metrics")
    return Vulnerability(
        id=cve_id(cve.get("id"), f"{at}/id"),
        source=FEED,
        published=timestamp(cve.get("published"), f"{at}/published"),
        modified=timestamp(cve.get("lastModified"), f"{at}/lastModified"),
        status=text(cve.get("vulnStatus"), f"{at}/vulnStatus"),
        description=first_english(cve.get("descriptions"), f"{at}/descriptions")[:MAX_DESCRIPTION],
        cvss3=_metric(metrics, ("cvssMetricV31", "cvssMetricV30"), f"{at}/metrics", path, problems),
        cvss4=_metric(metrics, ("cvssMetricV40",), f"{at}/metrics", path, problems),
        cwes=_cwes(cve.get("weaknesses"), f"{at}/weaknesses"),
        references=_references(cve.get("references"), f"{at}/references"),
        configurations=[
            obj(c, f"{at}/configurations/{i}")
            for i, c in enumerate(array(cve.get("configurations"), f"{at}/configurations"))
        ],
        affected=_affected(cve.get("affected"), f"{at}/affected"),
        ssvc=_ssvc(metrics.get("ssvcV203"), f"{at}/metrics/ssvcV203"),
    )


def _metric(
    metrics: dict[str, Any], names: tuple[str, ...], where: str, path: str | Path, problems: Problems | None
) -> Cvss | None:
    """NVD's own ("Primary") assessment first, then the CNA's; a malformed vector is reported and skipped."""
    for name in names:
        entries = array(metrics.get(name), f"{where}/{name}")
        ranked = sorted(
            range(len(entries)),
            key=lambda i: not (isinstance(entries[i], dict) and entries[i].get("type") == "Primary"),
        )
        for i in ranked:
            entry = obj(entries[i], f"{where}/{name}/{i}")
            data = obj(entry.get("cvssData"), f"{where}/{name}/{i}/cvssData")
            try:
                return cvss_from_vector(
                    data.get("vectorString"),
                    str(entry.get("source", "")),
                    f"{where}/{name}/{i}/cvssData/vectorString",
                )
            except BadValue as exc:
                report(problems, FeedError(path, exc.where, f"{exc}; metric ignored"))
    return None


def _cwes(weaknesses: Any, where: str) -> tuple[str, ...]:
    found = []
    for i, weakness in enumerate(array(weaknesses, where)):
        for j, entry in enumerate(array(obj(weakness, f"{where}/{i}").get("description"), f"{where}/{i}")):
            value = text(
                obj(entry, f"{where}/{i}/description/{j}").get("value"), f"{where}/{i}/description/{j}"
            )
            if value.startswith("CWE-"):
                found.append(value)
    return unique(found)


def _references(references: Any, where: str) -> tuple[str, ...]:
    urls = (
        text(obj(r, f"{where}/{i}").get("url"), f"{where}/{i}/url")
        for i, r in enumerate(array(references, where))
    )
    return unique(urls)[:MAX_REFERENCES]


def _affected(affected: Any, where: str) -> list[dict[str, Any]]:
    """NVD 2.0 wraps CNA data as [{source, affectedData: [...]}]; flattened to CVE 5 entries."""
    entries = []
    for i, block in enumerate(array(affected, where)):
        block = obj(block, f"{where}/{i}")
        for j, entry in enumerate(array(block.get("affectedData"), f"{where}/{i}/affectedData")):
            entries.append(
                {**obj(entry, f"{where}/{i}/affectedData/{j}"), "x_source": block.get("source", "")}
            )
    return entries


def _ssvc(blocks: Any, where: str) -> dict[str, str] | None:
    for i, block in enumerate(array(blocks, where)):
        data = obj(obj(block, f"{where}/{i}").get("ssvcData"), f"{where}/{i}/ssvcData")
        return ssvc_options(data.get("options"), f"{where}/{i}/ssvcData/options")
    return None


@dataclass(slots=True)
class SyncResult:
    requests: int = 0
    pages: int = 0
    records: int = 0
    synced_until: datetime | None = None
    resumed: bool = False


def sync(
    store: VulnStore,
    *,
    api_url: str = API_URL,
    api_key: str | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    page_size: int = PAGE_SIZE,
    http: Http | None = None,
    problems: Problems | None = None,
    max_pages: int | None = None,
) -> SyncResult:
    """Bring the store's NVD data up to `now`, resuming an interrupted sync where it stopped.

    Without stored progress, `since` starts incremental windows there; without either, the whole NVD is
    paged. `max_pages` stops early (the next call resumes): useful for tests and budgeted runs."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if http is None:
        http = Http(
            limiter=RateLimiter(50 if api_key else 5, 30.0), headers={"apiKey": api_key} if api_key else {}
        )
    problems = problems if problems is not None else Problems()
    state = store.feed_state(FEED) or {}
    cursor = state.get("cursor")
    synced_until = _when(state.get("synced_until"))
    result = SyncResult(resumed=cursor is not None, synced_until=synced_until)
    if cursor is None:
        start = synced_until or since
        cursor = _window(start, now) if start is not None else {"full": True, "started": iso(now), "index": 0}
    while cursor is not None and (max_pages is None or result.pages < max_pages):
        params: dict[str, str | int] = {"resultsPerPage": page_size, "startIndex": cursor["index"]}
        if not cursor.get("full"):
            params["lastModStartDate"] = _api_time(cursor["start"])
            params["lastModEndDate"] = _api_time(cursor["end"])
        url = f"{api_url}?{urllib.parse.urlencode(params)}"
        requests_before = http.requests
        page = decode_json(http.get(url), url)
        result.requests += http.requests - requests_before
        items = page.get("vulnerabilities") if isinstance(page, dict) else None
        total = page.get("totalResults") if isinstance(page, dict) else None
        if not isinstance(items, list) or not isinstance(total, int):
            raise SyncError(f"GET {url}: not an NVD API 2.0 page")
        records = list(from_document(page, url, problems))
        following = cursor["index"] + len(items)
        if items and following < total:
            cursor = {**cursor, "index": following}
        else:  # window (or full pass) complete
            synced_until = _when(cursor["started"] if cursor.get("full") else cursor["end"])
            cursor = _window(synced_until, now) if synced_until is not None and synced_until < now else None
        store.import_records(
            records,
            states={FEED: {"synced_until": iso(synced_until), "cursor": cursor}},
            as_of={FEED: synced_until} if synced_until is not None else None,
        )
        result.pages += 1
        result.records += len(records)
        result.synced_until = synced_until
    return result


def _window(start: datetime, now: datetime) -> dict[str, Any]:
    return {"start": iso(start), "end": iso(min(start + MAX_WINDOW, now)), "index": 0}


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _api_time(value: str) -> str:
    return datetime.fromisoformat(value).astimezone(UTC).isoformat(timespec="milliseconds")
