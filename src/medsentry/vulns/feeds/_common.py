"""What every feed parser shares: the error type, the problem counter, file reading and value coercion."""

from __future__ import annotations

import functools
import gzip
import json
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError

from medsentry.vulns.records import Cvss, utc

MAX_KEPT_ERRORS = 50  # a broken mirror can yield millions: keep the first ones, count the rest

CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")


class FeedError(Exception):
    """Bad feed input; `location` is a JSON pointer, "line N", "line N col M" or an archive member."""

    def __init__(self, path: str | Path, location: str, message: str) -> None:
        self.path = str(path)
        self.location = location
        self.message = message
        super().__init__(f"{self.path}: {location or '(file)'}: {message}")


@dataclass(slots=True)
class Problems:
    """Bad records skipped during a parse or import: counted, the first `MAX_KEPT_ERRORS` kept."""

    count: int = 0
    errors: list[FeedError] = field(default_factory=list)

    def add(self, error: FeedError) -> None:
        self.count += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)


def report(problems: Problems | None, error: FeedError) -> None:
    """Strict mode (no `problems`) raises the first error; otherwise it is counted and parsing goes on."""
    if problems is None:
        raise error
    problems.add(error)


def read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        return gzip.decompress(data) if path.name.endswith(".gz") else data
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FeedError(path, "", f"cannot read: {exc}") from exc


