"""Vulnerability feeds: offline import of files/directories/archives, and online sync.

One module per source (nvd, cve5, kev, epss, csaf, osv), each with
`parse(path, problems) -> Iterator[record]`.
`import_path` recognises each file's feed from its content, so a whole mirror directory can be imported in
one call, and writes everything in one store transaction. `sync` fetches from the feeds' public endpoints.
Bad records are skipped and counted in `Problems` (each `FeedError` names the file and a JSON pointer or
line).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medsentry.vulns.feeds import csaf, cve5, epss, kev, nvd, nvd11, osv
from medsentry.vulns.feeds._common import (
    MAX_KEPT_ERRORS,
    FeedError,
    Problems,
    files_under,
    load_json,
    read_bytes,
    report,
    zip_documents,
)
from medsentry.vulns.feeds._http import Http, RateLimiter, SyncError
from medsentry.vulns.records import Record
from medsentry.vulns.store import FeedStatus, ImportCounts, VulnStore

__all__ = [
    "KINDS",
    "FeedError",
    "Http",
    "ImportSummary",
    "Problems",
    "RateLimiter",
    "SyncError",
    "SyncSources",
    "SyncSummary",
    "detect",
    "import_path",
    "parse",
    "sync",
]

KINDS = {"nvd": nvd, "nvd11": nvd11, "cve5": cve5, "kev": kev, "epss": epss, "csaf": csaf, "osv": osv}
ALIASES = {"vulnrichment": "cve5", "cisa-kev": "kev", "nvd2": "nvd", "nvd-1.1": "nvd11"}
SUFFIXES = (".json", ".json.gz", ".yaml", ".yml", ".csv", ".csv.gz", ".zip")
# Order matters only for shapes that could pass two tests; each test looks for its feed's own keys.
_DETECTORS: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("kev", kev.is_document),
    ("csaf", csaf.is_document),
    ("nvd", nvd.is_document),
    ("nvd11", nvd11.is_document),
    ("cve5", cve5.is_document),
    ("osv", osv.is_document),
)


def detect(document: Any) -> str | None:
    """The feed a parsed JSON/YAML document belongs to, or None."""
    return next((kind for kind, test in _DETECTORS if test(document)), None)


@dataclass(slots=True)
class ImportSummary:
    """What one `import_path` did; `problems` are the skipped records/fields, `ignored` files of no feed."""

    path: str
    files: dict[str, int] = field(default_factory=dict)  # feed -> files read
    counts: ImportCounts = field(default_factory=ImportCounts)
    problems: Problems = field(default_factory=Problems)
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0
    status: dict[str, FeedStatus] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return sum(self.counts.written.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "files": self.files,
            "written": self.counts.written,
            "unchanged": self.counts.unchanged,
            "problems": self.problems.count,
            "errors": [str(e) for e in self.problems.errors],
            "ignored": self.ignored[:MAX_KEPT_ERRORS],
            "ignored_count": len(self.ignored),
            "seconds": round(self.seconds, 3),
            "feeds": {f: s.to_json() for f, s in self.status.items()},
        }


def parse(
    path: str | Path,
    kind: str | None = None,
    problems: Problems | None = None,
    summary: ImportSummary | None = None,
) -> Iterator[Record]:
    """Records of every feed file at `path` (a file, directory or archive); `kind` forces one feed."""
    path = Path(path)
    forced = _kind(kind) if kind else None
    if not path.exists():
        report(problems, FeedError(path, "", "no such file or directory"))
        return
    for file in files_under(path, (*KINDS[forced].SUFFIXES, ".zip") if forced else SUFFIXES):
        yield from _parse_file(file, forced, problems, summary)


def _parse_file(
    file: Path, forced: str | None, problems: Problems | None, summary: ImportSummary | None
) -> Iterator[Record]:
    name = file.name.lower()
    if name.endswith(".zip"):
        for member, document in zip_documents(file, problems):
            kind = forced or detect(document)
            if kind is None:
                _ignore(summary, Path(member))
                continue
            if summary is not None:
                summary.files[kind] = summary.files.get(kind, 0) + 1
            yield from KINDS[kind].from_document(document, member, problems)
        return
    if name.endswith((".csv", ".csv.gz")) and forced in (None, "epss"):
        try:
            if name.endswith(".gz"):
                head = read_bytes(file)[:512]  # decompresses it all once; EPSS is a few MB
            else:
                with file.open("rb") as stream:
                    head = stream.read(512)
        except (FeedError, OSError) as exc:
            report(problems, exc if isinstance(exc, FeedError) else FeedError(file, "", str(exc)))
            return
        if forced is None and not epss.looks_like(head):
            _ignore(summary, file)
            return
        kind, records = "epss", epss.parse(file, problems)
    else:
        try:
            document = osv._load_yaml(file) if name.endswith((".yaml", ".yml")) else load_json(file)
        except FeedError as exc:
            report(problems, exc)
            return
        kind = forced or detect(document)
        if kind is None:
            _ignore(summary, file)
            return
        records = KINDS[kind].from_document(document, file, problems)
    if summary is not None:
        summary.files[kind] = summary.files.get(kind, 0) + 1
    yield from records


def _ignore(summary: ImportSummary | None, file: Path) -> None:
    if summary is not None:
        summary.ignored.append(str(file))


def _kind(kind: str) -> str:
    kind = ALIASES.get(kind.lower(), kind.lower())
    if kind not in KINDS:
        raise ValueError(f"unknown feed kind {kind!r}: one of {', '.join(KINDS)}")
    return kind


def import_path(store: VulnStore, path: str | Path, kind: str | None = None) -> ImportSummary:
    """Import everything at `path` in one transaction (all or nothing); bad records are skipped, counted."""
    started = time.perf_counter()
    summary = ImportSummary(str(path))
    summary.counts = store.import_records(parse(path, kind, summary.problems, summary))
    summary.seconds = time.perf_counter() - started
    summary.status = store.feed_status()
    return summary


@dataclass(slots=True)
class SyncSources:
    """Which feeds `sync` fetches; a None URL or empty list skips that feed."""

    nvd_url: str = nvd.API_URL  # before the `nvd` field, which shadows the module from here on
    nvd: bool = True
    nvd_api_key: str | None = None
    nvd_since: datetime | None = None
    kev_url: str | None = kev.URL
    epss_url: str | None = epss.URL
    osv_ecosystems: tuple[str, ...] = ()
    osv_url: str = osv.ARCHIVE_URL
    csaf_providers: tuple[str, ...] = ()  # provider-metadata.json URLs
    cve5_url: str = cve5.RELEASES_URL  # before the `cve5` field, which shadows the module from here on
    # Off by default: its first sync (and any after a missed day without an end-of-day delta) downloads a
    # ~500 MB baseline needing ~1 GB of temp space, while NVD, on by default, covers the same CVE ids.
    cve5: bool = False


@dataclass(slots=True)
class SyncSummary:
    results: dict[str, Any] = field(default_factory=dict)  # source -> nvd.SyncResult / ImportSummary / ...
    errors: dict[str, str] = field(default_factory=dict)
    problems: Problems = field(default_factory=Problems)
    seconds: float = 0.0
    status: dict[str, FeedStatus] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        results = {k: v.to_json() if hasattr(v, "to_json") else _plain(v) for k, v in self.results.items()}
        return {
            "results": results,
            "errors": self.errors,
            "problems": self.problems.count,
            "seconds": round(self.seconds, 3),
            "feeds": {f: s.to_json() for f, s in self.status.items()},
        }


def _plain(value: Any) -> Any:
    slots = getattr(type(value), "__slots__", ())
    return {
        name: str(getattr(value, name))
        if isinstance(getattr(value, name), datetime)
        else getattr(value, name)
        for name in slots
    }


def sync(
    store: VulnStore,
    sources: SyncSources | None = None,
    http: Http | None = None,
    now: datetime | None = None,
) -> SyncSummary:
    """Fetch every configured feed; one failing source is reported and does not stop the others."""
    sources = sources or SyncSources()
    when = now or datetime.now(UTC)  # what a complete download is current as of
    started = time.perf_counter()
    summary = SyncSummary()
    http = http or Http()
    if sources.nvd:
        nvd_http = http
        if http.limiter is None:  # NVD's own rate limit, whatever other hosts allow
            headers = {**http.headers, **({"apiKey": sources.nvd_api_key} if sources.nvd_api_key else {})}
            nvd_http = Http(
                RateLimiter(50 if sources.nvd_api_key else 5, 30.0),
                headers,
                http.retries,
                http.backoff,
                http.timeout,
                http.sleep,
            )
        _attempt(
            summary,
            "nvd",
            lambda: nvd.sync(
                store,
                api_url=sources.nvd_url,
                since=sources.nvd_since,
                now=now,
                http=nvd_http,
                problems=summary.problems,
            ),
        )
    if sources.cve5:
        _attempt(
            summary,
            "cve5",
            lambda: cve5.sync(
                store, base_url=sources.cve5_url, http=http, now=now, problems=summary.problems
            ),
        )
    downloads = [("kev", sources.kev_url, "kev.json"), ("epss", sources.epss_url, "epss.csv.gz")]
    downloads += [
        (f"osv:{e}", sources.osv_url.format(ecosystem=e), "all.zip") for e in sources.osv_ecosystems
    ]
    for name, url, filename in downloads:
        if url:
            _attempt(
                summary,
                name,
                lambda url=url, filename=filename, name=name: _download_and_import(
                    store, http, url, filename, name.split(":")[0], summary.problems, when
                ),
            )
    for provider in sources.csaf_providers:
        _attempt(
            summary,
            f"csaf:{provider}",
            lambda provider=provider: csaf.sync_provider(store, provider, http, summary.problems),
        )
        result = summary.results.get(f"csaf:{provider}")
        if result is not None and not result.errors:
            store.import_records((), as_of={"csaf": when})
    summary.seconds = time.perf_counter() - started
    summary.status = store.feed_status()
    return summary


def _attempt(summary: SyncSummary, name: str, run: Callable[[], Any]) -> None:
    try:
        summary.results[name] = run()
    except (SyncError, FeedError) as exc:
        summary.errors[name] = str(exc)


def _download_and_import(
    store: VulnStore, http: Http, url: str, filename: str, kind: str, problems: Problems, when: datetime
) -> ImportSummary:
    with tempfile.TemporaryDirectory(prefix="medsentry-feed-") as folder:
        target = Path(folder) / filename
        target.write_bytes(http.get(url))
        result = import_path(store, target, kind)
    result.path = url
    if result.counts.written.get(kind, 0) + result.counts.unchanged.get(kind, 0):
        # a whole catalog was fetched: it is current now, even if its newest entry is a week old
        store.import_records((), as_of={kind: when})
        result.status = store.feed_status()
    for error in result.problems.errors:
        problems.add(error)
    problems.count += result.problems.count - len(result.problems.errors)
    return result
