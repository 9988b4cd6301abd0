"""CPE 2.3 names and NVD applicability statements (configurations), with evidence for every match.

Binding. A `Cpe` holds the eleven attributes of a CPE 2.3 formatted string (FS) in their FS spelling
(`*` is ANY, `-` is NA, other characters stay backslash-quoted as in the FS). Splitting an FS is done
here because it runs for every criteria of every CVE and the `cpe` library takes ~0.4 ms per name;
that library (a maintained implementation of NISTIR 7695) is used for the 2.2 URI binding both ways
and, in the tests, as the reference the splitter must agree with on every CPE of the shared NVD records.

Name matching (NISTIR 7696, adapted to "does this vulnerable-software criteria cover this subject"):
* criteria ANY matches everything; criteria NA matches subject NA. A hardware (`h`) criteria with
  version NA matches any version of that hardware: NVD writes platform CPEs (`cpe:2.3:h:x:pump:-`)
  for a device model, not for "a device that has no version". A `*_firmware` OS criteria with version
  NA (`cpe:2.3:o:philips:intellivue_mp2_firmware:-`, CVE-2018-10597) is how NVD records "no firmware
  version known": it matches any firmware version, with `version` in `assumed`;
* a specific criteria value against a subject ANY matches but is recorded in `assumed` (the subject
  did not say, e.g. the update level of an SBOM component) -- except the version of a vulnerable
  criteria: a subject with unknown version is not reported as vulnerable to a version-bounded
  criteria (that would flag every release of a product), it is only a platform that "is present";
* version equality uses `versions.Version`, so `1.0` == `1.0.0`; ranges use the four NVD bounds;
  a criteria version with an update (`cpe:...:1.0:sp1`) also matches a subject written `1.0 SP1`.

Configurations (NVD CVE API 2.0): `configurations[]` are alternatives; within one, `operator`
(default OR) combines `nodes[]`; each node combines its `cpeMatch[]` with its own `operator`, and
`negate` inverts a node. `vulnerable: false` criteria (the "running on"/platform CPEs) must be present
among the subject's CPEs but are never findings themselves. NVD JSON 1.1 (`nodes[].children[]`,
`cpe_match[]`, `cpe23Uri`) is read into the same tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from medsentry.vulns.match.versions import InvalidVersion, Version

__all__ = [
    "ANY",
    "NA",
    "Cpe",
    "CpeError",
    "MatchEvidence",
    "configurations_of",
    "criteria_matches",
    "evaluate",
    "evaluate_cve",
]

ANY = "*"
NA = "-"
_FIELDS = ("part", "vendor", "product", "version", "update", "edition", "language", "sw_edition",
           "target_sw", "target_hw", "other")
_WILDCARD = re.compile(r"(?<!\\)[*?]")


class CpeError(ValueError):
    """Not a CPE 2.3 formatted string or 2.2 URI."""


def _split_fs(s: str) -> list[str]:
    if "\\" not in s:  # nearly every NVD criteria: nothing quoted, a plain split is the same
        return s.split(":")
    out: list[str] = []
    cur: list[str] = []
    esc = False
    for ch in s:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            cur.append(ch)
            esc = True
        elif ch == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


@dataclass(frozen=True, slots=True)
class Cpe:
    part: str
    vendor: str
    product: str
    version: str = ANY
    update: str = ANY
    edition: str = ANY
    language: str = ANY
    sw_edition: str = ANY
    target_sw: str = ANY
    target_hw: str = ANY
    other: str = ANY

    @classmethod
    def parse(cls, text: str) -> Cpe:
        """A CPE 2.3 FS (`cpe:2.3:a:...`) or a 2.2 URI (`cpe:/a:...`). Raises CpeError."""
        return _parse(text.strip())

    def fs(self) -> str:
        return "cpe:2.3:" + ":".join(getattr(self, f) for f in _FIELDS)

    def uri(self) -> str:
        """The CPE 2.2 URI binding (lossy for the 2.3-only attributes, as the standard says)."""
        from cpe import CPE

        return CPE(self.fs()).as_uri_2_3()

    def __str__(self) -> str:
        return self.fs()

    @property
    def key(self) -> tuple[str, str, str]:
        return self.part, self.vendor, self.product


@lru_cache(maxsize=262144)
def _parse(text: str) -> Cpe:
    if text.startswith("cpe:/"):
        try:
            from cpe import CPE

            text = CPE(text).as_fs()
        except Exception as exc:  # the library raises NotImplementedError/ValueError/TypeError
            raise CpeError(f"bad CPE 2.2 URI {text!r}: {exc}") from exc
    if not text.startswith("cpe:2.3:"):
        raise CpeError(f"not a CPE 2.3 name: {text!r}")
    parts = _split_fs(text[8:])
    if len(parts) > 11 or len(parts) < 3:
        raise CpeError(f"CPE 2.3 name needs 11 attributes, got {len(parts)}: {text!r}")
    parts += [ANY] * (11 - len(parts))
    if parts[0] not in ("a", "o", "h", ANY):
        raise CpeError(f"CPE part must be a, o or h: {text!r}")
    if "" in parts:
        raise CpeError(f"empty CPE attribute in {text!r}")
    return Cpe(*[p.lower() for p in parts])


_QUOTED = re.compile(r"\\(.)")


def _unquote(v: str) -> str:
    return _QUOTED.sub(r"\1", v) if "\\" in v else v


@lru_cache(maxsize=65536)
def _wildcard_re(value: str) -> re.Pattern[str]:
    pieces = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            pieces.append(re.escape(value[i + 1]))
            i += 2
            continue
        pieces.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
        i += 1
    return re.compile("".join(pieces) + r"\Z")


def _attr_match(crit: str, subj: str) -> bool | None:
    """True: match; None: match only because the subject left it ANY; False: no match."""
    if crit in (ANY, subj):
        return True
    if subj == ANY:
        return None
    if crit == NA or subj == NA:
        return False
    if _WILDCARD.search(crit):
        return bool(_wildcard_re(crit).match(subj))
    return _unquote(crit) == _unquote(subj)


_BOUNDS = ("versionStartIncluding", "versionStartExcluding", "versionEndIncluding", "versionEndExcluding")


def _range_text(m: Mapping[str, Any]) -> str:
    sym = {"versionStartIncluding": ">=", "versionStartExcluding": ">", "versionEndIncluding": "<=",
           "versionEndExcluding": "<"}
    return "|".join(f"{sym[b]}{m[b]}" for b in _BOUNDS if m.get(b))


def _ver(text: str) -> Version | None:
    try:
        return Version(_unquote(text))
    except InvalidVersion:
        return None


def _subject_version(subj: Cpe) -> Version | None:
    if subj.version in (ANY, NA):
        return None
    if subj.update not in (ANY, NA):
        return _ver(f"{subj.version} {subj.update}")
    return _ver(subj.version)


def criteria_matches(m: Mapping[str, Any], subj: Cpe, *, platform: bool = False) -> tuple[str, ...] | None:
    """Does the cpeMatch `m` (NVD 2.0 or 1.1 keys) cover `subj`? Returns None for no, otherwise the
    attribute names the subject left ANY and were assumed to match (empty tuple: an exact match).
    `platform=True` evaluates it as a condition that need only be present (unknown versions pass)."""
    crit_text = m.get("criteria") or m.get("cpe23Uri")
    if not crit_text:
        return None
    try:
        crit = Cpe.parse(crit_text)
    except CpeError:
        return None
    assumed: list[str] = []
    for f in ("part", "vendor", "product", "edition", "language", "sw_edition", "target_sw", "target_hw",
              "other"):
        r = _attr_match(getattr(crit, f), getattr(subj, f))
        if r is False:
            return None
        if r is None:
            assumed.append(f)
    bounds = {b: m[b] for b in _BOUNDS if m.get(b)}
    if bounds:
        v = _subject_version(subj)
        if v is None:
            if not platform:
                return None
            assumed.append("version")
        elif not _in_bounds(v, bounds):
            return None
        if crit.update not in (ANY, NA) and subj.update != crit.update:
            if subj.update != ANY:
                return None
            assumed.append("update")
        return tuple(assumed)
    if crit.version == ANY:
        r = _attr_match(crit.update, subj.update)
        if r is False:
            return None
        return (*assumed, "update") if r is None else tuple(assumed)
    if crit.version == NA:
        if subj.version == ANY and not platform:
            return None
        firmware_na = crit.part == "o" and crit.product.endswith("_firmware")
        if subj.version not in (NA, ANY) and crit.part != "h" and not firmware_na:
            return None
        if subj.version == ANY or (firmware_na and subj.version != NA):
            assumed.append("version")
        r = _attr_match(crit.update, subj.update)
        if r is False:
            return None
        return (*assumed, "update") if r is None else tuple(assumed)
    return _specific_version(crit, subj, assumed, platform)


def _specific_version(crit: Cpe, subj: Cpe, assumed: list[str], platform: bool) -> tuple[str, ...] | None:
    if subj.version in (ANY, NA):
        return (*assumed, "version") if platform and subj.version == ANY else None
    cv, sv = _ver(crit.version), _ver(subj.version)
    if crit.update in (ANY, NA):
        same = (cv is not None and cv == sv) or _unquote(crit.version) == _unquote(subj.version)
        if not same:
            return None
        if crit.update == NA and subj.update not in (NA, ANY):
            return None
        return tuple(assumed)
    # Criteria names an update ("1.0:sp1"): the subject may carry it in its own update field or
    # folded into the version string ("1.0 SP1", "1.0-sp1", "1.0sp1").
    if cv is not None and cv == sv:
        r = _attr_match(crit.update, subj.update)
        if r is False:
            return None
        return (*assumed, "update") if r is None else tuple(assumed)
    if subj.update in (ANY, NA):
        joined = _ver(f"{crit.version} {crit.update}")
        if joined is not None and joined == sv:
            return tuple(assumed)
    return None


def _in_bounds(v: Version, bounds: Mapping[str, str]) -> bool:
    for b, text in bounds.items():
        bv = _ver(text)
        if bv is None:
            return False
        if b == "versionStartIncluding" and v < bv:
            return False
        if b == "versionStartExcluding" and v <= bv:
            return False
        if b == "versionEndIncluding" and v > bv:
            return False
        if b == "versionEndExcluding" and v >= bv:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Condition:
    """A criteria that had to hold for the finding: a platform present, or a negated one absent."""

    criteria: str
    subject: str | None  # the subject CPE that satisfied it; None for "absent" (negated) conditions
    kind: str  # "platform" | "absent"


@dataclass(frozen=True, slots=True)
class MatchEvidence:
    """One vulnerable cpeMatch that matched one subject CPE, and why the configuration held."""

    criteria: str
    subject: str
    range: str  # "" when the criteria pins one version (or any)
    configuration: int  # index in configurations[]
    match_criteria_id: str | None = None
    conditions: tuple[Condition, ...] = ()
    assumed: tuple[str, ...] = ()  # attributes matched without evidence (subject ANY, firmware "-")
    cve: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "cve": self.cve, "criteria": self.criteria, "subject": self.subject, "range": self.range,
            "configuration": self.configuration, "matchCriteriaId": self.match_criteria_id,
            "conditions": [{"criteria": c.criteria, "subject": c.subject, "kind": c.kind}
                           for c in self.conditions],
            "assumed": list(self.assumed),
        }


@dataclass
class _Result:
    ok: bool
    hits: list[tuple[Mapping[str, Any], Cpe, tuple[str, ...]]] = field(default_factory=list)
    conds: list[Condition] = field(default_factory=list)


def _node_children(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(node.get("nodes") or node.get("children") or [])


class _Subjects:
    """The subject CPEs indexed by (vendor, product): a long configuration lists hundreds of criteria for
    other products, and `criteria_matches` on each of them was most of a scan. Only a criteria whose
    vendor and product are plain values is routed through the index; its `_attr_match` on those two is
    then exactly unquoted equality (or a subject ANY/NA, which is kept with every key), so the subjects
    left out are the ones `criteria_matches` would have refused. Order is kept: evidence follows it."""

    __slots__ = ("_by_key", "_open", "all")

    def __init__(self, subjects: Sequence[Cpe]) -> None:
        self.all = tuple(subjects)
        self._open = tuple(s for s in subjects if {s.vendor, s.product} & {ANY, NA})
        self._by_key: dict[tuple[str, str], tuple[Cpe, ...]] = {}
        for s in subjects:
            key = (_unquote(s.vendor), _unquote(s.product))
            if key not in self._by_key and s not in self._open:
                self._by_key[key] = tuple(
                    x for x in subjects if x in self._open or (_unquote(x.vendor), _unquote(x.product)) == key
                )


@lru_cache(maxsize=262144)
def _plain_key(crit_text: str) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """(unquoted, as written) (vendor, product) of a criteria naming both plainly; None when unparsable,
    ANY/NA or a wildcard (those go to every subject)."""
    text = crit_text.strip()
    parts = text[8:].split(":") if text.startswith("cpe:2.3:") and "\\" not in text else []
    if 3 <= len(parts) <= 11 and parts[0] in ("a", "o", "h", ANY) and "" not in parts:
        v, p = parts[1].lower(), parts[2].lower()  # what `_parse` gives, without building a Cpe
    else:
        try:
            crit = Cpe.parse(crit_text)
        except CpeError:
            return None
        v, p = crit.vendor, crit.product
    if v in (ANY, NA) or p in (ANY, NA):
        return None
    if ("*" in v or "?" in v or "*" in p or "?" in p) and (_WILDCARD.search(v) or _WILDCARD.search(p)):
        return None  # the regex only when a wildcard character is there at all (rare)
    if "\\" not in v and "\\" not in p:
        return (v, p), (v, p)
    return (_unquote(v), _unquote(p)), (v, p)


def _eval_node(node: Mapping[str, Any], subjects: _Subjects) -> _Result:
    op = str(node.get("operator") or "OR").upper()
    terms: list[_Result] = []
    # Most criteria of a long configuration have no candidate subject. Such a term never holds and adds
    # nothing, so it is only remembered (it makes an AND fail).
    missed = False
    by_key, unrouted, every = subjects._by_key, subjects._open, subjects.all
    for m in node.get("cpeMatch") or node.get("cpe_match") or []:
        crit = m.get("criteria") or m.get("cpe23Uri")
        key = _plain_key(crit) if isinstance(crit, str) else None
        candidates = every if key is None else by_key.get(key[0], unrouted)
        if not candidates:
            missed = True
            continue
        vulnerable = bool(m.get("vulnerable", True))
        term = _Result(False)
        for s in candidates:
            assumed = criteria_matches(m, s, platform=not vulnerable)
            if assumed is None:
                continue
            term.ok = True
            if vulnerable:
                term.hits.append((m, s, assumed))
            else:
                term.conds.append(Condition(m.get("criteria") or m.get("cpe23Uri", ""), s.fs(), "platform"))
                break
        terms.append(term)
    terms.extend(_eval_node(child, subjects) for child in _node_children(node))
    held = (t.ok for t in terms)
    ok = (not missed and bool(terms) and all(held)) if op == "AND" else any(held)
    res = _Result(ok)
    for t in terms:
        if t.ok:
            res.hits.extend(t.hits)
            res.conds.extend(t.conds)
    if node.get("negate"):
        absent = [Condition(m.get("criteria") or m.get("cpe23Uri", ""), None, "absent")
                  for m in node.get("cpeMatch") or node.get("cpe_match") or []]
        # A negated node contributes a condition, never a finding.
        return _Result(not ok, [], absent if not ok else [])
    return res


def configurations_of(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The configurations of an NVD 2.0 `cve` object (or `{"cve": ...}`) or an NVD 1.1 CVE item,
    as a list of 2.0-shaped configuration nodes."""
    cve = record.get("cve", record) if isinstance(record.get("cve"), Mapping) else record
    confs = cve.get("configurations") if isinstance(cve, Mapping) else None
    if confs is None:
        confs = record.get("configurations")
    if isinstance(confs, list):
        return [c for c in confs if isinstance(c, Mapping)]
    if isinstance(confs, Mapping):  # NVD 1.1: each top-level node is one alternative
        out = []
        for node in confs.get("nodes") or []:
            if node.get("children"):
                out.append({"operator": node.get("operator", "OR"), "negate": node.get("negate", False),
                            "nodes": node["children"]})
            else:
                out.append({"nodes": [node]})
        return out
    return []


