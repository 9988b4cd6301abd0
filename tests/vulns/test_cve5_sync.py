"""CVE List V5 online sync against a local fake of the cvelistV5 GitHub releases, serving zips built here
from the real records in ../shared/data/vulns/cve5."""

from __future__ import annotations

import copy
import io
import json
import urllib.parse
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from medsentry.vulns.feeds import Http, Problems, SyncError, SyncSources, cve5, sync
from medsentry.vulns.store import VulnStore
from tests.httpfake import serve

DAY = "2026-08-01"
MIDNIGHT = datetime(2026, 8, 1, tzinfo=UTC)


class FakeReleases:
    """GitHub's release list (newest first, paged by `page`) and the assets it links; `fail` answers 404."""

    def __init__(self) -> None:
        self.assets: dict[str, bytes] = {}
        self.releases: list[dict[str, Any]] = []
        self.served: list[str] = []
        self.fail: set[str] = set()
        self.server, self.base = serve(self.get)
        self.url = f"{self.base}/releases"

    def get(self, path: str, headers: Message) -> tuple[int, bytes]:
        url = urllib.parse.urlsplit(path)
        self.served.append(url.path)
        body: bytes | None = None
        if url.path == "/releases":
            page = int(dict(urllib.parse.parse_qsl(url.query))["page"])
            body = json.dumps(self.releases[::-1][(page - 1) * 100 : page * 100]).encode()
        elif url.path not in self.fail:
            body = self.assets.get(url.path)
        return (200, body) if body is not None else (404, b"")

    def publish(self, name: str, body: bytes) -> str:
        """A release holding one asset (the real ones hold a baseline and a delta; the sync reads names)."""
        path = f"/download/{name}"
        self.assets[path] = body
        asset = {"name": name, "browser_download_url": self.base + path}
        self.releases.append({"tag_name": f"cve_{name}", "assets": [asset]})
        return path

    def archives(self) -> list[str]:
        return [p for p in self.served if p.startswith("/download/")]


@pytest.fixture
def fake() -> Iterator[FakeReleases]:
    server = FakeReleases()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture(scope="module")
