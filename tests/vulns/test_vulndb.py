"""The vulnerability store: import (idempotent, all-or-nothing), status errors, lookups, online sync against
local fake NVD and CSAF servers serving the real shared records."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from medsentry.vulns.feeds import Http, RateLimiter, SyncError, SyncSources, import_path, nvd, sync
from medsentry.vulns.feeds import csaf as csaf_feed
from medsentry.vulns.feeds import parse as parse_any
from medsentry.vulns.store import (
    MIGRATIONS,
    FeedsEmpty,
    FeedsStale,
    VulnStore,
    cpe_vendor_product,
    default_vulndb_path,
    name_key,
)
from tests.httpfake import serve


@pytest.fixture(scope="module")
def vulns(shared_data: Path) -> Path:
    return shared_data / "vulns"


@pytest.fixture(scope="module")
def loaded(vulns: Path, tmp_path_factory: pytest.TempPathFactory) -> VulnStore:
    store = VulnStore(tmp_path_factory.mktemp("vulndb") / "vulns.db")
    for folder in ("nvd", "cve5", "vulnrichment", "cisa-kev", "epss", "csaf-icsma", "osv-pypi"):
        import_path(store, vulns / folder)
    return store


def _counts(store: VulnStore) -> dict[str, int]:
    return {feed: status.records for feed, status in store.feed_status().items()}


# -- import -----------------------------------------------------------------------------------------------


def test_import_counts_match_the_files(loaded: VulnStore, vulns: Path) -> None:
    counts = _counts(loaded)
    assert counts["nvd"] == len(list((vulns / "nvd").rglob("*.json")))
    assert counts["cve5"] == len(
        {p.stem for f in ("cve5", "vulnrichment") for p in (vulns / f).glob("*.json")}
    )
    assert (
        counts["kev"]
        == json.loads((vulns / "cisa-kev/known_exploited_vulnerabilities.json").read_text())["count"]
    )
    assert counts["epss"] == 5 and counts["csaf"] == 124
    assert counts["osv"] == len(list((vulns / "osv-pypi" / "vulns").rglob("*.yaml")))


def test_reimport_is_idempotent(vulns: Path, tmp_path: Path) -> None:
    store = VulnStore(tmp_path / "v.db")
    first = import_path(store, vulns / "nvd")
    before = _counts(store)
    second = import_path(store, vulns / "nvd")
    assert first.counts.written["nvd"] == before["nvd"] > 0
    assert second.counts.written["nvd"] == 0 and second.counts.unchanged["nvd"] == before["nvd"]
    assert _counts(store) == before
    assert store.candidates("wolfssl") and len(store.candidates("wolfssl")) == len(
        {(h.cve_id, h.vendor, h.origin) for h in store.candidates("wolfssl")}
    )


def test_newer_record_replaces_older_does_not(vulns: Path, tmp_path: Path) -> None:
    store = VulnStore(tmp_path / "v.db")
    (record,) = nvd.parse(vulns / "nvd" / "CVE-2018-10597.json")
    store.import_records([record])
    assert record.modified is not None
    older = replace(record, description="older text", modified=record.modified - timedelta(days=1))
    assert store.import_records([older]).unchanged == {"nvd": 1}
    newer = replace(
        record, description="newer text", configurations=[], modified=record.modified + timedelta(days=1)
    )
    assert store.import_records([newer]).written == {"nvd": 1}
    stored = store.vulnerability("CVE-2018-10597")
    assert stored is not None and stored.description == "newer text"
    assert not store.candidates("intellivue_mp2_firmware")  # index rows of the replaced version are gone
    assert store.search_unconfigured(["newer"]) == ["CVE-2018-10597"]


def _product_rows(store: VulnStore) -> list[tuple[object, ...]]:
    """Index rows with their slices."""
    orphans = (
        "SELECT count(*) FROM slices s WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.origin = 'cpe' "
        "AND p.cve_id = s.cve_id AND p.source = s.source AND p.vendor = s.vendor AND p.product = s.product)"
    )
    assert store._conn.execute(orphans).fetchone()[0] == 0  # a rewritten record leaves no slices behind
    return [
        tuple(row)
        for row in store._conn.execute(
            "SELECT p.product, p.vendor, p.cve_id, p.source, p.origin, p.versions, s.data FROM products p "
            "LEFT JOIN slices s ON p.origin = 'cpe' AND s.cve_id = p.cve_id AND s.source = p.source "
            "AND s.vendor = p.vendor AND s.product = p.product "
            "ORDER BY p.product, p.vendor, p.cve_id, p.origin"
        )
    ]


def test_modified_record_keeps_or_rewrites_its_product_rows(vulns: Path, tmp_path: Path) -> None:
    """A newer record with the same configurations keeps its index rows as they are; one with other
    configurations gets rows (with slices) for them alone -- identical to importing it into an empty store."""
    store = VulnStore(tmp_path / "v.db")
    records = list(nvd.parse(vulns / "nvd" / "CVE-2017-0144.json"))
    store.import_records(records)
    first = _product_rows(store)
    later = [
        replace(r, description="references added", modified=r.modified + timedelta(days=1)) for r in records
    ]
    changes = store._conn.total_changes
    assert store.import_records(later).written == {"nvd": len(records)}
    assert store._conn.total_changes - changes < len(first) / 2  # the product rows were not rewritten
    assert (
        _product_rows(store) == first
        and store.vulnerability("CVE-2017-0144").description == "references added"
    )

    (record,) = records
    recriteria = json.loads(
        json.dumps(record.configurations).replace('"matchCriteriaId": "', '"matchCriteriaId": "x')
    )
    relabelled = replace(record, configurations=recriteria, modified=record.modified + timedelta(days=2))
    cpe_rows = sum(row[4] == "cpe" for row in first)
    changes = store._conn.total_changes
    assert store.import_records([relabelled]).written == {"nvd": 1}
    assert store._conn.total_changes - changes <= 2 * cpe_rows + 3  # slices rewritten, products rows kept
    after = _product_rows(store)
    assert [r[:6] for r in after] == [r[:6] for r in first] and after != first  # new slices, same products

    conf = record.configurations[0]
    narrowed = {**conf, "nodes": [{**conf["nodes"][0], "cpeMatch": conf["nodes"][0]["cpeMatch"][:1]}]}
    reanalysed = replace(record, configurations=[narrowed], modified=record.modified + timedelta(days=3))
    assert store.import_records([reanalysed]).written == {"nvd": 1}
    fresh = VulnStore(tmp_path / "fresh.db")
    fresh.import_records([reanalysed])
    assert _product_rows(store) == _product_rows(fresh) != first
    assert all(row[6] is not None for row in _product_rows(store) if row[4] == "cpe")


def test_interrupted_import_keeps_previous_data(vulns: Path, tmp_path: Path) -> None:
    store = VulnStore(tmp_path / "v.db")
    import_path(store, vulns / "nvd")
    now = datetime(2026, 8, 1, tzinfo=UTC)
    before = store.feed_status(now)
    (original,) = nvd.parse(vulns / "nvd" / "CVE-2018-10597.json")
    assert original.modified is not None

    def failing() -> Iterator[Any]:
        yield replace(original, description="half-written", modified=original.modified + timedelta(days=9))
        yield from parse_any(vulns / "cve5")
        yield from parse_any(vulns / "cisa-kev")  # > BATCH records: some were written before the failure
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        store.import_records(failing())
    assert store.feed_status(now) == before
    stored = store.vulnerability("CVE-2018-10597")
    assert stored is not None and stored.description == original.description and stored.source == "nvd"
    assert store.kev("CVE-2017-0144") is None
    store.close()
    reopened = VulnStore(tmp_path / "v.db")  # and nothing of it reached the file
    assert (
        reopened.feed_status()["cve5"].records == 0
        and reopened.feed_status()["nvd"].records == before["nvd"].records
    )


_KILLED_IMPORT = """
import sys, time
from medsentry.vulns.feeds import parse
from medsentry.vulns.store import BATCH, VulnStore