def _cve_id(record: Mapping[str, Any]) -> str | None:
    cve = record.get("cve", record)
    if isinstance(cve, Mapping):
        if "id" in cve:
            return str(cve["id"])
        meta = cve.get("CVE_data_meta")
        if isinstance(meta, Mapping):
            return meta.get("ID")
    return None


def evaluate(configurations: Iterable[Mapping[str, Any]], subject_cpes: Iterable[Cpe | str],
             *, cve: str | None = None, indices: Sequence[int] | None = None) -> list[MatchEvidence]:
    """Evaluate NVD configurations against everything known to be present on one subject (a device's
    firmware, hardware and OS CPEs, or one SBOM component and its platform). Returns one evidence per
    vulnerable cpeMatch that matched a subject CPE inside a configuration that holds. `indices` are the
    configurations' positions in their record when only some of them are given."""
    subjects = [s if isinstance(s, Cpe) else Cpe.parse(s) for s in subject_cpes]
    if not subjects:
        return []
    keys = {(s.vendor, s.product) for s in subjects}
    indexed = _Subjects(subjects)
    out: list[MatchEvidence] = []
    seen: set[tuple[str, str, int]] = set()
    for pos, conf in enumerate(configurations):
        idx = pos if indices is None else indices[pos]
        if not _mentions(conf, keys):
            continue
        res = _eval_node(conf, indexed)
        if not res.ok:
            continue
        conds = tuple(dict.fromkeys(res.conds))
        for m, s, assumed in res.hits:
            crit = m.get("criteria") or m.get("cpe23Uri", "")
            k = (crit + _range_text(m), s.fs(), idx)
            if k in seen:
                continue
            seen.add(k)
            out.append(MatchEvidence(crit, s.fs(), _range_text(m), idx, m.get("matchCriteriaId"), conds,
                                     assumed, cve))
    return out


