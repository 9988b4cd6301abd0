"""CVE List V5 records (CVE JSON 5.0–5.2, as in CVEProject/cvelistV5 and cisagov/vulnrichment).

A record is `{"dataType": "CVE_RECORD", "cveMetadata": {cveId, state, datePublished, dateUpdated},
"containers": {"cna": {descriptions, affected[], metrics[], problemTypes[], references[]}, "adp": [...]}}`.
`affected[]` (vendor/product or collectionURL/packageName, versions[] with lessThan/lessThanOrEqual/
versionType, defaultStatus, cpes[], programFiles[], ...) is kept as published for the matcher. CVSS comes
from the CNA, else an ADP (CISA's vulnrichment scores records the CNA did not); SSVC from the CISA ADP.
Rejected records are kept (state "REJECTED") so a rejection replaces an earlier published version.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsentry.vulns.feeds._common import (
    MAX_MEMBER,
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
    report,
    ssvc_options,
    text,
    timestamp,
    unique,
)
from medsentry.vulns.feeds._http import Http, SyncError
from medsentry.vulns.records import MAX_DESCRIPTION, MAX_REFERENCES, Cvss, Vulnerability, iso

if TYPE_CHECKING:
    from medsentry.vulns.store import VulnStore

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


# -- online sync: CVEProject/cvelistV5 release assets ------------------------------------------------------
#
# CVEProject/cvelistV5's README: every day at midnight UTC a release carries
# "YYYY-MM-DD_all_CVEs_at_midnight.zip" (every current record; a zip holding `cves.zip`, ~500 MB), and hourly
# releases carry "YYYY-MM-DD_delta_CVEs_at_HHMMZ.zip", every record added or changed since that midnight, so
# a day's newest delta supersedes its earlier ones. Assumed, not in the README: a day is closed by
# "..._delta_CVEs_at_end_of_day.zip"; without it a cursor from an earlier day cannot be chained and the newest
# baseline is taken. The release list is the GitHub REST API's (`RELEASES_URL`; a mirror serving the same
# JSON works), asset names are matched by the patterns below.

RELEASES_URL = "https://api.github.com/repos/CVEProject/cvelistV5/releases"
BASELINE_ASSET = re.compile(r"^(\d{4}-\d{2}-\d{2})_all_CVEs(?:_at_midnight)?\.zip$")
DELTA_ASSET = re.compile(
    r"^(\d{4}-\d{2}-\d{2})_delta_CVEs_at_(\d{2})(\d{2})Z\.zip$|"
    r"^(\d{4}-\d{2}-\d{2})_delta_CVEs_at_end_of_day\.zip$"
)
RELEASE_PAGES = 10  # 100 releases a page, ~24 a day: a cursor older than ~40 days takes the baseline anyway


@dataclass(frozen=True, slots=True)
class Archive:
    """One release asset: a baseline as of `until` (its midnight), or a delta from that day's midnight."""

    url: str
    until: datetime
    baseline: bool


@dataclass(slots=True)
class SyncResult:
    requests: int = 0
    archives: list[str] = field(default_factory=list)
    records: int = 0
    bytes: int = 0
    baseline: bool = False
    synced_until: datetime | None = None


def sync(
    store: VulnStore,
    *,
    base_url: str = RELEASES_URL,
    http: Http | None = None,
    now: datetime | None = None,
    problems: Problems | None = None,
) -> SyncResult:
    """Bring the store's CVE List V5 records up to the newest release: the baseline on a first run (or when
    the cursor cannot be chained to now), then the newest delta of each day after the cursor. Each archive
    is imported in one transaction with the advanced cursor, so a failed download resumes at that archive.
    Releases stamped after `now` are ignored."""
    http = http or Http()
    problems = problems if problems is not None else Problems()
    state = store.feed_state(FEED) or {}
    cursor = _when(state.get("synced_until"))
    requests_before = http.requests
    assets = [a for a in _assets(http, base_url, cursor) if now is None or a.until <= now]
    if not any(a.baseline for a in assets):
        raise SyncError(f"GET {base_url}: no *_all_CVEs_at_midnight.zip among the releases")
    plan = _plan(assets, cursor)
    result = SyncResult(synced_until=cursor)
    for archive in plan:
        with tempfile.TemporaryDirectory(prefix="medsentry-cve5-") as folder:
            target = Path(folder) / "release.zip"
            result.bytes += http.download(archive.url, target)
            counts = store.import_records(
                _archive_records(target, archive.url, Path(folder), problems),
                states={FEED: {"synced_until": iso(archive.until)}},
                as_of={FEED: archive.until},
            )
        result.archives.append(archive.url)
        result.records += counts.written.get(FEED, 0) + counts.unchanged.get(FEED, 0)
        result.baseline = result.baseline or archive.baseline
        result.synced_until = archive.until
    result.requests = http.requests - requests_before
    return result


