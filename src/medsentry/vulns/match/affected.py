"""CNA `affected[]` data (CVE JSON 5 records and the `affected` field of NVD 2.0 records).

NVD stopped adding CPE configurations to most new CVEs; what remains is the CNA's own statement:
`{vendor, product, packageName, cpes[], defaultStatus, versions[{version, lessThan | lessThanOrEqual,
versionType, status, changes[{at, status}]}]}` (CVE schema 5.x). Status of a version:
1. entries with a range (`lessThan`/`lessThanOrEqual`) cover `version <= v < lessThan` (`*` means
   unbounded; `version` "0" or "*" means from the start); `changes` switch the status at `at`;
2. entries without a range name exactly one version;
3. an exact entry beats a range; among ranges the narrowest wins, an unaffected one on a tie;
4. a version no entry covers takes `defaultStatus` (absent: unknown).
Versions compare with `versions.Version`; `git` (commit) versions only by equality, because commit
order cannot be known without the repository.

The product matches by vendor family (`vendors`) and normalised product or package name, or by the
`cpes` list when the caller passes CPEs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from medsentry.vulns.match.cpe import Cpe, CpeError
from medsentry.vulns.match.vendors import families, strip_vendor_prefix
from medsentry.vulns.match.versions import InvalidVersion, Version

__all__ = ["AffectedMatch", "affected_entries", "match_affected"]


@dataclass(frozen=True, slots=True)
class AffectedMatch:
    cve: str | None
    vendor: str
    product: str
    status: str  # affected | unaffected | unknown
    rule: str  # the versions[] entry (or defaultStatus) that decided, as text
    source: str  # "cna" or the container/source that said it
    via: str  # "name" | "cpe"


def affected_entries(record: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(source, affected entry) pairs of a CVE5 record (CNA and ADP containers) or an NVD 2.0 record."""
    out: list[tuple[str, Mapping[str, Any]]] = []
    containers = record.get("containers")
    if isinstance(containers, Mapping):
        cna = containers.get("cna") or {}
        out += [("cna", a) for a in cna.get("affected") or [] if isinstance(a, Mapping)]
        for adp in containers.get("adp") or []:
            src = str((adp.get("providerMetadata") or {}).get("shortName") or "adp")
            out += [(src, a) for a in adp.get("affected") or [] if isinstance(a, Mapping)]
        return out
    cve = record.get("cve", record)
    for block in (cve.get("affected") if isinstance(cve, Mapping) else None) or []:
        if not isinstance(block, Mapping):
            continue
        src = str(block.get("source") or "cna")
        out += [(src, a) for a in block.get("affectedData") or [] if isinstance(a, Mapping)]
    return out


def _cve_id(record: Mapping[str, Any]) -> str | None:
    meta = record.get("cveMetadata")
    if isinstance(meta, Mapping) and meta.get("cveId"):
        return str(meta["cveId"])
    cve = record.get("cve", record)
    return str(cve["id"]) if isinstance(cve, Mapping) and cve.get("id") else None


def _norm(name: str | None) -> str:
    return re.sub(r"[^0-9a-z]", "", strip_vendor_prefix(name or "").casefold())


def _ver(text: Any) -> Version | None:
    if text is None or str(text).strip() in ("", "*", "0", "unspecified", "n/a"):
        return None
    try:
        return Version(str(text))
    except InvalidVersion:
        return None


def _status_of(entry: Mapping[str, Any], version: str) -> tuple[str, str, int] | None:
    """(status, rule, width) for a device version, or None when the entry does not cover it.
    width ranks specificity: 0 exact, larger for wider ranges."""
    status = str(entry.get("status") or "unknown")
    vtype = str(entry.get("versionType") or "")
    start = entry.get("version")
    upper_key = (
        "lessThan" if "lessThan" in entry else "lessThanOrEqual" if "lessThanOrEqual" in entry else None
    )
    if upper_key is None:
        if start is None:
            return None
        if vtype == "git" or _ver(start) is None:
            same = str(start).strip().casefold() == version.strip().casefold()
        else:
            same = _ver(start) == _ver(version)
        return (status, f"= {start}", 0) if same else None
    if vtype == "git":
        # commits have no order without the repository: only the introducing commit itself is known
        same = start is not None and str(start).strip().casefold() == version.strip().casefold()
        return (status, f"= {start} (git, introducing commit)", 0) if same else None
    v = _ver(version)
    if v is None:
        return None
    upper = str(entry.get(upper_key) or "").strip()
    # "*" or "log4j-core*" (CVE-2021-44228): no upper bound; `changes` carry the boundaries
    lo, hi = _ver(start), (None if upper.endswith("*") else _ver(upper))
    if lo is not None and v < lo:
        return None
    if hi is not None and (v > hi or (upper_key == "lessThan" and v == hi)):
        return None
    if upper and not upper.endswith("*") and hi is None:
        return None  # an upper bound we cannot read: do not guess
    for ch in sorted(entry.get("changes") or [], key=lambda c: _ver(c.get("at")) or Version("0")):
        at = _ver(ch.get("at"))
        if at is not None and v >= at:
            status = str(ch.get("status") or status)
    op = "<" if upper_key == "lessThan" else "<="
    width = 2 if lo is None or hi is None else 1
    return status, f">= {start} {op} {entry.get(upper_key)}", width


def _decide(aff: Mapping[str, Any], version: str | None) -> tuple[str, str]:
    default = str(aff.get("defaultStatus") or "unknown")
    if not version:
        return ("affected" if default == "affected" else "unknown"), "version unknown"
    best: tuple[int, int, str, str] | None = None
    for entry in aff.get("versions") or []:
        if not isinstance(entry, Mapping):
            continue
        got = _status_of(entry, version)
        if got is None:
            continue
        status, rule, width = got
        rank = (width, 0 if status == "unaffected" else 1, status, rule)
        if best is None or rank < best:
            best = rank
    if best is None:
        return default, f"defaultStatus {default}"
    return best[2], best[3]


def match_affected(
    record: Mapping[str, Any],
    vendor: str | None,
    product: str | None,
    version: str | None,
    cpes: Iterable[Cpe | str] = (),
) -> list[AffectedMatch]:
    """The CNA/ADP statements of one record about a product, with the status of `version`."""
    fams = families(vendor)
    pkey = _norm(product)
    subj: list[Cpe] = []
    for c in cpes:
        try:
            subj.append(c if isinstance(c, Cpe) else Cpe.parse(c))
        except CpeError:
            continue
    cve = _cve_id(record)
    out: list[AffectedMatch] = []
    for source, aff in affected_entries(record):
        via = None
        names = {_norm(aff.get("product")), _norm(aff.get("packageName"))} - {""}
        if fams & families(aff.get("vendor")) and pkey and pkey in names:
            via = "name"
        elif subj:
            for text in aff.get("cpes") or []:
                try:
                    c = Cpe.parse(str(text))
                except CpeError:
                    continue
                if any(s.vendor == c.vendor and s.product == c.product for s in subj):
                    via = "cpe"
                    break
        if via is None:
            continue
        status, rule = _decide(aff, version)
        out.append(
            AffectedMatch(
                cve, str(aff.get("vendor") or ""), str(aff.get("product") or ""), status, rule, source, via
            )
        )
    return out