def _mentions(node: Mapping[str, Any], keys: set[tuple[str, str]]) -> bool:
    """Cheap pre-filter: does any vulnerable criteria name a vendor:product the subject has?"""
    for m in node.get("cpeMatch") or node.get("cpe_match") or []:
        crit = m.get("criteria") or m.get("cpe23Uri") or ""
        if m.get("vulnerable", True):
            plain = _plain_key(crit) if isinstance(crit, str) else None
            if plain is not None:  # the common case, decided from the cache: no ANY, no wildcard
                if plain[1] in keys:
                    return True
                continue
            try:
                c = Cpe.parse(crit)
            except CpeError:
                continue
            if (c.vendor, c.product) in keys or c.vendor == ANY or c.product == ANY:
                return True
            wild = _WILDCARD.search(c.vendor) or _WILDCARD.search(c.product)
            if wild and any(_attr_match(c.vendor, v) is not False and _attr_match(c.product, p) is not False
                            for v, p in keys):
                return True
    return any(_mentions(child, keys) for child in _node_children(node))


def evaluate_cve(record: Mapping[str, Any], subject_cpes: Iterable[Cpe | str]) -> list[MatchEvidence]:
    """`evaluate` on one NVD 2.0 or 1.1 record, with the CVE id in each evidence."""
    return evaluate(configurations_of(record), subject_cpes, cve=_cve_id(record))
