"""Version ordering for NVD and vendor version strings, and version ranges.

NVD `versionStartIncluding`/`versionEndExcluding` bounds and vendor advisories use no single scheme:
OpenSSL letter suffixes (`1.1.1t` comes after `1.1.1`), OpenSSH patch levels (`9.8p1`, `9.8P19`),
service packs (`7.0 SP3`), dates (`2021-03-04`, `20210304`), firmware letters (`B.06.18`, `012U000040`),
pre-releases (`2.0-rc1`, `2.0beta` before `2.0`) and build metadata (`+git20200101`, ignored as in
semver). `Version` gives all of them one total order:

* the string is lower-cased, a leading `v`/`version` dropped, `+build` metadata cut off, ISO dates
  folded to `YYYYMMDD`, "service pack" spelled `sp`;
* it is cut into runs of digits and runs of letters (anything else separates);
* trailing zero numbers of each run of numbers are dropped, so `1.0` == `1.0.0` and `1.0-rc1` == `1-rc1`;
* elements order as: pre-release word < end of version < other word < number. Pre-release words are
  dev/snapshot/alpha/beta/milestone/pre/preview/rc (and a/b/c/m when a number follows, as in `3.8.0b1`);
  any other word (`t` in `1.1.1t`, `p`, `sp`, `build`, `r`) marks a later release than the bare number.

Package-URL ecosystems have their own rules, which `univers` implements; `purl_range` uses it for those
schemes. The `generic` scheme is evaluated with `Version` instead: univers parses generic versions as
semver, which puts `1.1.1t` at or below `1.1.1` and rejects `9.8p1`-style strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache, total_ordering

__all__ = [
    "ALL_VERSIONS",
    "Interval",
    "InvalidVersion",
    "Version",
    "VersionRange",
    "parse_vers",
    "purl_range_contains",
    "version_in",
]


class InvalidVersion(ValueError):
    """The string holds no digit or letter, so it names no version."""


_PRE_ALWAYS = {"dev": 0, "snapshot": 0, "alpha": 1, "beta": 2, "milestone": 3, "pre": 4, "preview": 4,
               "rc": 5, "cr": 5}
_PRE_IF_NUMBERED = {"a": 1, "b": 2, "m": 3, "c": 5}
# Words that mean "the release itself".
_NEUTRAL = {"final", "ga", "release", "rel"}
_TOKEN = re.compile(r"[0-9]+|[^\W\d_]+")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_LEADING_V = re.compile(r"^(?:version\s*|v(?=\d))", re.IGNORECASE)
_SERVICE_PACK = re.compile(r"service[\s_-]*pack", re.IGNORECASE)

_PRE, _END, _WORD, _NUM = 0, 1, 2, 3
_END_KEY = (_END, 0, "")

Element = tuple[int, int, str]


def _tokens(text: str) -> list[Element]:
    raw = _TOKEN.findall(text)
    out: list[Element] = []
    for i, tok in enumerate(raw):
        if tok.isascii() and tok.isdigit():
            digits = tok.lstrip("0")
            # Numbers compare by length then digits: no int() of unbounded strings.
            out.append((_NUM, len(digits), digits))
            continue
        word = tok
        nxt_is_num = i + 1 < len(raw) and raw[i + 1].isdigit()
        if word in _NEUTRAL:
            continue
        if word in _PRE_ALWAYS:
            out.append((_PRE, _PRE_ALWAYS[word], word))
        elif word in _PRE_IF_NUMBERED and nxt_is_num and i > 0:
            out.append((_PRE, _PRE_IF_NUMBERED[word], word))
        else:
            out.append((_WORD, 0, word))
    return _strip_trailing_zeros(out)


def _strip_trailing_zeros(elems: list[Element]) -> list[Element]:
    out: list[Element] = []
    run: list[Element] = []
    for e in [*elems, _END_KEY]:
        if e[0] == _NUM:
            run.append(e)
            continue
        while run and run[-1][1] == 0:
            run.pop()
        out.extend(run)
        run = []
        if e is not _END_KEY:
            out.append(e)
    return out


@lru_cache(maxsize=65536)
def _key(text: str) -> tuple[Element, ...]:
    s = text.strip()
    s = _LEADING_V.sub("", s)
    s = s.split("+", 1)[0] if "+" in s and not s.startswith("+") else s
    m = _ISO_DATE.match(s)
    if m:
        s = "".join(m.groups())
    s = _SERVICE_PACK.sub("sp", s).lower()
    if not _TOKEN.search(s):
        raise InvalidVersion(f"not a version: {text!r}")
    return (*_tokens(s), _END_KEY)


@total_ordering
class Version:
    """A version string with a total order; `Version("1.1.1t") > Version("1.1.1")`."""

    __slots__ = ("key", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.key: tuple[Element, ...] = _key(text)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.key == other.key

    def __lt__(self, other: Version) -> bool:
        return self.key < other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Version({self.text!r})"

    @property
    def is_prerelease(self) -> bool:
        return any(e[0] == _PRE for e in self.key)


def version_in(
    version: str | Version,
    *,
    start_including: str | None = None,
    start_excluding: str | None = None,
    end_including: str | None = None,
    end_excluding: str | None = None,
) -> bool:
    """NVD-style bound check; bounds left None are open. Raises InvalidVersion for an unusable version."""
    v = version if isinstance(version, Version) else Version(version)
    if start_including is not None and v < Version(start_including):
        return False
    if start_excluding is not None and v <= Version(start_excluding):
        return False
    if end_including is not None and v > Version(end_including):
        return False
    return not (end_excluding is not None and v >= Version(end_excluding))


@dataclass(frozen=True, slots=True)
class Interval:
    """One contiguous range; a None bound is open. `lo == hi` with both inclusive is one version."""

    lo: Version | None = None
    lo_incl: bool = True
    hi: Version | None = None
    hi_incl: bool = False

    def contains(self, v: Version) -> bool:
        if self.lo is not None and (v < self.lo or (v == self.lo and not self.lo_incl)):
            return False
        return not (self.hi is not None and (v > self.hi or (v == self.hi and not self.hi_incl)))

    def __str__(self) -> str:
        if self.lo is not None and self.lo == self.hi:
            return f"={self.lo}"
        parts = []
        if self.lo is not None:
            parts.append(f"{'>=' if self.lo_incl else '>'}{self.lo}")
        if self.hi is not None:
            parts.append(f"{'<=' if self.hi_incl else '<'}{self.hi}")
        return "|".join(parts) or "*"


@dataclass(frozen=True, slots=True)
class VersionRange:
    """A union of intervals; `ALL_VERSIONS` has one unbounded interval."""

    intervals: tuple[Interval, ...]

    def contains(self, version: str | Version) -> bool:
        v = version if isinstance(version, Version) else Version(version)
        return any(i.contains(v) for i in self.intervals)

    @property
    def is_all(self) -> bool:
        return any(i.lo is None and i.hi is None for i in self.intervals)

    def __str__(self) -> str:
        return " or ".join(str(i) for i in self.intervals) or "(none)"


ALL_VERSIONS = VersionRange((Interval(),))

_CMP = re.compile(r"^\s*(>=|<=|!=|>|<|=)?\s*(.+?)\s*$")


def parse_vers(vers: str) -> tuple[str, VersionRange]:
    """Parse a `vers:` string (https://github.com/package-url/purl-spec VERSION-RANGE-SPEC) with this
    module's ordering. Returns (scheme, range). `!=` constraints are honoured by splitting intervals.
    Raises InvalidVersion for a string that is not a vers."""
    if not vers.startswith("vers:") or "/" not in vers:
        raise InvalidVersion(f"not a vers string: {vers!r}")
    scheme, _, body = vers[5:].partition("/")
    body = body.strip()
    if body == "*":
        return scheme, ALL_VERSIONS
    cons: list[tuple[str, Version]] = []
    for part in body.split("|"):
        m = _CMP.match(part)
        if not m or not m.group(2):
            raise InvalidVersion(f"bad constraint {part!r} in {vers!r}")
        cons.append((m.group(1) or "=", Version(m.group(2))))
    cons.sort(key=lambda c: c[1])
    intervals: list[Interval] = []
    excluded: list[Version] = []
    lo: tuple[Version, bool] | None = None
    for op, v in cons:
        if op == "=":
            intervals.append(Interval(v, True, v, True))
        elif op == "!=":
            excluded.append(v)
        elif op in (">", ">="):
            lo = (v, op == ">=")
        else:
            intervals.append(Interval(lo[0] if lo else None, lo[1] if lo else True, v, op == "<="))
            lo = None
    if lo is not None:
        intervals.append(Interval(lo[0], lo[1], None, False))
    if excluded and not intervals:
        intervals.append(Interval())
    for ex in excluded:
        intervals = [piece for i in intervals for piece in _cut(i, ex)]
    return scheme, VersionRange(tuple(intervals))


def _cut(i: Interval, ex: Version) -> list[Interval]:
    if not i.contains(ex):
        return [i]
    return [p for p in (Interval(i.lo, i.lo_incl, ex, False), Interval(ex, False, i.hi, i.hi_incl))
            if not (p.lo is not None and p.hi is not None and p.lo == p.hi)]


# Schemes whose version rules univers implements faithfully; everything else uses `Version`.
_UNIVERS_SCHEMES = frozenset({
    "alpm", "apache", "apk", "cargo", "composer", "conan", "deb", "ebuild", "gem", "github", "golang",
    "hex", "maven", "mozilla", "nginx", "npm", "nuget", "openssl", "pypi", "rpm",
})
# purl types whose vers scheme has another name.
_PURL_TO_VERS = {"debian": "deb", "go": "golang", "gems": "gem", "rubygems": "gem", "crates": "cargo"}


@lru_cache(maxsize=4096)
def _univers_range(vers: str):  # type: ignore[no-untyped-def]
    from univers.version_range import VersionRange as UVersionRange

    return UVersionRange.from_string(vers)


def purl_range_contains(vers: str, version: str) -> bool:
    """Is `version` inside the `vers:` range, using the ecosystem's own ordering where univers knows it?

    Raises InvalidVersion when the range or the version cannot be parsed under that scheme."""
    scheme = vers[5:].partition("/")[0] if vers.startswith("vers:") else ""
    scheme = _PURL_TO_VERS.get(scheme, scheme)
    if scheme in _UNIVERS_SCHEMES:
        try:
            rng = _univers_range(vers)
            return rng.version_class(version) in rng
        except InvalidVersion:
            raise
        except Exception as exc:  # univers raises many types (ValueError, TypeError, its own)
            raise InvalidVersion(f"{vers!r} / {version!r}: {exc}") from exc
    return parse_vers(vers)[1].contains(version)