def records():
    for n, record in enumerate(parse(sys.argv[2])):
        yield record
        if n == BATCH + 5:  # a batch was written inside the open transaction
            print("written", flush=True)
            time.sleep(600)

store = VulnStore(sys.argv[1])
store._conn.execute("PRAGMA cache_size = 10")  # a tiny page cache spills the uncommitted batch to the WAL
store.import_records(records())
"""


def test_killed_import_leaves_previous_data(vulns: Path, tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    with VulnStore(db) as store:
        import_path(store, vulns / "nvd")
        before = _counts(store)
    wal_before = db.with_name("v.db-wal").stat().st_size if db.with_name("v.db-wal").exists() else 0
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_IMPORT, str(db), str(vulns / "cisa-kev")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        assert db.with_name("v.db-wal").stat().st_size > wal_before  # uncommitted pages reached the file
    finally:
        child.kill()
        child.wait()
    with VulnStore(db) as store:
        assert _counts(store) == before and store.kev("CVE-2017-0144") is None


def test_bad_records_are_counted_not_fatal(vulns: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "good.json").write_text((vulns / "nvd" / "CVE-2018-10597.json").read_text())
    (folder / "broken.json").write_text('{"cve": {"id": ')
    (folder / "wrong.json").write_text(json.dumps({"cve": {"id": "CVE-2020-1", "descriptions": []}}))
    store = VulnStore(tmp_path / "v.db")
    summary = import_path(store, folder)
    assert summary.counts.written == {"nvd": 1}
    assert summary.problems.count == 2
    assert sorted(Path(e.path).name for e in summary.problems.errors) == ["broken.json", "wrong.json"]
    assert json.loads(json.dumps(summary.to_json()))["problems"] == 2


# -- status -----------------------------------------------------------------------------------------------


def test_empty_store_is_an_error(tmp_path: Path) -> None:
    store = VulnStore(tmp_path / "v.db")
    with pytest.raises(FeedsEmpty, match="feeds sync"):
        store.require_fresh()
    summary = import_path(store, tmp_path / "missing")
    assert summary.problems.count == 1 and "no such file" in str(summary.problems.errors[0])
    with pytest.raises(FeedsEmpty):
        store.require_fresh(max_age=None)


def test_kev_alone_is_still_empty(vulns: Path, tmp_path: Path) -> None:
    store = VulnStore(tmp_path / "v.db")
    import_path(store, vulns / "cisa-kev")
    assert store.feed_status()["kev"].records > 0
    with pytest.raises(FeedsEmpty):
        store.require_fresh(max_age=None)


def test_stale_and_fresh(loaded: VulnStore) -> None:
    status = loaded.feed_status()
    newest_nvd = status["nvd"].data_time
    assert newest_nvd is not None and status["nvd"].imported is not None
    with pytest.raises(FeedsStale, match=r"nvd \(\d+ days old\)"):
        loaded.require_fresh(feeds=["nvd"], now=newest_nvd + timedelta(days=30))
    fresh = loaded.require_fresh(feeds=["nvd"], now=newest_nvd + timedelta(days=1))
    assert fresh["nvd"].age == timedelta(days=1)
    assert loaded.require_fresh(max_age=None)["csaf"].records == 124
    assert {s.feed for s in status.values()} >= {"nvd", "cve5", "kev", "epss", "csaf", "osv"}


def test_reopen_keeps_schema_and_data(loaded: VulnStore) -> None:
    again = VulnStore(loaded.path)
    assert again.schema_version == len(MIGRATIONS) == 3 and _counts(again) == _counts(loaded)
    assert default_vulndb_path({"MEDSENTRY_VULN_DB": "/x/v.db"}) == Path("/x/v.db")
    assert default_vulndb_path({"MEDSENTRY_DB": "/data/inv.db"}) == Path("/data/vulns.db")


# -- lookups ------------------------------------------------------------------------------------------------


def test_candidates_by_cpe_product(loaded: VulnStore) -> None:
    wolf = {h.cve_id for h in loaded.candidates("wolfssl", "wolfssl") if h.origin == "cpe"}
    assert {"CVE-2022-39173", "CVE-2021-44718", "CVE-2022-42905"} <= wolf
    assert loaded.vendors_of("jquery") >= {"jquery"}
    # platform CPEs (vulnerable: false) do not make a CVE a candidate for the platform
    assert "CVE-2018-10597" not in {h.cve_id for h in loaded.candidates("intellivue_mp2", "philips")}
    assert "CVE-2018-10597" in {h.cve_id for h in loaded.candidates("intellivue_mp2_firmware", "philips")}


def test_candidates_carry_version_constraints(loaded: VulnStore, vulns: Path) -> None:
    """Each hit states the version bounds of its cpeMatch entries (or CNA versions[]) for pre-filtering."""
    item = json.loads((vulns / "nvd" / "CVE-2022-39173.json").read_text())
    expected = sorted(
        [
            m["criteria"].split(":")[5],
            m["criteria"].split(":")[6],
            m.get("versionStartIncluding"),
            m.get("versionStartExcluding"),
            m.get("versionEndIncluding"),
            m.get("versionEndExcluding"),
        ]
        for c in item["cve"]["configurations"]
        for n in c["nodes"]
        for m in n["cpeMatch"]
        if m["vulnerable"] and ":wolfssl:wolfssl:" in m["criteria"]
    )
    (hit,) = [h for h in loaded.candidates("wolfssl", "wolfssl") if h.cve_id == "CVE-2022-39173"]
    assert hit.origin == "cpe" and sorted(hit.versions) == expected and expected
    (cna,) = [h for h in loaded.candidates("fatfs") if h.cve_id == "CVE-2026-6682" and h.source == "nvd"]
    assert cna.origin == "cna" and cna.versions["versions"] and "status" in cna.versions["versions"][0]


def test_candidates_from_cna_data(loaded: VulnStore) -> None:
    fatfs = {(h.cve_id, h.origin) for h in loaded.candidates("FatFs")}
    assert ("CVE-2026-6682", "cna") in fatfs  # NVD has no configuration for it yet
    xz = {(h.cve_id, h.vendor, h.origin) for h in loaded.candidates("xz")}
    assert ("CVE-2024-3094", "", "cna-package") in xz
    redhat = {h.cve_id for h in loaded.candidates("enterprise_linux", "redhat") if h.origin == "cna-cpe"}
    assert "CVE-2024-3094" in redhat


def test_description_search_for_unconfigured(loaded: VulnStore) -> None:
    assert loaded.search_unconfigured(["AutoMapper"]) == ["CVE-2026-32933"]
    assert "CVE-2018-10597" not in loaded.search_unconfigured(["IntelliVue"])  # it has a configuration
    assert loaded.search_unconfigured(['"); DROP TABLE x; --']) == []


def test_merged_view_of_nvd_and_cve5(loaded: VulnStore) -> None:
    merged = loaded.vulnerability("cve-2017-0144")
    assert merged is not None and merged.source == "nvd+cve5"
    assert merged.configurations and merged.ssvc == {
        "Exploitation": "active",
        "Automatable": "no",
        "Technical Impact": "total",
    }
    assert {r.source for r in loaded.vulnerability_records("CVE-2017-0144")} == {"nvd", "cve5"}
    many = loaded.vulnerabilities(["CVE-2017-0144", "CVE-2018-10597", "CVE-0000-0000"])
    assert set(many) == {"CVE-2017-0144", "CVE-2018-10597"}


def test_kev_epss_osv_csaf_lookups(loaded: VulnStore) -> None:
    entry = loaded.kev("CVE-2017-0144")
    assert entry is not None and entry.vendor == "Microsoft"
    score = loaded.epss("CVE-1999-0005")
    assert score is not None and score.epss == 0.91963
    assert [a.id for a in loaded.osv_for_package("PyPI", "ZSTD")] == ["PYSEC-2023-121"]
    assert "PYSEC-2023-121" in [a.id for a in loaded.osv_for_alias("CVE-2022-4899")]
    keys = loaded.csaf_for_cve("CVE-2018-10597")
    assert keys and loaded.csaf_documents(keys)[0].cve_ids.count("CVE-2018-10597") == 1
    ranked = loaded.csaf_candidates(["Philips IntelliVue MX800"])
    assert keys[0] in [key for key, _ in ranked[:10]]
    assert loaded.csaf_candidates(["version and prior"]) == []  # filler words alone find nothing


def test_name_keys() -> None:
    assert name_key(" Red  Hat ") == "red_hat"
    assert cpe_vendor_product(
        r"cpe:2.3:a:the_legion_of_the_bouncy_castle_inc.:bc\-csharp:*:*:*:*:*:*:*:*"
    ) == ("the_legion_of_the_bouncy_castle_inc.", "bc-csharp")
    assert cpe_vendor_product("cpe:/o:redhat:enterprise_linux:10") == ("redhat", "enterprise_linux")
    assert cpe_vendor_product("cpe:2.3:a:*:*:*") is None and cpe_vendor_product("nonsense") is None


# -- online sync: a local fake of the NVD API serving the shared records ----------------------------------


class FakeNvd:
    """NVD CVE API 2.0 semantics that sync relies on: lastMod windows (≤ 120 days), startIndex paging,
    apiKey header; `fail_at` answers HTTP 500 to that request number."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = sorted(items, key=lambda i: (i["cve"]["lastModified"], i["cve"]["id"]))
        self.requests: list[dict[str, str]] = []
        self.keys: list[str | None] = []
        self.fail_at: int | None = None
        self.files: dict[str, bytes] = {}
        self.server, base = serve(self.get)
        self.url = f"{base}/rest/json/cves/2.0"

    def get(self, path: str, headers: Message) -> tuple[int, bytes]:
        url = urllib.parse.urlsplit(path)
        if url.path in self.files:
            return 200, self.files[url.path]
        if url.path != "/rest/json/cves/2.0":
            return 404, b""
        self.requests.append(dict(urllib.parse.parse_qsl(url.query)))
        self.keys.append(headers.get("apiKey"))
        return self.answer(self.requests[-1])

    def answer(self, query: dict[str, str]) -> tuple[int, bytes]:
        if self.fail_at is not None and len(self.requests) == self.fail_at:
            return 500, b"{}"
        items = self.items
        if "lastModStartDate" in query:
            start = datetime.fromisoformat(query["lastModStartDate"])
            end = datetime.fromisoformat(query["lastModEndDate"])
            if end - start > timedelta(days=120) or start.tzinfo is None:
                return 404, b"{}"
            items = [
                i
                for i in items
                if start <= datetime.fromisoformat(i["cve"]["lastModified"]).replace(tzinfo=UTC) <= end
            ]
        index, size = int(query["startIndex"]), int(query["resultsPerPage"])
        page = {
            "resultsPerPage": len(items[index : index + size]),
            "startIndex": index,
            "totalResults": len(items),
            "format": "NVD_CVE",
            "version": "2.0",
            "timestamp": "2026-08-01T00:00:00.000",
            "vulnerabilities": items[index : index + size],
        }
        return 200, json.dumps(page).encode()