def records(shared_data: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for file in sorted((shared_data / "vulns" / "cve5").glob("*.json")):
        record = json.loads(file.read_text())
        found[record["cveMetadata"]["cveId"]] = record
    return found


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _baseline(records: dict[str, dict[str, Any]]) -> bytes:
    """As cvelistV5 ships it: a zip holding `cves.zip`, which holds cves/<year>/<n>xxx/<id>.json."""
    inner = _zip(
        {
            f"cves/{i.split('-')[1]}/{i.split('-')[2][:-3]}xxx/{i}.json": json.dumps(r).encode()
            for i, r in records.items()
        }
    )
    return _zip({"cves.zip": inner})


def _delta(records: list[dict[str, Any]]) -> bytes:
    ids = [r["cveMetadata"]["cveId"] for r in records]
    members = {f"deltaCves/{i}.json": json.dumps(r).encode() for i, r in zip(ids, records, strict=True)}
    # not a record: the delta's own description of what changed must be ignored, not reported
    members["deltaCves/delta.json"] = json.dumps({"numberOfChanges": len(ids), "updated": ids}).encode()
    return _zip(members)


def _edited(record: dict[str, Any], updated: str, description: str) -> dict[str, Any]:
    record = copy.deepcopy(record)
    record["cveMetadata"]["dateUpdated"] = updated
    record["containers"]["cna"]["descriptions"] = [{"lang": "en", "value": description}]
    return record


def _http() -> Http:
    return Http(limiter=None, retries=0, sleep=lambda s: None)


def _description(store: VulnStore, cve: str) -> str | None:
    found = [v for v in store.vulnerability_records(cve) if v.source == "cve5"]
    return found[0].description if found else None


def _synced_until(store: VulnStore) -> datetime:
    return datetime.fromisoformat(store.feed_state("cve5")["synced_until"])


def test_baseline_then_only_the_newer_delta(
    fake: FakeReleases, records: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ids = sorted(records)
    held_back, changed = ids[-1], ids[0]
    fake.publish(f"{DAY}_all_CVEs_at_midnight.zip", _baseline({i: records[i] for i in ids[:-1]}))
    store = VulnStore(tmp_path / "v.db")

    first = cve5.sync(store, base_url=fake.url, http=_http())
    assert first.baseline and len(first.archives) == 1
    assert first.records == len(ids) - 1
    assert store.feed_status()["cve5"].records == len(ids) - 1
    assert store.vulnerability_records(held_back) == []
    assert _synced_until(store) == MIDNIGHT
    original = _description(store, changed)

    early = _delta([_edited(records[changed], "2026-08-01T03:00:00Z", "early edit")])
    fake.publish(f"{DAY}_delta_CVEs_at_0400Z.zip", early)
    late = _delta([_edited(records[changed], "2026-08-01T08:00:00Z", "late edit"), records[held_back]])
    late_path = fake.publish(f"{DAY}_delta_CVEs_at_0900Z.zip", late)
    fake.served.clear()
    problems = Problems()

    second = cve5.sync(store, base_url=fake.url, http=_http(), problems=problems)
    # the 09:00 delta holds everything since midnight: the 04:00 one is not fetched
    assert fake.archives() == [late_path]
    assert not second.baseline and second.records == 2
    assert problems.count == 0, problems.errors
    assert _description(store, changed) == "late edit" != original
    assert _description(store, held_back) is not None
    assert store.feed_status()["cve5"].records == len(ids)
    assert _synced_until(store) == datetime(2026, 8, 1, 9, tzinfo=UTC)

    fake.served.clear()
    third = cve5.sync(store, base_url=fake.url, http=_http())
    assert third.archives == [] and fake.archives() == []


def test_failed_download_resumes_at_that_archive(
    fake: FakeReleases, records: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ids = sorted(records)
    baseline_path = fake.publish(f"{DAY}_all_CVEs_at_midnight.zip", _baseline(records))
    store = VulnStore(tmp_path / "v.db")
    cve5.sync(store, base_url=fake.url, http=_http())
    closing = fake.publish(
        f"{DAY}_delta_CVEs_at_end_of_day.zip",
        _delta([_edited(records[ids[1]], "2026-08-01T22:00:00Z", "day one")]),
    )
    fake.publish("2026-08-02_all_CVEs_at_midnight.zip", _baseline(records))
    next_day = fake.publish(
        "2026-08-02_delta_CVEs_at_0300Z.zip",
        _delta([_edited(records[ids[2]], "2026-08-02T02:00:00Z", "day two")]),
    )
    fake.fail.add(next_day)
    fake.served.clear()
    sources = SyncSources(nvd=False, kev_url=None, epss_url=None, cve5=True, cve5_url=fake.url)

    summary = sync(store, sources, http=_http())
    # the day's closing delta bridges to the next day: no new baseline
    assert fake.archives() == [closing, next_day]
    assert f"{fake.base}{next_day}" in summary.errors["cve5"]
    assert _description(store, ids[1]) == "day one"
    assert _synced_until(store) == datetime(2026, 8, 2, tzinfo=UTC)

    fake.fail.clear()
    fake.served.clear()
    summary = sync(store, sources, http=_http())
    assert summary.errors == {}
    assert fake.archives() == [next_day] and baseline_path not in fake.served
    assert _description(store, ids[2]) == "day two"
    assert summary.status["cve5"].data_time == datetime(2026, 8, 2, 3, tzinfo=UTC)


def test_cursor_without_a_bridge_takes_the_newest_baseline(
    fake: FakeReleases, records: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    some = dict(sorted(records.items())[:5])
    fake.publish(f"{DAY}_all_CVEs_at_midnight.zip", _baseline(some))
    store = VulnStore(tmp_path / "v.db")
    cve5.sync(store, base_url=fake.url, http=_http())
    # day one ends with a 23:00 delta only: changes from 23:00 to midnight are in the next baseline alone
    fake.publish(f"{DAY}_delta_CVEs_at_2300Z.zip", _delta([]))
    newest = fake.publish("2026-08-02_all_CVEs_at_midnight.zip", _baseline(records))
    fake.served.clear()

    result = cve5.sync(store, base_url=fake.url, http=_http())
    assert result.baseline and fake.archives() == [newest]
    assert store.feed_status()["cve5"].records == len(records)
    assert _synced_until(store) == datetime(2026, 8, 2, tzinfo=UTC)


def _corrupt(archive: bytes, member: str) -> bytes:
    """Flip bytes in the middle of one member's compressed data, leaving the zip's structure readable."""
    info = zipfile.ZipFile(io.BytesIO(archive)).getinfo(member)
    header = archive[info.header_offset : info.header_offset + 30]
    start = (
        info.header_offset
        + 30
        + int.from_bytes(header[26:28], "little")
        + int.from_bytes(header[28:30], "little")
    )
    middle = start + info.compress_size // 2
    return archive[:middle] + bytes(b ^ 0xFF for b in archive[middle : middle + 16]) + archive[middle + 16 :]


def test_corrupt_archive_names_url_and_member_and_keeps_data(
    fake: FakeReleases, records: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ids = sorted(records)
    fake.publish(f"{DAY}_all_CVEs_at_midnight.zip", _baseline(records))
    store = VulnStore(tmp_path / "v.db")
    cve5.sync(store, base_url=fake.url, http=_http())
    before = {i: _description(store, i) for i in ids[:2]}
    delta = _delta([_edited(records[i], "2026-08-01T05:00:00Z", "must not land") for i in ids[:2]])
    path = fake.publish(f"{DAY}_delta_CVEs_at_0600Z.zip", _corrupt(delta, f"deltaCves/{ids[1]}.json"))

    with pytest.raises(SyncError) as caught:
        cve5.sync(store, base_url=fake.url, http=_http())
    assert f"{fake.base}{path}!deltaCves/{ids[1]}.json" in str(caught.value)
    # the first member was good, but the archive is imported all or nothing
    assert {i: _description(store, i) for i in ids[:2]} == before
    assert _synced_until(store) == MIDNIGHT

    fake.assets[path] = b"<html>not a zip</html>"
    with pytest.raises(SyncError, match="not a readable zip archive") as caught:
        cve5.sync(store, base_url=fake.url, http=_http())
    assert f"{fake.base}{path}" in str(caught.value)


def test_bad_record_in_a_delta_is_counted_and_skipped(
    fake: FakeReleases, records: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ids = sorted(records)
    fake.publish(f"{DAY}_all_CVEs_at_midnight.zip", _baseline({i: records[i] for i in ids[:3]}))
    store = VulnStore(tmp_path / "v.db")
    cve5.sync(store, base_url=fake.url, http=_http())
    broken = copy.deepcopy(records[ids[4]])
    broken["cveMetadata"]["cveId"] = "not-a-cve"
    members = {
        "deltaCves/good.json": json.dumps(records[ids[3]]).encode(),
        "deltaCves/broken.json": json.dumps(broken).encode(),
        "deltaCves/truncated.json": json.dumps(records[ids[5]]).encode()[:100],
    }
    path = fake.publish(f"{DAY}_delta_CVEs_at_0100Z.zip", _zip(members))
    problems = Problems()

    result = cve5.sync(store, base_url=fake.url, http=_http(), problems=problems)
    assert result.records == 1 and store.feed_status()["cve5"].records == 4
    assert problems.count == 2
    where = sorted(str(e) for e in problems.errors)
    assert f"{fake.base}{path}!deltaCves/broken.json: /cveMetadata/cveId" in where[0]
    assert f"{fake.base}{path}!deltaCves/truncated.json" in where[1] and "invalid JSON" in where[1]
    assert _synced_until(store) == datetime(2026, 8, 1, 1, tzinfo=UTC)


def test_release_list_without_a_baseline_is_an_error(fake: FakeReleases, tmp_path: Path) -> None:
    fake.publish(f"{DAY}_delta_CVEs_at_0100Z.zip", _zip({}))
    fake.publish("release-notes.md", b"")
    with pytest.raises(SyncError, match=r"no \*_all_CVEs_at_midnight\.zip"):
        cve5.sync(VulnStore(tmp_path / "v.db"), base_url=fake.url, http=_http())
