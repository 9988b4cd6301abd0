"""Free-text version conditions as advisories write them, read into `VersionRange`s.

CISA ICSMA CSAF documents carry no CPE and no purl: affected versions are strings such as `< 8.2.2`,
`<= 12.2.x.x`, `>= 4.01 | <= 4.34`, `vers:all/*`, `2.3.6 and  below`, `prior to 4.1`,
`versions 1.0 through 2.3`, `3.36 | 3.40`, `2.1, 2.2 and 2.4`, `9.x model 35700BAX3`,
`<= 1.54 (integrated into GE MobileLink)`. The `product_version` branch is also used for model
numbers (`MMT-1710`, `7100 | 7900 | 100 | Protiva Carestation View`) and the range field for dates of
manufacture (`distributed  < april 1, 2018`).

`parse_range_text` returns a `RangeSpec` that says which of these it found:
* `all`: every version (`vers:all/*`, `*`, `all versions`);
* `range` / `list` / `exact`: a `VersionRange` to test a device's version against;
* `model`: no version condition, the text names model variants (kept in `qualifier`);
* `condition`: a condition a firmware version cannot decide (a shipping or manufacturing date);
* `unknown`: nothing could be read; the caller must not pretend it knows.
Text around a version that is not part of it (`model 35700BAX3`, `(end-of-life 2011)`) is kept in
`qualifier` so evidence shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medsentry.vulns.match.versions import (
    ALL_VERSIONS,
    Interval,
    InvalidVersion,
    Version,
    VersionRange,
    parse_vers,
)

__all__ = ["RangeSpec", "parse_range_text"]


@dataclass(frozen=True, slots=True)
class RangeSpec:
    kind: str  # all | range | list | exact | model | condition | unknown
    range: VersionRange | None  # None for model/condition/unknown
    text: str
    qualifier: str = ""

    def contains(self, version: str | None) -> bool | None:
        """True/False when decidable; None when the spec or the version leaves it open."""
        if self.kind == "all":
            return True
        if self.range is None or not version:
            return None
        try:
            return self.range.contains(Version(version))
        except InvalidVersion:
            return None

    @property
    def versioned(self) -> bool:
        return self.range is not None and self.kind != "all"


_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
_DATE_COND = re.compile(rf"\b{_MONTHS}\b|\bshipped\b|\bdistributed\b|\bmanufactured\b", re.IGNORECASE)
_ALL = re.compile(r"^(?:vers:all/\*|\*|all|all versions?|any|any versions?)$", re.IGNORECASE)
_STAR_PREFIX = re.compile(r"^\*\s+(.*)$")
# A version token: optional short letter prefix, digits with separators/letters, optional x wildcards;
# or a lone letter/letter+digits build id (`K`, `N`, `BT03`, `L81`, `A.01`).
_VTOKEN = r"(?:[a-z]{1,4}[.\-]?)?\d[\w.\-]*|[a-z]{1,2}(?:\.\d[\w.]*)?"
_PIECE = re.compile(rf"^(>=|<=|=>|=<|>|<|=)?\s*(?:v(?=\d))?({_VTOKEN})(?:\s+(.*))?$", re.IGNORECASE)
# Words after a version that belong to it ("< 1.8.4 Service Pack 01", "<= 3.0 D15", "4.20 SR1").
_VSUFFIX = re.compile(r"^(?:service\s*pack|sp|sr|build|mr\s+build|update|patch|p|d|r)\s*\d+$", re.IGNORECASE)
_DOTTED = re.compile(r"(?<![\w.])(?:[a-z]{1,2}\.)?\d+(?:\.\w+)+(?![\w.])", re.IGNORECASE)
_REV_RANGE = re.compile(r"^rev(?:ision)?\.?\s+([a-z])\s*-\s*([a-z])$", re.IGNORECASE)
_SPACED_BUILD = re.compile(r"^([a-z]{1,3})\s+(\d+)$", re.IGNORECASE)
_OPS_NORM = {"=>": ">=", "=<": "<="}
_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(?:all\s+)?(?:versions?|releases?)\s+", re.IGNORECASE), ""),
    (re.compile(r"^(?:prior\s+to|before|earlier\s+than|older\s+than|below)\s+", re.IGNORECASE), "< "),
    (re.compile(r"^(?:up\s+to(?:\s+and\s+including)?|through|until)\s+", re.IGNORECASE), "<= "),
    (re.compile(r"^(?:from|since|starting\s+with)\s+", re.IGNORECASE), ">= "),
]
_SUFFIX_PHRASES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^(.+?)\s+(?:and|or)\s+(?:below|earlier|prior|older|lower|before)$", re.IGNORECASE),
     "<= {}"),
    (re.compile(r"^(.+?)\s+(?:and|or)\s+(?:above|later|newer|higher|after)$", re.IGNORECASE), ">= {}"),
    (re.compile(r"^(.+?)\s*\+$"), ">= {}"),
]
_THROUGH = re.compile(r"^(\S+)\s+(?:through|thru|to|until|-)\s+(\S+)$", re.IGNORECASE)
_BETWEEN_OPS = re.compile(r"^(\S+)\s*(<=|<)\s*(\S+)$")
_LIST_SPLIT = re.compile(r"\s*(?:\||,|;|\band\b|\bor\b)\s*", re.IGNORECASE)
# Without a comparison operator these are model or part numbers, not versions.
_MODELISH = re.compile(r"^[a-z]{3,}[-\s]?\d|^[a-z]+-[a-z]*\d|^\d{3,}[a-z]?\b|^\d+(?:st|nd|rd|th)\b",
                       re.IGNORECASE)


def _wild(token: str) -> tuple[str, bool]:
    """`12.2.x.x` -> ("12.2", True); "9.X" -> ("9", True)."""
    t = re.sub(r"(?:[.\-]x)+$", "", token, flags=re.IGNORECASE)
    return t, t != token


def _next_prefix(prefix: str) -> Version | None:
    """The smallest version above every version starting with `prefix` ("12.2" -> "12.3")."""
    m = re.match(r"^(.*?)(\d+)$", prefix)
    if not m:
        return None
    return Version(f"{m.group(1)}{int(m.group(2)) + 1}")


def _piece(op: str | None, token: str) -> list[tuple[str, Version]] | None:
    base, wild = _wild(token)
    if not base:
        return None
    try:
        v = Version(base)
    except InvalidVersion:
        return None
    if not wild:
        return [(op or "=", v)]
    nxt = _next_prefix(base)
    if op in (None, "="):
        return [(">=", v), ("<", nxt)] if nxt else None
    if op in ("<=", ">"):
        return [("<" if op == "<=" else ">=", nxt)] if nxt else None
    return [(op, v)]


def _intervals(cons: list[tuple[str, Version]]) -> tuple[Interval, ...]:
    """Pair lower and upper bounds in the order written (`>= a | <= b | >= c | <= d`)."""
    out: list[Interval] = []
    lo: tuple[Version, bool] | None = None
    for op, v in cons:
        if op == "=":
            out.append(Interval(v, True, v, True))
        elif op in (">", ">="):
            if lo is not None:
                out.append(Interval(lo[0], lo[1], None, False))
            lo = (v, op == ">=")
        else:
            out.append(Interval(lo[0] if lo else None, lo[1] if lo else True, v, op == "<="))
            lo = None
    if lo is not None:
        out.append(Interval(lo[0], lo[1], None, False))
    return tuple(out)


def _strip_parens(text: str) -> tuple[str, str]:
    quals = re.findall(r"\(([^()]*)\)", text)
    core = re.sub(r"\([^()]*\)", " ", text)
    return " ".join(core.split()), "; ".join(q.strip() for q in quals if q.strip())


def parse_range_text(text: str | None) -> RangeSpec:
    """Read one advisory version text. Never raises: unreadable text gives kind `unknown`."""
    raw = text or ""
    t = " ".join(raw.split())
    if not t:
        return RangeSpec("all", ALL_VERSIONS, raw)
    if _ALL.match(t):
        return RangeSpec("all", ALL_VERSIONS, raw)
    m = _STAR_PREFIX.match(t)
    if m:
        return RangeSpec("all", ALL_VERSIONS, raw, m.group(1))
    if t.lower().startswith("vers:"):
        try:
            _scheme, rng = parse_vers(t)
        except InvalidVersion:
            return RangeSpec("unknown", None, raw)
        return RangeSpec("all" if rng.is_all else "range", rng, raw)
    core, qual = _strip_parens(t)
    if _DATE_COND.search(core):
        return RangeSpec("condition", None, raw, t)
    spec = _parse_core(core, raw, qual)
    if spec is None and qual and not core:
        spec = _parse_core(qual, raw, "")
    return spec or RangeSpec("unknown", None, raw)


def _expand(pieces: list[str]) -> list[str]:
    """`A10 < A11` (a lower and an upper bound written as one comparison) -> `>= A10`, `< A11`."""
    out: list[str] = []
    for p in pieces:
        p = p.strip()
        m = _REV_RANGE.match(p)
        if m:
            out += [f">= {m.group(1)}", f"<= {m.group(2)}"]
            continue
        m = _SPACED_BUILD.match(p)
        if m:
            p = m.group(1) + m.group(2)
        words = p.split()
        if len(words) > 1 and all(_DOTTED.fullmatch(w) for w in words):
            out += words
            continue
        m = _BETWEEN_OPS.match(p)
        if m and _PIECE.match(m.group(1)) and not m.group(1).startswith(("<", ">", "=")):
            out += [f">= {m.group(1)}", f"{m.group(2)} {m.group(3)}"]
        else:
            out.append(p)
    return out


def _parse_core(core: str, raw: str, qual: str) -> RangeSpec | None:
    t = core.strip(" ,;")
    if not t:
        return None
    for pat, rep in _PHRASES:
        t = pat.sub(rep, t)
    for pat, fmt in _SUFFIX_PHRASES:
        m = pat.match(t)
        if m:
            t = fmt.format(m.group(1))
            break
    m = _THROUGH.match(t)
    if m and _PIECE.match(m.group(1)) and _PIECE.match(m.group(2)):
        t = f">= {m.group(1)} | <= {m.group(2)}"
    pieces = [p for p in _LIST_SPLIT.split(t) if p.strip()]
    cons: list[tuple[str, Version]] = []
    extra: list[str] = []
    models: list[str] = []
    has_op = False
    for p in _expand(pieces):
        pm = _PIECE.match(p)
        if pm is None or (pm.group(1) is None and _MODELISH.match(p)):
            dotted = _DOTTED.search(p)
            if dotted is None:
                models.append(p)
                continue
            # "LPI 3.5.12.P30", "Firmware A.01.09": a dotted version inside other words
            cons.append(("=", Version(dotted.group(0))))
            extra.append(p)
            continue
        op = _OPS_NORM.get(pm.group(1) or "", pm.group(1))
        has_op = has_op or op is not None
        token, rest = pm.group(2), pm.group(3) or ""
        if rest and "." not in token and _DOTTED.fullmatch(rest.strip()):
            token, rest = rest.strip(), token  # "<= S4 A.07.107": model S4, version A.07.107
        elif rest and _VSUFFIX.match(rest.strip()) and op is not None:
            token, rest = f"{token} {rest.strip()}", ""
        got = _piece(op, token)
        if got is None:
            models.append(p)
            continue
        cons.extend(got)
        if rest:
            extra.append(rest)
    qualifier = "; ".join(x for x in (*extra, *models, qual) if x)
    if not cons:
        return RangeSpec("model", None, raw, qualifier) if models else None
    if models and not has_op and len(models) >= len(cons):
        # "7100 | 7900 | 100 | Protiva Carestation View": numbers among model names are models too
        return RangeSpec("model", None, raw, qualifier)
    intervals = _intervals(cons)
    if all(i.lo is not None and i.lo == i.hi for i in intervals):
        kind = "exact" if len(intervals) == 1 else "list"
    else:
        kind = "range"
    return RangeSpec(kind, VersionRange(intervals), raw, qualifier)