@pytest.fixture
def fake_nvd(vulns: Path) -> Iterator[FakeNvd]:
    fake = FakeNvd([json.loads(p.read_text()) for p in sorted((vulns / "nvd").rglob("*.json"))])
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def _http() -> Http:
    return Http(limiter=None, retries=0, sleep=lambda s: None)


def _modified_between(fake: FakeNvd, start: datetime, end: datetime) -> set[str]:
    return {
        i["cve"]["id"]
        for i in fake.items
        if start <= datetime.fromisoformat(i["cve"]["lastModified"]).replace(tzinfo=UTC) <= end
    }


def test_sync_windows_paging_and_resume(fake_nvd: FakeNvd, tmp_path: Path) -> None:
    store = VulnStore(tmp_path / "v.db")
    since, now = datetime(2024, 1, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC)
    expected = _modified_between(fake_nvd, since, now)
    assert len(expected) > 30
    fake_nvd.fail_at = 6
    with pytest.raises(SyncError, match="HTTP 500"):
        nvd.sync(store, api_url=fake_nvd.url, since=since, now=now, page_size=7, http=_http())
    state = store.feed_state("nvd")
    assert state["cursor"] is not None  # where to resume
    done_before = store.feed_status()["nvd"].records
    assert 0 < done_before < len(expected)
    failed = fake_nvd.requests[5]
    fake_nvd.fail_at = None
    result = nvd.sync(store, api_url=fake_nvd.url, now=now, page_size=7, http=_http())
    assert result.resumed and fake_nvd.requests[6] == failed  # it asked again for the lost page, not from 0
    assert store.feed_status()["nvd"].records == len(expected)
    assert {v for v in expected if store.vulnerability(v) is None} == set()
    assert result.synced_until == now and store.feed_state("nvd") == {
        "synced_until": "2026-08-01T00:00:00.000000Z",
        "cursor": None,
    }
    assert store.feed_status(now=now)["nvd"].age == timedelta(0)
    windows = {(q["lastModStartDate"], q["lastModEndDate"]) for q in fake_nvd.requests}
    assert len(windows) >= 8  # 31 months in windows of at most 120 days
    assert any(int(q["startIndex"]) > 0 for q in fake_nvd.requests)  # paging happened


