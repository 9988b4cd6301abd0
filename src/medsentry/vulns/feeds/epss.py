"""FIRST EPSS daily scores, CSV or CSV.gz (https://www.first.org/epss/data_stats).

Current files start with a comment line `#model_version:v2023.03.01,score_date:2025-02-20T00:00:00+0000`,
then the header `cve,epss,percentile`; older ones have no comment line. Parsed as a stream: the full file
has ~300,000 rows.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

from medsentry.vulns.feeds._common import BadValue, FeedError, Problems, cve_id, day, files_under, report
from medsentry.vulns.records import EpssScore

FEED = "epss"
URL = "https://epss.empiricalsecurity.com/epss_scores-current.csv.gz"
SUFFIXES = (".csv", ".csv.gz")


def parse(path: str | Path, problems: Problems | None = None) -> Iterator[EpssScore]:
    for file in files_under(Path(path), SUFFIXES):
        yield from _parse_file(file, problems)


def looks_like(head: bytes) -> bool:
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip().lower()
    return first.startswith(b"#model_version") or first.replace(b" ", b"").startswith(b"cve,epss")


def _parse_file(path: Path, problems: Problems | None) -> Iterator[EpssScore]:
    raw = gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    try:
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as stream:
            yield from _rows(stream, path, problems)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
        report(problems, FeedError(path, "", f"cannot read EPSS CSV: {exc}"))


def _rows(stream: io.TextIOWrapper, path: Path, problems: Problems | None) -> Iterator[EpssScore]:
    model, scored = "", None
    columns: dict[str, int] | None = None
    for number, row in enumerate(csv.reader(stream), start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if row[0].startswith("#"):
            model, scored = _comment(",".join(row), path, number, problems)
            continue
        if columns is None:
            columns = {name.strip().lower(): i for i, name in enumerate(row)}
            if not {"cve", "epss"} <= columns.keys():
                report(problems, FeedError(path, f"line {number}", "header must name columns cve and epss"))
                return
            continue
        try:
            yield _score(row, columns, number, model, scored)
        except BadValue as exc:
            report(problems, FeedError(path, f"line {number}", str(exc)))


def _comment(line: str, path: Path, number: int, problems: Problems | None) -> tuple[str, date | None]:
    fields = dict(part.split(":", 1) for part in line.lstrip("#").split(",") if ":" in part)
    try:
        return fields.get("model_version", "").strip(), day(fields.get("score_date"), "score_date")
    except BadValue as exc:
        report(problems, FeedError(path, f"line {number}", str(exc)))
        return fields.get("model_version", "").strip(), None


def _score(
    row: list[str], columns: dict[str, int], number: int, model: str, scored: date | None
) -> EpssScore:
    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    values = []
    for name in ("epss", "percentile"):
        raw = cell(name)
        try:
            value = float(raw) if raw else 0.0
        except ValueError:
            raise BadValue(name, f"{name} is not a number: {raw!r:.40}") from None
        if not 0.0 <= value <= 1.0:
            raise BadValue(name, f"{name} outside 0..1: {raw!r:.40}")
        values.append(value)
    return EpssScore(
        cve_id(cell("cve"), "cve"), values[0], values[1], scored or day(cell("date") or None, "date"), model
    )
