"""The vulnerability store: one SQLite file of feed data, apart from the inventory database.

Apart because feed imports are large write transactions that must not hold the inventory's write lock,
and because an air-gapped site can copy this one file from a connected machine. Same conventions as
`medsentry.store.sqlite`: WAL, numbered migrations applied in one transaction, values only as parameters.

Every import (`import_records`) is one transaction: an exception or a killed process leaves the previous
data exactly as it was, and readers see either all of an import or none of it. Re-importing a record is
idempotent: a record no newer than the stored one (by its modified time) is left alone and counted as
unchanged.

Indexes serve the matcher's hot path (a 1,000-component SBOM against 300,000 CVEs in under 2 s):
`products` maps normalised product → vendor → CVE from the *vulnerable* CPEs of NVD configurations and from
CNA `affected[]` (vendor/product names, packageName, cpes), so candidates for a component are one B-tree
range scan by product; the matcher decides whether vendor aliases or versions fit. `slices` holds, per CVE
and NVD product, the configurations cut down to what can decide a match for that product
(`configuration_slices`), so a scan never walks a record's criteria for other products. CSAF documents are
found by name tokens of their product trees (`csaf_tokens`), CVEs without an NVD configuration by words of
their description (`vuln_text`, FTS5).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from medsentry.store.base import StoreError
from medsentry.store.sqlite import Migration, OwnsConnection, default_db_path, open_database
from medsentry.vulns.records import (
    CsafDocument,
    Cvss,
    EpssScore,
    KevEntry,
    OsvAdvisory,
    OsvAffected,
    Record,
    Vulnerability,
    iso,
)

ENV_VAR = "MEDSENTRY_VULN_DB"
FEEDS = ("nvd", "cve5", "kev", "epss", "csaf", "osv")
VULNERABILITY_FEEDS = ("nvd", "cve5", "csaf", "osv")  # those that can name a vulnerability for a product
DEFAULT_MAX_AGE = timedelta(days=7)
BATCH = 1000
_IN_CHUNK = 500  # host parameters per IN (...) list, well under SQLite's limit

MIGRATIONS = (
    Migration(
        1,
        "feeds",
        (
            """CREATE TABLE feeds (
            feed TEXT PRIMARY KEY,
            records INTEGER NOT NULL DEFAULT 0,
            imported REAL,
            data_time TEXT,
            state TEXT
        )""",
            """CREATE TABLE vulnerabilities (
            id TEXT NOT NULL,
            source TEXT NOT NULL,
            published TEXT,
            modified TEXT,
            status TEXT NOT NULL DEFAULT '',
            description TEXT NOT NULL DEFAULT '',
            aliases TEXT NOT NULL DEFAULT '[]',
            cvss3 TEXT,
            cvss3_score REAL,
            cvss4 TEXT,
            cvss4_score REAL,
            cwes TEXT NOT NULL DEFAULT '[]',
            refs TEXT NOT NULL DEFAULT '[]',
            configurations BLOB NOT NULL,
            affected BLOB NOT NULL,
            has_config INTEGER NOT NULL DEFAULT 0,
            ssvc TEXT,
            PRIMARY KEY (id, source)
        )""",
            """CREATE TABLE products (
            product TEXT NOT NULL,
            vendor TEXT NOT NULL,
            cve_id TEXT NOT NULL,
            source TEXT NOT NULL,
            origin TEXT NOT NULL,
            versions TEXT NOT NULL,
            PRIMARY KEY (product, vendor, cve_id, source, origin)
        ) WITHOUT ROWID""",
            "CREATE INDEX products_cve ON products (cve_id, source)",
            "CREATE VIRTUAL TABLE vuln_text USING fts5(description)",
            """CREATE TABLE kev (
            cve TEXT PRIMARY KEY,
            vendor TEXT, product TEXT, name TEXT, date_added TEXT, due_date TEXT, ransomware INTEGER,
            short_description TEXT, required_action TEXT, cwes TEXT
        )""",
            """CREATE TABLE epss (
            cve TEXT PRIMARY KEY, epss REAL NOT NULL, percentile REAL NOT NULL, date TEXT, model_version TEXT
        )""",
            """CREATE TABLE osv (
            id TEXT PRIMARY KEY, modified TEXT, published TEXT, withdrawn TEXT, aliases TEXT, summary TEXT,
            affected TEXT, refs TEXT
        )""",
            """CREATE TABLE osv_packages (
            ecosystem TEXT NOT NULL, name TEXT NOT NULL, osv_id TEXT NOT NULL,
            PRIMARY KEY (ecosystem, name, osv_id)
        ) WITHOUT ROWID""",
            "CREATE INDEX osv_packages_id ON osv_packages (osv_id)",
            """CREATE TABLE osv_aliases (
            alias TEXT NOT NULL, osv_id TEXT NOT NULL, PRIMARY KEY (alias, osv_id)
        ) WITHOUT ROWID""",
            "CREATE INDEX osv_aliases_id ON osv_aliases (osv_id)",
            """CREATE TABLE csaf (
            key TEXT PRIMARY KEY, tracking_id TEXT, title TEXT, publisher TEXT, namespace TEXT,
            current_release_date TEXT, cve_ids TEXT, product_names TEXT, document TEXT
        )""",
            """CREATE TABLE csaf_tokens (
            token TEXT NOT NULL, doc_key TEXT NOT NULL, PRIMARY KEY (token, doc_key)
        ) WITHOUT ROWID""",
            "CREATE INDEX csaf_tokens_doc ON csaf_tokens (doc_key)",
            """CREATE TABLE csaf_cves (
            cve_id TEXT NOT NULL, doc_key TEXT NOT NULL, PRIMARY KEY (cve_id, doc_key)
        ) WITHOUT ROWID""",
            "CREATE INDEX csaf_cves_doc ON csaf_cves (doc_key)",
        ),
    ),
    Migration(2, "products by vendor", ("CREATE INDEX products_vendor ON products (vendor, product)",)),
    # Slices live apart from `products`, keyed by CVE: in the product-ordered `products` B-tree every
    # re-analysed record's rewrite touched a dozen scattered pages (4 s of a 2,000-record day); here a
    # record's slices are adjacent, and its `products` rows stay put while its products do. Records written
    # before this migration have none: the matcher then reads the whole configurations.
    Migration(
        3,
        "configuration slices",
        (
            "CREATE TABLE slices (cve_id TEXT NOT NULL, source TEXT NOT NULL, vendor TEXT NOT NULL, "
            "product TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (cve_id, source, vendor, product))",
        ),
    ),
)


class FeedsError(StoreError):
    """The vulnerability store cannot answer truthfully: matching against it would under-report."""


class FeedsEmpty(FeedsError):
    pass


class FeedsStale(FeedsError):
    pass


@dataclass(frozen=True, slots=True)
class FeedStatus:
    feed: str
    records: int
    imported: datetime | None  # when this machine last wrote the feed
    data_time: datetime | None  # newest record (or sync horizon) the feed holds
    age: timedelta | None  # now - data_time, else now - imported

    def to_json(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "records": self.records,
            "imported": iso(self.imported),
            "data_time": iso(self.data_time),
            "age_seconds": None if self.age is None else round(self.age.total_seconds()),
        }


@dataclass(slots=True)
class ImportCounts:
    """Per feed: records written (new or newer) and records left alone because the store had them."""

    written: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)

    def add(self, other: ImportCounts) -> None:
        for mine, theirs in ((self.written, other.written), (self.unchanged, other.unchanged)):
            for feed, n in theirs.items():
                mine[feed] = mine.get(feed, 0) + n


@dataclass(frozen=True, slots=True)
class ProductHit:
    cve_id: str
    vendor: str
    product: str
    source: str  # feed: nvd / cve5
    origin: str  # cpe (NVD configuration), cna (vendor/product names), cna-package, cna-cpe
    versions: Any = None  # the version constraints stated there (see `_products`), for pre-filtering
    packed_slices: bytes | None = None  # origin "cpe": `configuration_slices` for this product, packed

    def slices(self) -> list[tuple[int, dict[str, Any]]] | None:
        """The configurations that can match this product, as (index in the record, pruned configuration);
        None when the store has none for this row (written before they were kept)."""
        if self.packed_slices is None:
            return None
        return [(idx, conf) for idx, conf in _unpack(self.packed_slices)]


def default_vulndb_path(env: Mapping[str, str] = os.environ) -> Path:
    """$MEDSENTRY_VULN_DB, else `vulns.db` beside the inventory database."""
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser()
    return default_db_path(env).with_name("vulns.db")


_SPACES = re.compile(r"\s+")


def name_key(value: str) -> str:
    """The form product and vendor names are indexed and looked up in: lowercase, CPE escapes removed,
    whitespace as `_` (CPE's convention, so CNA "Red Hat" meets CPE `red_hat`)."""
    return _SPACES.sub("_", value.replace("\\", "").strip().lower())


_CPE_SPLIT = re.compile(r"(?<!\\):")


def _cpe_parts(cpe: str) -> tuple[str, str, str, str] | None:
    """(vendor, product) normalised by `name_key`, and (version, update) as written, of a CPE 2.3 formatted
    string or a CPE 2.2 URI."""
    if cpe.startswith("cpe:2.3:"):
        # an escaped colon is rare: split by regex only then (this runs for every cpeMatch of a feed)
        parts = _CPE_SPLIT.split(cpe) if "\\" in cpe else cpe.split(":")
        if len(parts) < 5:
            return None
        vendor, product = parts[3], parts[4]
        version, update = [*parts, "*", "*"][5:7]
    elif cpe.startswith("cpe:/"):
        parts = [urllib.parse.unquote(p) for p in cpe[5:].split(":")]
        if len(parts) < 3:
            return None
        vendor, product = parts[1], parts[2]
        version, update = [*parts, "*", "*"][3:5]
    else:
        return None
    if vendor in ("", "*", "-") or product in ("", "*", "-"):
        return None
    return name_key(vendor), name_key(product), version, update


def cpe_vendor_product(cpe: str) -> tuple[str, str] | None:
    """(vendor, product) of a CPE 2.3 formatted string or a CPE 2.2 URI, normalised by `name_key`."""
    parts = _cpe_parts(cpe)
    return None if parts is None else (parts[0], parts[1])


_STOP_TOKENS = frozenset(
    {
        *("and", "or", "the", "of", "for", "all", "to", "by", "in", "on", "with", "before", "prior"),
        *("impacted", "version", "versions", "ver", "rev", "cve", "series", "model", "models", "including"),
        *("inc", "ltd", "llc", "corp"),
    }
)


def csaf_tokens(value: str) -> set[str]:
    """Name tokens for CSAF lookups: lowercase letter/digit runs, short numbers and filler words dropped."""
    tokens = set()
    for token in re.findall(r"[^\W_]+", value.lower()):
        if token in _STOP_TOKENS or len(token) < 2 or (token.isdigit() and len(token) < 3):
            continue
        tokens.add(token)
    return tokens


def _osv_name(ecosystem: str, name: str) -> str:
    """PyPI names compare per PEP 503; other ecosystems case-insensitively."""
    if ecosystem.lower() == "pypi":
        return re.sub(r"[-_.]+", "-", name).lower()
    return name.lower()


class VulnStore(OwnsConnection):
    """Feed data on one SQLite file (`path` may be ":memory:"). Not shared between threads."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn, self.schema_version = open_database(path, MIGRATIONS)

    # -- writing ----------------------------------------------------------------------------------------

    def import_records(
        self,
        records: Iterable[Record],
        states: Mapping[str, Any] | None = None,
        as_of: Mapping[str, datetime] | None = None,
    ) -> ImportCounts:
        """Write `records` (any mix of kinds, consumed lazily) and the feeds' sync `states` atomically.
        `as_of` raises a feed's data time to a sync horizon even when nothing changed."""
        counts = ImportCounts()
        newest: dict[str, str] = {feed: iso(when) or "" for feed, when in (as_of or {}).items()}
        pending: dict[type, list[Any]] = {}
        writers = {
            Vulnerability: self._write_vulnerabilities,
            KevEntry: self._write_kev,
            EpssScore: self._write_epss,
            OsvAdvisory: self._write_osv,
            CsafDocument: self._write_csaf,
        }
        with self._transaction():
            for record in records:
                batch = pending.setdefault(type(record), [])
                batch.append(record)
                if len(batch) >= BATCH:
                    writers[type(record)](batch, counts, newest)
                    batch.clear()
            for kind, batch in pending.items():
                if batch:
                    writers[kind](batch, counts, newest)
            touched = set(counts.written) | set(counts.unchanged) | set(states or {}) | set(newest)
            for feed in sorted(touched):
                self._update_feed(feed, newest.get(feed) or None, (states or {}).get(feed, ...))
        return counts

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _update_feed(self, feed: str, data_time: str | None, state: Any) -> None:
        records = self._count(feed)
        self._conn.execute(
            """INSERT INTO feeds (feed, records, imported, data_time, state) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (feed) DO UPDATE SET records = excluded.records, imported = excluded.imported,
                 data_time = CASE WHEN feeds.data_time IS NULL OR excluded.data_time > feeds.data_time
                                  THEN excluded.data_time ELSE feeds.data_time END,
                 state = CASE WHEN ? THEN excluded.state ELSE feeds.state END""",
            (
                feed,
                records,
                time.time(),
                data_time,
                None if state is ... else json.dumps(state),
                state is not ...,
            ),
        )

    def _count(self, feed: str) -> int:
        if feed in ("nvd", "cve5"):
            row = self._conn.execute(
                "SELECT COUNT(*) FROM vulnerabilities WHERE source = ?", (feed,)
            ).fetchone()
        else:
            table = {"kev": "kev", "epss": "epss", "osv": "osv", "csaf": "csaf"}.get(feed)
            if table is None:
                return 0
            row = self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()  # table from a fixed map
        return int(row[0])

    def _stored_times(
        self, sql: str, keys: Sequence[Any], prefix: Sequence[Any] = ()
    ) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = list(keys[start : start + _IN_CHUNK])
            marks = ",".join("?" * len(chunk))
            for key, modified in self._conn.execute(sql.format(marks=marks), (*prefix, *chunk)):
                found[key] = modified
        return found

    @staticmethod
    def _fresh(
        records: Sequence[Any], key: Any, when: Any, stored: Mapping[str, str | None], ordered: bool = True
    ) -> tuple[list[Any], int]:
        """Records newer than the stored version (ties and older ones are unchanged), one per key;
        `ordered=False`: `when` is a version string, any difference counts as newer."""
        latest: dict[str, Any] = {}
        for record in records:
            k = key(record)
            if k not in latest or (when(record) or "") >= (when(latest[k]) or ""):
                latest[k] = record
        fresh = []
        for k, record in latest.items():
            if k in stored and (
                (stored[k] or "") >= (when(record) or "") if ordered else stored[k] == when(record)
            ):
                continue
            fresh.append(record)
        return fresh, len(records) - len(fresh)

    @staticmethod
    def _tally(
        counts: ImportCounts,
        newest: dict[str, str],
        feed: str,
        fresh: Sequence[Any],
        unchanged: int,
        times: Iterable[str | None],
    ) -> None:
        counts.written[feed] = counts.written.get(feed, 0) + len(fresh)
        counts.unchanged[feed] = counts.unchanged.get(feed, 0) + unchanged
        top = max((t for t in times if t), default="")
        if top > newest.get(feed, ""):
            newest[feed] = top

    def _write_vulnerabilities(
        self, batch: list[Vulnerability], counts: ImportCounts, newest: dict[str, str]
    ) -> None:
        for feed in sorted({v.source for v in batch}):
            records = [v for v in batch if v.source == feed]
            stored = self._stored_times(
                "SELECT id, modified FROM vulnerabilities WHERE source = ? AND id IN ({marks})",
                [v.id for v in records],
                (feed,),
            )
            fresh, unchanged = self._fresh(records, lambda v: v.id, lambda v: iso(v.modified), stored)
            self._tally(counts, newest, feed, fresh, unchanged, (iso(v.modified) for v in records))
            if not fresh:
                continue
            rows = {v.id: _vulnerability_row(v) for v in fresh}
            # Most NVD modifications leave the configurations and CNA data alone (references, CVSS, status),
            # and a re-analysis mostly leaves the products and their version bounds: rewriting index rows
            # that stay the same was most of an import.
            products = {v.id: _products(v.configurations, v.affected) for v in fresh if v.id not in stored}
            kept = self._kept_index(feed, [v for v in fresh if v.id in stored], rows, products)
            replaced = list(kept)
            if replaced:
                old_rowids = self._rowids(feed, replaced)
                self._conn.executemany(
                    "DELETE FROM vuln_text WHERE rowid = ?", [(r,) for r in old_rowids.values()]
                )
                self._conn.executemany(
                    "DELETE FROM slices WHERE cve_id = ? AND source = ?",
                    [(i, feed) for i in replaced if not kept[i][1]],
                )
                self._conn.executemany(
                    "DELETE FROM products WHERE source = ? AND cve_id = ?",
                    [(feed, i) for i in replaced if not kept[i][0]],
                )
            self._conn.executemany(_UPSERT_VULNERABILITY, list(rows.values()))
            product_rows, slice_rows = [], []
            for v in fresh:
                products_kept, slices_kept = kept.get(v.id, (False, False))
                if not products_kept:
                    product_rows += [
                        (product, vendor, v.id, feed, origin, json.dumps(versions, separators=_COMPACT))
                        for (vendor, product, origin), versions in products[v.id].items()
                    ]
                if not slices_kept:
                    slice_rows += [
                        (v.id, feed, vendor, product, _pack(cut))
                        for (vendor, product), cut in configuration_slices(v.configurations).items()
                    ]
            self._conn.executemany(
                "INSERT OR IGNORE INTO slices (cve_id, source, vendor, product, data) VALUES (?, ?, ?, ?, ?)",
                slice_rows,
            )
            self._conn.executemany(
                "INSERT OR IGNORE INTO products (product, vendor, cve_id, source, origin, versions) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                product_rows,
            )
            rowids = self._rowids(feed, [v.id for v in fresh if not v.configurations and v.description])
            self._conn.executemany(
                "INSERT INTO vuln_text (rowid, description) VALUES (?, ?)",
                [(rowids[v.id], v.description) for v in fresh if v.id in rowids],
            )

    def _kept_index(
        self,
        feed: str,
        records: Sequence[Vulnerability],
        rows: Mapping[str, tuple[Any, ...]],
        products: dict[str, dict[tuple[str, str, str], Any]],
    ) -> dict[str, tuple[bool, bool]]:
        """Per replaced record: (its `products` rows stay, its slices stay). Slices come from the
        configurations alone, so they stay when the packed configurations are byte-identical (packing is
        deterministic); the `products` rows also stay when the products and version bounds derived from
        the stored configurations and `affected` are the ones of the new record (computed into `products`,
        which holds them already for new records)."""
        kept: dict[str, tuple[bool, bool]] = {}
        by_id = {v.id: v for v in records}
        ids = list(by_id)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            found = self._conn.execute(
                f"SELECT id, configurations, affected FROM vulnerabilities WHERE source = ? "
                f"AND id IN ({','.join('?' * len(chunk))})",
                (feed, *chunk),
            )
            for cve, configurations, affected in found:
                new, v = rows[cve], by_id[cve]
                same_conf = configurations == new[_CONFIGURATIONS]
                if same_conf and affected == new[_CONFIGURATIONS + 1]:
                    kept[cve] = (True, True)
                    continue
                products[cve] = _products(v.configurations, v.affected)  # what the insert then writes
                old = _products(_unpack(configurations), _unpack(affected))
                kept[cve] = (old == products[cve], same_conf)
        return kept

    def _rowids(self, feed: str, ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = list(ids[start : start + _IN_CHUNK])
            rows = self._conn.execute(
                "SELECT id, rowid FROM vulnerabilities WHERE source = ? "
                f"AND id IN ({','.join('?' * len(chunk))})",
                (feed, *chunk),
            )
            found.update((i, r) for i, r in rows)
        return found

    def _write_kev(self, batch: list[KevEntry], counts: ImportCounts, newest: dict[str, str]) -> None:
        stored = self._stored_times(
            "SELECT cve, date_added || '|' || COALESCE(due_date, '') || '|' || name "
            "FROM kev WHERE cve IN ({marks})",
            [k.cve for k in batch],
        )
        fresh, unchanged = self._fresh(batch, lambda k: k.cve, _kev_version, stored, ordered=False)
        self._tally(counts, newest, "kev", fresh, unchanged, (iso(_midnight(k.date_added)) for k in batch))
        self._conn.executemany(
            """INSERT INTO kev (cve, vendor, product, name, date_added, due_date, ransomware,
                                short_description, required_action, cwes)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (cve) DO UPDATE SET vendor = excluded.vendor, product = excluded.product,
                 name = excluded.name, date_added = excluded.date_added, due_date = excluded.due_date,
                 ransomware = excluded.ransomware, short_description = excluded.short_description,
                 required_action = excluded.required_action, cwes = excluded.cwes""",
            [
                (
                    k.cve,
                    k.vendor,
                    k.product,
                    k.name,
                    k.date_added.isoformat(),
                    k.due_date.isoformat() if k.due_date else None,
                    k.ransomware,
                    k.short_description,
                    k.required_action,
                    json.dumps(k.cwes),
                )
                for k in fresh
            ],
        )

    def _write_epss(self, batch: list[EpssScore], counts: ImportCounts, newest: dict[str, str]) -> None:
        stored = self._stored_times(
            "SELECT cve, COALESCE(date, '') FROM epss WHERE cve IN ({marks})", [e.cve for e in batch]
        )
        fresh, unchanged = self._fresh(
            batch, lambda e: e.cve, lambda e: e.date.isoformat() if e.date else "", stored
        )
        self._tally(
            counts,
            newest,
            "epss",
            fresh,
            unchanged,
            (iso(_midnight(e.date)) if e.date else None for e in batch),
        )
        self._conn.executemany(
            """INSERT INTO epss (cve, epss, percentile, date, model_version) VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (cve) DO UPDATE SET epss = excluded.epss, percentile = excluded.percentile,
                 date = excluded.date, model_version = excluded.model_version""",
            [
                (e.cve, e.epss, e.percentile, e.date.isoformat() if e.date else None, e.model_version)
                for e in fresh
            ],
        )

    def _write_osv(self, batch: list[OsvAdvisory], counts: ImportCounts, newest: dict[str, str]) -> None:
        stored = self._stored_times(
            "SELECT id, modified FROM osv WHERE id IN ({marks})", [a.id for a in batch]
        )
        fresh, unchanged = self._fresh(batch, lambda a: a.id, lambda a: iso(a.modified), stored)
        self._tally(counts, newest, "osv", fresh, unchanged, (iso(a.modified) for a in batch))
        replaced = [(a.id,) for a in fresh if a.id in stored]
        self._conn.executemany("DELETE FROM osv_packages WHERE osv_id = ?", replaced)
        self._conn.executemany("DELETE FROM osv_aliases WHERE osv_id = ?", replaced)
        self._conn.executemany(
            """INSERT INTO osv (id, modified, published, withdrawn, aliases, summary, affected, refs)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET modified = excluded.modified, published = excluded.published,
                 withdrawn = excluded.withdrawn, aliases = excluded.aliases, summary = excluded.summary,
                 affected = excluded.affected, refs = excluded.refs""",
            [
                (
                    a.id,
                    iso(a.modified),
                    iso(a.published),
                    iso(a.withdrawn),
                    json.dumps(a.aliases),
                    a.summary,
                    json.dumps([asdict(x) for x in a.affected]),
                    json.dumps(a.references),
                )
                for a in fresh
            ],
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO osv_packages (ecosystem, name, osv_id) VALUES (?, ?, ?)",
            [
                (x.ecosystem.lower(), _osv_name(x.ecosystem, x.package), a.id)
                for a in fresh
                for x in a.affected
                if x.package
            ],
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO osv_aliases (alias, osv_id) VALUES (?, ?)",
            [(alias.upper(), a.id) for a in fresh for alias in a.aliases],
        )

    def _write_csaf(self, batch: list[CsafDocument], counts: ImportCounts, newest: dict[str, str]) -> None:
        stored = self._stored_times(
            "SELECT key, current_release_date FROM csaf WHERE key IN ({marks})", [d.key for d in batch]
        )
        fresh, unchanged = self._fresh(batch, lambda d: d.key, lambda d: iso(d.current_release_date), stored)
        self._tally(counts, newest, "csaf", fresh, unchanged, (iso(d.current_release_date) for d in batch))
        replaced = [(d.key,) for d in fresh if d.key in stored]
        self._conn.executemany("DELETE FROM csaf_tokens WHERE doc_key = ?", replaced)
        self._conn.executemany("DELETE FROM csaf_cves WHERE doc_key = ?", replaced)
        self._conn.executemany(
            """INSERT INTO csaf (key, tracking_id, title, publisher, namespace, current_release_date, cve_ids,
                                 product_names, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (key) DO UPDATE SET tracking_id = excluded.tracking_id, title = excluded.title,
                 publisher = excluded.publisher, namespace = excluded.namespace,
                 current_release_date = excluded.current_release_date, cve_ids = excluded.cve_ids,
                 product_names = excluded.product_names, document = excluded.document""",
            [
                (
                    d.key,
                    d.tracking_id,
                    d.title,
                    d.publisher,
                    d.publisher_namespace,
                    iso(d.current_release_date),
                    json.dumps(d.cve_ids),
                    json.dumps(d.product_names),
                    json.dumps(d.document, separators=(",", ":")),
                )
                for d in fresh
            ],
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO csaf_tokens (token, doc_key) VALUES (?, ?)",
            [(token, d.key) for d in fresh for token in set().union(*map(csaf_tokens, d.product_names))],
        )
        self._conn.executemany(
            "INSERT OR IGNORE INTO csaf_cves (cve_id, doc_key) VALUES (?, ?)",
            [(cve, d.key) for d in fresh for cve in d.cve_ids],
        )

    # -- status -----------------------------------------------------------------------------------------

    def feed_state(self, feed: str) -> Any:
        row = self._conn.execute("SELECT state FROM feeds WHERE feed = ?", (feed,)).fetchone()
        return None if row is None or row[0] is None else json.loads(row[0])

    def feed_status(self, now: datetime | None = None) -> dict[str, FeedStatus]:
        """Every known feed, imported or not (zero records, no times)."""
        now = now or datetime.now(UTC)
        rows = {r["feed"]: r for r in self._conn.execute("SELECT * FROM feeds")}
        status = {}
        for feed in (*FEEDS, *sorted(set(rows) - set(FEEDS))):
            row = rows.get(feed)
            imported = datetime.fromtimestamp(row["imported"], UTC) if row and row["imported"] else None
            data_time = datetime.fromisoformat(row["data_time"]) if row and row["data_time"] else None
            reference = data_time or imported
            status[feed] = FeedStatus(
                feed,
                row["records"] if row else 0,
                imported,
                data_time,
                None if reference is None else now - reference,
            )
        return status

    def require_fresh(
        self,
        max_age: timedelta | None = DEFAULT_MAX_AGE,
        feeds: Iterable[str] | None = None,
        now: datetime | None = None,
    ) -> dict[str, FeedStatus]:
        """The feed status, or FeedsEmpty / FeedsStale: a scan must never report "0 vulnerabilities" because
        nothing was imported, nor quietly match against months-old data. `feeds` to check for age defaults
        to every feed that holds records; `max_age=None` skips the age check (a deliberate old snapshot)."""
        status = self.feed_status(now)
        if not any(status[f].records for f in VULNERABILITY_FEEDS):
            raise FeedsEmpty(
                f"the vulnerability store {self.path} holds no vulnerability records "
                "(NVD, CVE 5, CSAF, OSV): "
                "run `medsentry feeds sync` or `medsentry feeds import PATH` first"
            )
        if max_age is not None:
            wanted = list(feeds) if feeds is not None else [f for f, s in status.items() if s.records]
            stale = [
                s for f in wanted if (s := status.get(f)) is not None and (s.age is None or s.age > max_age)
            ]
            if stale:
                listed = ", ".join(
                    f"{s.feed} ({'never updated' if s.age is None else f'{s.age.days} days old'})"
                    for s in stale
                )
                raise FeedsStale(
                    f"vulnerability feeds older than {max_age.days} days in {self.path}: {listed}; "
                    "run `medsentry feeds sync` (or import a newer mirror), or accept the age explicitly"
                )
        return status

    # -- lookups ----------------------------------------------------------------------------------------

    def vulnerability_records(self, cve_id: str) -> list[Vulnerability]:
        rows = self._conn.execute(
            "SELECT * FROM vulnerabilities WHERE id = ? ORDER BY source", (cve_id.upper(),)
        )
        return [_vulnerability(r) for r in rows]

    def vulnerability(self, cve_id: str) -> Vulnerability | None:
        return self.vulnerabilities([cve_id]).get(cve_id.upper())

    def vulnerabilities(
        self, cve_ids: Iterable[str], configurations: bool = True
    ) -> dict[str, Vulnerability]:
        """Merged views: NVD's analysis (configurations, CVSS, status) with the CNA's own `affected[]` and
        CISA's SSVC from CVE 5 where present. `configurations=False` leaves the configurations out
        (`configurations_left_out` says there were some): decoding them was a third of a scan, which
        reads the product's slices instead."""
        columns = "*" if configurations else _LEAN_COLUMNS
        ids = sorted({c.upper() for c in cve_ids})
        by_id: dict[str, list[Vulnerability]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            rows = self._conn.execute(
                f"SELECT {columns} FROM vulnerabilities WHERE id IN ({','.join('?' * len(chunk))}) "
                "ORDER BY source DESC",
                chunk,
            )
            for row in rows:
                by_id.setdefault(row["id"], []).append(_vulnerability(row))
        return {cve: _merge(records) for cve, records in by_id.items()}

    def candidates(self, product: str, vendor: str | None = None) -> list[ProductHit]:
        """CVEs whose configurations or CNA data name `product` (and `vendor`, if given)."""
        select = (
            "SELECT p.*, s.data AS slices FROM products p LEFT JOIN slices s ON p.origin = 'cpe' AND "
            "s.cve_id = p.cve_id AND s.source = p.source AND s.vendor = p.vendor AND s.product = p.product"
        )
        if vendor is None:
            rows = self._conn.execute(f"{select} WHERE p.product = ?", (name_key(product),))
        else:
            rows = self._conn.execute(
                f"{select} WHERE p.product = ? AND p.vendor = ?", (name_key(product), name_key(vendor))
            )
        return [
            ProductHit(
                r["cve_id"],
                r["vendor"],
                r["product"],
                r["source"],
                r["origin"],
                json.loads(r["versions"]),
                r["slices"],
            )
            for r in rows
        ]

    def vendors_of(self, product: str) -> set[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT vendor FROM products WHERE product = ?", (name_key(product),)
        )
        return {r[0] for r in rows}

    def products_of(self, vendor: str) -> set[str]:
        """Products indexed under `vendor`: for packages named after their NVD vendor (`Newtonsoft.Json` is
        `newtonsoft:json.net`, NuGet `BouncyCastle` is `bouncycastle:bc-csharp`)."""
        rows = self._conn.execute(
            "SELECT DISTINCT product FROM products WHERE vendor = ?", (name_key(vendor),)
        )
        return {r[0] for r in rows}

    def search_unconfigured(self, words: Sequence[str], limit: int = 200) -> list[str]:
        """CVE ids without an NVD configuration whose description holds all `words` (FTS5, any case)."""
        terms = [w for w in (re.sub(r"[^\w.\-]", "", w) for w in words) if w]
        if not terms:
            return []
        query = " ".join('"' + t.replace('"', "") + '"' for t in terms)
        rows = self._conn.execute(
            "SELECT DISTINCT v.id FROM vuln_text t JOIN vulnerabilities v ON v.rowid = t.rowid "
            "WHERE vuln_text MATCH ? AND NOT EXISTS (SELECT 1 FROM vulnerabilities n WHERE n.id = v.id "
            "AND n.source = 'nvd' AND n.has_config) LIMIT ?",
            (query, limit),
        )
        return sorted(r[0] for r in rows)

    def kev(self, cve_id: str) -> KevEntry | None:
        return self.kev_many([cve_id]).get(cve_id.upper())

    def kev_many(self, cve_ids: Iterable[str]) -> dict[str, KevEntry]:
        return {
            r["cve"]: _kev(r) for r in self._select_in("SELECT * FROM kev WHERE cve IN ({marks})", cve_ids)
        }

    def epss(self, cve_id: str) -> EpssScore | None:
        return self.epss_many([cve_id]).get(cve_id.upper())

    def epss_many(self, cve_ids: Iterable[str]) -> dict[str, EpssScore]:
        return {
            r["cve"]: EpssScore(
                r["cve"],
                r["epss"],
                r["percentile"],
                date.fromisoformat(r["date"]) if r["date"] else None,
                r["model_version"] or "",
            )
            for r in self._select_in("SELECT * FROM epss WHERE cve IN ({marks})", cve_ids)
        }

    def osv_for_package(self, ecosystem: str, name: str) -> list[OsvAdvisory]:
        rows = self._conn.execute(
            "SELECT o.* FROM osv_packages p JOIN osv o ON o.id = p.osv_id "
            "WHERE p.ecosystem = ? AND p.name = ? "
            "ORDER BY o.id",
            (ecosystem.lower(), _osv_name(ecosystem, name)),
        )
        return [_osv(r) for r in rows]

    def osv_for_alias(self, alias: str) -> list[OsvAdvisory]:
        rows = self._conn.execute(
            "SELECT o.* FROM osv_aliases a JOIN osv o ON o.id = a.osv_id WHERE a.alias = ? ORDER BY o.id",
            (alias.upper(),),
        )
        return [_osv(r) for r in rows]

    def csaf_candidates(self, names: Iterable[str], limit: int = 50) -> list[tuple[str, int]]:
        """(document key, tokens matched) for CSAF documents sharing name tokens with `names`, best first."""
        tokens = sorted(set().union(*map(csaf_tokens, names))) if names else []
        if not tokens:
            return []
        rows = self._conn.execute(
            "SELECT doc_key, COUNT(*) AS hits FROM csaf_tokens "
            f"WHERE token IN ({','.join('?' * len(tokens))}) "
            "GROUP BY doc_key ORDER BY hits DESC, doc_key LIMIT ?",
            (*tokens, limit),
        )
        return [(r[0], r[1]) for r in rows]

    def csaf_documents(self, keys: Iterable[str]) -> list[CsafDocument]:
        return [
            _csaf(r)
            for r in self._select_in(
                "SELECT * FROM csaf WHERE key IN ({marks}) ORDER BY key", keys, upper=False
            )
        ]

    def csaf_for_cve(self, cve_id: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT doc_key FROM csaf_cves WHERE cve_id = ? ORDER BY doc_key", (cve_id.upper(),)
        )
        return [r[0] for r in rows]

    def _select_in(self, sql: str, keys: Iterable[str], upper: bool = True) -> Iterator[sqlite3.Row]:
        values = sorted({k.upper() if upper else k for k in keys})
        for start in range(0, len(values), _IN_CHUNK):
            chunk = values[start : start + _IN_CHUNK]
            yield from self._conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)

    def size_bytes(self) -> int:
        page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        return int(page_size * pages)


def open_vulndb(path: str | Path | None = None, env: Mapping[str, str] = os.environ) -> VulnStore:
    return VulnStore(path if path is not None else default_vulndb_path(env))


_UPSERT_VULNERABILITY = """
INSERT INTO vulnerabilities (id, source, published, modified, status, description, aliases, cvss3,
                             cvss3_score, cvss4, cvss4_score, cwes, refs, configurations, affected,
                             has_config, ssvc)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id, source) DO UPDATE SET
    published = excluded.published, modified = excluded.modified, status = excluded.status,
    description = excluded.description, aliases = excluded.aliases, cvss3 = excluded.cvss3,
    cvss3_score = excluded.cvss3_score, cvss4 = excluded.cvss4, cvss4_score = excluded.cvss4_score,
    cwes = excluded.cwes, refs = excluded.refs, configurations = excluded.configurations,
    affected = excluded.affected, has_config = excluded.has_config, ssvc = excluded.ssvc
"""

_COMPACT = (",", ":")


_CONFIGURATIONS = 13  # position of the packed configurations (then `affected`) in `_vulnerability_row`


def _vulnerability_row(v: Vulnerability) -> tuple[Any, ...]:
    return (
        v.id,
        v.source,
        iso(v.published),
        iso(v.modified),
        v.status,
        v.description,
        json.dumps(v.aliases),
        json.dumps(asdict(v.cvss3)) if v.cvss3 else None,
        v.cvss3.score if v.cvss3 else None,
        json.dumps(asdict(v.cvss4)) if v.cvss4 else None,
        v.cvss4.score if v.cvss4 else None,
        json.dumps(v.cwes),
        json.dumps(v.references),
        _pack(v.configurations),
        _pack(v.affected),
        bool(v.configurations),
        json.dumps(v.ssvc) if v.ssvc is not None else None,
    )


def _products(configurations: list[Any], affected: list[Any]) -> dict[tuple[str, str, str], Any]:
    """(vendor, product, origin) keys under which a record is a candidate, each with the version constraints
    stated there, so a matcher can drop out-of-range candidates before loading whole records:
    origin "cpe": [[version, update, startIncluding, startExcluding, endIncluding, endExcluding], ...] of the
    vulnerable cpeMatch entries; CNA origins: {"default": defaultStatus, "versions": versions[] as given}."""
    found: dict[tuple[str, str, str], Any] = {}
    for match in _vulnerable_matches(configurations):
        parts = _cpe_parts(match["criteria"])
        if parts:
            found.setdefault((parts[0], parts[1], "cpe"), []).append(
                [
                    parts[2],
                    parts[3],
                    match.get("versionStartIncluding"),
                    match.get("versionStartExcluding"),
                    match.get("versionEndIncluding"),
                    match.get("versionEndExcluding"),
                ]
            )
    for entry in affected:
        vendor = entry.get("vendor") if isinstance(entry.get("vendor"), str) else ""
        vendor_key = "" if name_key(vendor) in ("n/a", "") else name_key(vendor)
        versions = _list(entry.get("versions"))
        stated = {"default": entry.get("defaultStatus"), "versions": versions}
        for field_name, origin in (("product", "cna"), ("packageName", "cna-package")):
            value = entry.get(field_name)
            if isinstance(value, str) and name_key(value) not in ("", "n/a"):
                found.setdefault((vendor_key, name_key(value), origin), stated)
        for cpe in _list(entry.get("cpes")):
            pair = cpe_vendor_product(cpe) if isinstance(cpe, str) else None
            if pair:
                found.setdefault((*pair, "cna-cpe"), stated)
    return found


def configuration_slices(configurations: list[Any]) -> dict[tuple[str, str], list[tuple[int, Any]]]:
    """Per (vendor, product) of a vulnerable criteria: the configurations that name it, each cut down to
    what can decide a match *for that product*, with its index in the record.

    Why: a record often lists hundreds of criteria of other products (every Cisco switch, every Oracle
    module), and walking them for each candidate was most of a scan. Evidence is only ever kept for the
    target product, so a vulnerable criteria of another product matters only where its truth can change
    whether the configuration holds. Under AND or negation it can, and such a node is kept whole. On a
    path of plain OR nodes from the configuration down it cannot: it only adds evidence of its own
    product, which is dropped. Platform (`vulnerable: false`) criteria are always kept; they add the
    conditions evidence reports."""
    out: dict[tuple[str, str], list[tuple[int, Any]]] = {}
    for idx, conf in enumerate(configurations):
        if not isinstance(conf, dict):
            continue
        keys = _vulnerable_products(conf)
        for key, cut in sorted(_cut(conf, keys).items()):
            out.setdefault(key, []).append((idx, cut))
    return out


def _vulnerable_products(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {pair for m in _vulnerable_matches([node]) if (pair := cpe_vendor_product(m["criteria"]))}


def _vulnerable_matches(nodes: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """The vulnerable cpeMatch entries (with a criteria string) of configuration nodes, at any depth."""
    stack: list[Any] = list(nodes)
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        for match in _list(node.get("cpeMatch")):
            if isinstance(match, dict) and match.get("vulnerable") and isinstance(match.get("criteria"), str):
                yield match
        stack.extend(_list(node.get("nodes")) + _list(node.get("children")))


def _cut(node: dict[str, Any], keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """`node` cut down for each of `keys`, in one pass over its criteria (a record can name hundreds of
    products in one OR list: cutting once per product was quadratic)."""
    if str(node.get("operator") or "OR").upper() != "OR" or node.get("negate"):
        return dict.fromkeys(keys, node)  # the whole node decides
    cuts = {key: dict(node) for key in keys}
    if isinstance(node.get("cpeMatch"), list):
        kept: dict[tuple[str, str], list[Any]] = {key: [] for key in keys}
        for m in node["cpeMatch"]:
            crit = m.get("criteria") if isinstance(m, dict) and m.get("vulnerable") else None
            own = cpe_vendor_product(crit) if isinstance(crit, str) else None
            if crit is not None and isinstance(crit, str):
                if own in kept:
                    kept[own].append(m)
                continue  # another product's vulnerable criteria, or none at all: decides nothing here
            for entries in kept.values():
                entries.append(m)
        for key in keys:
            cuts[key]["cpeMatch"] = kept[key]
    for name in ("nodes", "children"):
        if isinstance(node.get(name), list):
            children = [_cut(c, keys) if isinstance(c, dict) else None for c in node[name]]
            for key in keys:
                cuts[key][name] = [
                    c if sub is None else sub[key]
                    for c, sub in zip(node[name], children, strict=True)
                    if sub is None or not _empty(sub[key])
                ]
    return cuts


def _empty(node: Any) -> bool:
    """An OR node with nothing left holds for no subject; under an OR parent it can go."""
    return (
        isinstance(node, dict)
        and str(node.get("operator") or "OR").upper() == "OR"
        and not node.get("negate")
        and not node.get("cpeMatch")
        and not node.get("nodes")
        and not node.get("children")
    )


def _list(value: Any) -> list[Any]:
    """Raw feed structures are kept unvalidated for the matcher: index them defensively."""
    return value if isinstance(value, list) else []


def _pack(value: Any) -> bytes:
    # Configurations repeat the same CPE prefixes many times: compressed they take a fifth of the space,
    # which is most of the store and of the I/O an import does.
    return zlib.compress(json.dumps(value, separators=_COMPACT).encode(), 1)


def _unpack(value: bytes) -> Any:
    return json.loads(zlib.decompress(value))


def _loads(value: str | None, default: Any) -> Any:
    return default if value is None else json.loads(value)


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


_LEAN_COLUMNS = (
    "id, source, published, modified, status, description, aliases, cvss3, cvss4, cwes, refs, affected, "
    "has_config, ssvc"
)


def _vulnerability(r: sqlite3.Row) -> Vulnerability:
    cvss3, cvss4 = _loads(r["cvss3"], None), _loads(r["cvss4"], None)
    full = "configurations" in r.keys()  # noqa: SIM118 -- `in` on a Row tests its values
    return Vulnerability(
        id=r["id"],
        source=r["source"],
        published=_when(r["published"]),
        modified=_when(r["modified"]),
        status=r["status"],
        description=r["description"],
        aliases=tuple(json.loads(r["aliases"])),
        cvss3=Cvss(**cvss3) if cvss3 else None,
        cvss4=Cvss(**cvss4) if cvss4 else None,
        cwes=tuple(json.loads(r["cwes"])),
        references=tuple(json.loads(r["refs"])),
        configurations=_unpack(r["configurations"]) if full else [],
        affected=_unpack(r["affected"]),
        ssvc=_loads(r["ssvc"], None),
        configurations_left_out=not full and bool(r["has_config"]),
    )


def _merge(records: list[Vulnerability]) -> Vulnerability:
    """One view of a CVE from its NVD and CVE 5 records (records arrive NVD first)."""
    if len(records) == 1:
        return records[0]
    nvd = next((v for v in records if v.source == "nvd"), records[0])
    cna = next((v for v in records if v.source == "cve5"), records[-1])
    return Vulnerability(
        id=nvd.id,
        source="+".join(v.source for v in records),
        published=nvd.published or cna.published,
        modified=max((v.modified for v in records if v.modified), default=None),
        status=nvd.status or cna.status,
        description=nvd.description or cna.description,
        aliases=tuple(dict.fromkeys(a for v in records for a in v.aliases)),
        cvss3=nvd.cvss3 or cna.cvss3,
        cvss4=nvd.cvss4 or cna.cvss4,
        cwes=tuple(dict.fromkeys(c for v in records for c in v.cwes)),
        references=tuple(dict.fromkeys(u for v in records for u in v.references)),
        configurations=nvd.configurations,
        affected=cna.affected or nvd.affected,
        ssvc=cna.ssvc or nvd.ssvc,
        configurations_left_out=nvd.configurations_left_out,
    )


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _kev_version(k: KevEntry) -> str:
    # KEV entries carry no modified time; these fields are what CISA revises.
    return f"{k.date_added.isoformat()}|{k.due_date.isoformat() if k.due_date else ''}|{k.name}"


def _kev(r: sqlite3.Row) -> KevEntry:
    return KevEntry(
        cve=r["cve"],
        vendor=r["vendor"],
        product=r["product"],
        name=r["name"],
        date_added=date.fromisoformat(r["date_added"]),
        due_date=date.fromisoformat(r["due_date"]) if r["due_date"] else None,
        ransomware=None if r["ransomware"] is None else bool(r["ransomware"]),
        short_description=r["short_description"],
        required_action=r["required_action"],
        cwes=tuple(json.loads(r["cwes"])),
    )


def _osv(r: sqlite3.Row) -> OsvAdvisory:
    return OsvAdvisory(
        id=r["id"],
        modified=_when(r["modified"]),
        published=_when(r["published"]),
        withdrawn=_when(r["withdrawn"]),
        aliases=tuple(json.loads(r["aliases"])),
        summary=r["summary"],
        affected=tuple(
            OsvAffected(**{**a, "versions": tuple(a["versions"])}) for a in json.loads(r["affected"])
        ),
        references=tuple(json.loads(r["refs"])),
    )


def _csaf(r: sqlite3.Row) -> CsafDocument:
    return CsafDocument(
        tracking_id=r["tracking_id"],
        title=r["title"],
        publisher=r["publisher"],
        publisher_namespace=r["namespace"],
        current_release_date=_when(r["current_release_date"]),
        document=json.loads(r["document"]),
        cve_ids=tuple(json.loads(r["cve_ids"])),
        product_names=tuple(json.loads(r["product_names"])),
    )