def test_sync_incremental_then_nothing_new(fake_nvd: FakeNvd, tmp_path: Path) -> None:
    store = VulnStore(tmp_path / "v.db")
    first = nvd.sync(
        store,
        api_url=fake_nvd.url,
        api_key="k3y",
        now=datetime(2026, 8, 1, tzinfo=UTC),
        page_size=50,
        http=Http(headers={"apiKey": "k3y"}, retries=0),
    )
    assert (
        first.records == len(fake_nvd.items) and "lastModStartDate" not in fake_nvd.requests[0]
    )  # full pass
    assert set(fake_nvd.keys) == {"k3y"}
    later = nvd.sync(
        store, api_url=fake_nvd.url, now=datetime(2026, 8, 2, tzinfo=UTC), page_size=50, http=_http()
    )
    assert later.records == 0 and later.pages == 1
    assert fake_nvd.requests[-1]["lastModStartDate"].startswith("2026-08-01T00:00:00.000")


def test_sync_summary_reports_failures_per_source(fake_nvd: FakeNvd, tmp_path: Path) -> None:
    store = VulnStore(tmp_path / "v.db")
    sources = SyncSources(
        nvd_url=fake_nvd.url,
        nvd_since=datetime(2026, 5, 1, tzinfo=UTC),
        kev_url=fake_nvd.url.replace("/rest/json/cves/2.0", "/missing"),
        epss_url=None,
    )
    http = Http(limiter=None, retries=0, sleep=lambda s: None)
    summary = sync(store, sources, http=http, now=datetime(2026, 8, 1, tzinfo=UTC))
    assert summary.results["nvd"].records == len(
        _modified_between(fake_nvd, datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 8, 1, tzinfo=UTC))
    )
    assert "kev" in summary.errors and "HTTP 404" in summary.errors["kev"]
    assert json.loads(json.dumps(summary.to_json()))["errors"] == summary.errors