def decode_json(data: bytes | str, path: str | Path, member: str = "") -> Any:
    prefix = f"{member}: " if member else ""
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise FeedError(
            path, f"{prefix}line {exc.lineno} col {exc.colno}", f"invalid JSON: {exc.msg}"
        ) from exc
    except (UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise FeedError(path, member, f"invalid JSON: {exc}") from exc


def load_json(path: Path) -> Any:
    return decode_json(read_bytes(path), path)


MAX_MEMBER = 256 << 20  # an NVD API page is ~20 MB; a declared size beyond this is no feed (or a zip bomb)


def zip_documents(path: Path, problems: Problems | None) -> Iterator[tuple[str, Any]]:
    """("archive!member", parsed JSON) for each .json member of a zip archive (OSV all.zip, mirrors)."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        report(problems, FeedError(path, "", f"cannot read zip archive: {exc}"))
        return
    with archive:
        for member in archive.infolist():
            if member.is_dir() or not member.filename.endswith(".json"):
                continue
            try:
                if member.file_size > MAX_MEMBER:
                    raise FeedError(path, member.filename, f"member of {member.file_size} bytes is too large")
                try:
                    data = archive.read(member)
                except (OSError, zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                    raise FeedError(path, member.filename, f"cannot read member: {exc}") from exc
                document = decode_json(data, path, member.filename)
            except FeedError as exc:
                report(problems, exc)
                continue
            yield f"{path}!{member.filename}", document


def pointer(*parts: str | int) -> str:
    """An RFC 6901 JSON pointer to the offending value."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def files_under(path: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """`path` itself, or the matching files below it in a stable order (hidden entries skipped)."""
    if path.is_dir():
        for entry in sorted(path.rglob("*")):
            relative = entry.relative_to(path).parts
            if (
                entry.is_file()
                and entry.name.endswith(suffixes)
                and not any(p.startswith(".") for p in relative)
            ):
                yield entry
    else:
        yield path


T = TypeVar("T")


def parse_json_files(
    path: str | Path,
    suffixes: tuple[str, ...],
    problems: Problems | None,
    from_document: Callable[[Any, Path, Problems | None], Iterator[T]],
) -> Iterator[T]:
    """A feed's records from each JSON file at `path`; an unreadable file is reported and skipped."""
    for file in files_under(Path(path), suffixes):
        try:
            document = load_json(file)
        except FeedError as exc:
            report(problems, exc)
            continue
        yield from from_document(document, file, problems)


class BadValue(ValueError):
    """A field of the wrong type or form; parsers turn it into a FeedError with the field's pointer."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(message)


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadValue(where, f"expected an object, got {type(value).__name__}")
    return value


def array(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadValue(where, f"expected an array, got {type(value).__name__}")
    return value


def text(value: Any, where: str, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadValue(where, f"expected a non-empty string, got {value!r:.60}")
    return value


def cve_id(value: Any, where: str) -> str:
    ident = text(value, where, required=True).strip().upper()
    if not CVE_ID.match(ident):
        raise BadValue(where, f"not a CVE id: {value!r:.60}")
    return ident


def timestamp(value: Any, where: str) -> datetime | None:
    """ISO 8601 with or without zone (NVD omits it: UTC); YAML loaders may hand over datetimes already."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, date):
        return utc(datetime(value.year, value.month, value.day))
    if isinstance(value, str):
        try:
            return utc(datetime.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise BadValue(where, f"not an ISO 8601 timestamp: {value!r:.60}")


def day(value: Any, where: str) -> date | None:
    stamp = timestamp(value, where)
    return None if stamp is None else stamp.date()


def first_english(entries: Any, where: str) -> str:
    """The English `value` of a [{lang, value}] list, else the first one."""
    chosen = ""
    for i, entry in enumerate(array(entries, where)):
        entry = obj(entry, f"{where}/{i}")
        value = text(entry.get("value"), f"{where}/{i}/value")
        if str(entry.get("lang", "")).lower().startswith("en"):
            return value
        chosen = chosen or value
    return chosen


def cvss_from_vector(vector: Any, source: str, where: str) -> Cvss:
    """Score a CVSS 3.x/4.0 vector with the `cvss` library: feeds' own scores are not trusted blindly."""
    vector = text(vector, where, required=True).strip()
    try:
        version, clean, score, severity = _score(vector)
    except ValueError as exc:
        raise BadValue(where, str(exc)) from exc
    return Cvss(version, clean, score, severity, source)


_CVSS4_BASE = frozenset({"AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA"})


@functools.lru_cache(maxsize=8192)
def _score(vector: str) -> tuple[str, str, float, str]:
    """Cached: a feed has a few thousand distinct vectors over hundreds of thousands of CVEs."""
    try:
        if vector.startswith("CVSS:4.0/"):
            full = CVSS4(vector)
            # v4 folds threat/environmental metrics into its one score; feeds publish the base score (CVSS-B)
            base = "/".join(p for p in full.clean_vector().split("/")[1:] if p.split(":")[0] in _CVSS4_BASE)
            scored: CVSS3 | CVSS4 = CVSS4(f"CVSS:4.0/{base}")
            version = "4.0"
            return version, full.clean_vector(), float(scored.scores()[0]), scored.severities()[0].upper()
        elif vector.startswith(("CVSS:3.0/", "CVSS:3.1/")):
            scored = CVSS3(vector)
            version = vector[5:8]
        else:
            raise ValueError(f"not a CVSS 3.x/4.0 vector: {vector!r:.80}")
        return version, scored.clean_vector(), float(scored.scores()[0]), scored.severities()[0].upper()
    except CVSSError as exc:
        raise ValueError(f"invalid CVSS vector {vector!r:.80}: {exc}") from exc


_SSVC_NAMES = {
    "exploitation": "Exploitation",
    "automatable": "Automatable",
    "technicalimpact": "Technical Impact",
}


def ssvc_options(options: Any, where: str) -> dict[str, str]:
    """SSVC `options` [{point: value}] as one dict (NVD writes `technicalImpact`, CISA `Technical Impact`)."""
    decided: dict[str, str] = {}
    for i, option in enumerate(array(options, where)):
        for name, value in obj(option, f"{where}/{i}").items():
            key = _SSVC_NAMES.get(name.replace(" ", "").lower(), name)
            decided[key] = text(value, f"{where}/{i}/{name}")
    return decided


def unique(values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))