def _assets(http: Http, base_url: str, cursor: datetime | None) -> list[Archive]:
    """Baselines and deltas of the listed releases, newest first, paging back to the cursor's day."""
    found: list[Archive] = []
    for page in range(1, RELEASE_PAGES + 1):
        url = f"{base_url}{'&' if '?' in base_url else '?'}per_page=100&page={page}"
        releases = decode_json(http.get(url), url)
        if not isinstance(releases, list):
            raise SyncError(f"GET {url}: not a GitHub release list")
        for release in releases:
            assets = release.get("assets") if isinstance(release, dict) else None
            for asset in assets if isinstance(assets, list) else []:
                archive = _archive(asset) if isinstance(asset, dict) else None
                if archive is not None:
                    found.append(archive)
        oldest = min((a.until for a in found), default=None)
        if not releases or cursor is None or (oldest is not None and oldest <= cursor):
            break
    return found


def _archive(asset: dict[str, Any]) -> Archive | None:
    name, url = asset.get("name"), asset.get("browser_download_url")
    if not isinstance(name, str) or not isinstance(url, str):
        return None
    if match := BASELINE_ASSET.match(name):
        return Archive(url, _midnight(match[1]), True)
    if match := DELTA_ASSET.match(name):
        if match[4]:
            return Archive(url, _midnight(match[4]) + timedelta(days=1), False)
        return Archive(
            url, _midnight(match[1]) + timedelta(hours=int(match[2]), minutes=int(match[3])), False
        )
    return None


def _midnight(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def _plan(assets: list[Archive], cursor: datetime | None) -> list[Archive]:
    """Archives to import in order: the newest delta of each day after the cursor while they chain up to
    the newest release; otherwise the newest baseline and the deltas after it."""
    newest = max(a.until for a in assets)
    if cursor is not None:
        if cursor >= newest:
            return []
        steps = _chain(assets, cursor)
        if steps and steps[-1].until == newest:
            return steps
    baseline = max((a for a in assets if a.baseline), key=lambda a: a.until)
    return [baseline, *_chain(assets, baseline.until)]


def _chain(assets: list[Archive], since: datetime) -> list[Archive]:
    """The newest delta of `since`'s day, then of each following day while the previous one closed its day."""
    steps: list[Archive] = []
    at = since
    while True:
        day = at.replace(hour=0, minute=0, second=0, microsecond=0)
        later = [a for a in assets if not a.baseline and at < a.until <= day + timedelta(days=1)]
        if not later:
            return steps
        steps.append(max(later, key=lambda a: a.until))
        at = steps[-1].until


def _archive_records(path: Path, url: str, folder: Path, problems: Problems) -> Iterator[Vulnerability]:
    """Records of a release zip, read member by member; a zip inside (the baseline's `cves.zip`) is
    extracted to `folder` first, streamed. A damaged archive aborts the import (the transaction rolls
    back) naming the URL and member; a well-formed but bad record is counted and skipped."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SyncError(f"{url}: not a readable zip archive: {exc}") from exc
    with archive:
        for member in archive.infolist():
            name = member.filename
            if member.is_dir() or not name.endswith((".json", ".zip")):
                continue
            if member.file_size > MAX_MEMBER and name.endswith(".json"):
                raise SyncError(f"{url}!{name}: member of {member.file_size} bytes is too large")
            try:
                with archive.open(member) as stream:
                    if name.endswith(".zip"):
                        handle, named = tempfile.mkstemp(suffix=".zip", dir=folder)
                        inner = Path(named)
                        with open(handle, "wb") as out:
                            shutil.copyfileobj(stream, out, 1 << 20)
                        data = b""
                    else:
                        data = stream.read()
            except (OSError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise SyncError(f"{url}!{name}: damaged archive member: {exc}") from exc
            if name.endswith(".zip"):
                yield from _archive_records(inner, f"{url}!{name}", folder, problems)
                inner.unlink()
                continue
            try:
                document = decode_json(data, f"{url}!{name}")
            except FeedError as exc:
                problems.add(exc)
                continue
            if is_document(document):  # deltas also carry their delta.json/deltaLog.json
                yield from from_document(document, f"{url}!{name}", problems)


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