def test_sync_downloads_mark_the_feed_current(fake_nvd: FakeNvd, vulns: Path, tmp_path: Path) -> None:
    fake_nvd.files["/kev.json"] = (vulns / "cisa-kev" / "known_exploited_vulnerabilities.json").read_bytes()
    fake_nvd.files["/epss.csv.gz"] = b"<html>not found</html>"
    base = fake_nvd.url.replace("/rest/json/cves/2.0", "")
    sources = SyncSources(nvd=False, kev_url=f"{base}/kev.json", epss_url=f"{base}/epss.csv.gz")
    now = datetime(2026, 8, 1, tzinfo=UTC)
    summary = sync(VulnStore(tmp_path / "v.db"), sources, http=_http(), now=now)
    kev = summary.status["kev"]
    assert kev.records == 1404 and kev.data_time == now  # newest entry 2025-08-25, but fetched whole now
    assert summary.status["epss"].data_time is None and summary.problems.count == 1


def test_rate_limiter_sliding_window() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(5, 30.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
        now[0] += 1.0
    assert slept == []
    limiter.wait()  # the sixth call within 30 s waits until the first leaves the window
    assert slept == [25.0]


# -- CSAF provider sync -------------------------------------------------------------------------------------


class FakeProvider:
    """A CSAF provider serving real ICSMA advisories through a ROLIE feed or a directory with changes.csv."""

    def __init__(self, documents: list[Path]) -> None:
        self.routes: dict[str, bytes] = {}
        self.served: list[str] = []
        self.server, self.base = serve(self.get)
        self.metadata = f"{self.base}/.well-known/csaf/provider-metadata.json"
        entries, changes = [], []
        for i, doc in enumerate(documents):
            self.routes[f"/csaf/2020/{doc.name}"] = doc.read_bytes()
            stamp = f"2024-01-0{i + 1}T00:00:00Z"
            entries.append(
                {"id": doc.stem, "updated": stamp, "content": {"src": f"{self.base}/csaf/2020/{doc.name}"}}
            )
            changes.append(f'"2020/{doc.name}","{stamp}"')
        self.routes["/csaf/feed.json"] = json.dumps({"feed": {"id": "f", "entry": entries}}).encode()
        self.routes["/csaf/changes.csv"] = "\n".join(reversed(changes)).encode()

    def get(self, path: str, headers: Message) -> tuple[int, bytes]:
        self.served.append(path)
        body = self.routes.get(path)
        return (200, body) if body is not None else (404, b"")

    def distribute(self, distribution: dict[str, Any]) -> None:
        self.routes["/.well-known/csaf/provider-metadata.json"] = json.dumps(
            {"distributions": [distribution]}
        ).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    "distribution",
    [{"rolie": {"feeds": [{"url": "/csaf/feed.json", "tlp_label": "WHITE"}]}}, {"directory_url": "/csaf/"}],
)
def test_csaf_provider_sync(vulns: Path, tmp_path: Path, distribution: dict[str, Any]) -> None:
    documents = sorted((vulns / "csaf-icsma" / "2020").glob("*.json"))[:4]
    provider = FakeProvider(documents)
    try:
        provider.distribute(distribution)
        store = VulnStore(tmp_path / "v.db")
        first = csaf_feed.sync_provider(store, provider.metadata, Http(retries=0))
        assert first.imported == 4 and not first.errors and store.feed_status()["csaf"].records == 4
        provider.served.clear()
        again = csaf_feed.sync_provider(store, provider.metadata, Http(retries=0))
        assert again.fetched == 0 and again.skipped_unchanged == 4
        assert not any(p.startswith("/csaf/2020/") for p in provider.served)
    finally:
        provider.close()
