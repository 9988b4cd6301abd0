"""CSAF 2.0 advisories matched against a device's vendor, model and firmware version.

Medical advisories (CISA ICSMA) name products in free text: `product_tree.branches` walk
vendor -> product_name -> product_version | product_version_range, where the "version" may be a range
(`< 8.2.2`), a list, `vers:all/*`, a model number or a date of manufacture (see `ranges`). Products
also come from `full_product_names` (name text, optional CPE/purl helper) and `relationships`
(component A `installed_on`/`default_component_of` platform B: matched as B's name with A's versions).

A device matches a product when
* a vendor family of the device is among the advisory vendor's families (`vendors`, aliases in
  `data/vendor_aliases.yaml`),
* its model names the product: equal after case, punctuation, spacing and a leading vendor/brand are
  ignored (also against the product name plus, or only, a model variant written in the version
  field, e.g. "MiniMed 620G" / "MMT-1710"); a model that only contains, or is contained in, the product
  name is a *candidate* (confidence below `AFFECTED_CONFIDENCE`),
* and its version lies in the product's version condition when there is one.

`vulnerabilities[].product_status` gives the status per product id (known_affected, fixed,
known_not_affected, first_affected, last_affected, first_fixed, recommended, under_investigation);
`first_*`/`last_affected` on a single version turn it into an open range. A fixed/not-affected
product whose version condition is decided by the device's version overrides an affected one for the
same vulnerability. Remediations are attached per product id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from medsentry.vulns.match.cpe import Cpe, CpeError
from medsentry.vulns.match.ranges import RangeSpec, parse_range_text
from medsentry.vulns.match.vendors import families, strip_vendor_prefix
from medsentry.vulns.match.versions import ALL_VERSIONS, Interval, VersionRange

__all__ = [
    "AFFECTED_CONFIDENCE",
    "AFFECTED_STATUSES",
    "Advisory",
    "CsafError",
    "CsafMatch",
    "CsafProduct",
    "Remediation",
    "match_device",
]

AFFECTED_STATUSES = frozenset({"known_affected", "first_affected", "last_affected"})
NOT_AFFECTED_STATUSES = frozenset({"fixed", "first_fixed", "known_not_affected"})
# A single version under these statuses marks where a range starts or ends.
_OPEN_ENDED = frozenset({"first_affected", "first_fixed", "last_affected"})
_STATUS_ORDER = ("known_affected", "first_affected", "last_affected", "fixed", "first_fixed",
                 "known_not_affected", "under_investigation", "recommended")
# Matches at or above this confidence are findings; below it they are candidates to review.
AFFECTED_CONFIDENCE = 0.75

_VERSION_SCORE = {"exact": 1.0, "list": 1.0, "range": 1.0, "all": 0.95, "model": 0.9, "condition": 0.8,
                  "unknown": 0.6}
_UNKNOWN_VERSION = 0.5  # the device's version is unknown or unreadable, the product needs one
_NAME_PARTIAL = 0.6


class CsafError(ValueError):
    """Not a CSAF document (no product_tree/vulnerabilities of the right types)."""


@dataclass(frozen=True, slots=True)
class CsafProduct:
    product_id: str
    vendor: str
    families: frozenset[str]
    name: str  # the product's name without version text
    spec: RangeSpec
    full_name: str
    cpe: str | None = None
    purl: str | None = None
    family: str = ""  # a product_family branch above the product name ("IntelliVue" over "MX40")

    @property
    def variants(self) -> tuple[str, ...]:
        if self.spec.kind != "model" or not self.spec.qualifier:
            return ()
        return tuple(v.strip() for v in self.spec.qualifier.split(";") if v.strip())


@dataclass(frozen=True, slots=True)
class Remediation:
    category: str
    details: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class CsafMatch:
    cve: str  # the CVE id, or the vulnerability's first other id
    status: str  # the product_status category
    product_id: str
    product_name: str
    range_text: str
    remediation: tuple[Remediation, ...]
    confidence: float
    advisory: str
    reason: str

    @property
    def affected(self) -> bool:
        return self.status in AFFECTED_STATUSES and self.confidence >= AFFECTED_CONFIDENCE

    def as_dict(self) -> dict[str, Any]:
        return {
            "cve": self.cve, "status": self.status, "product_id": self.product_id,
            "product_name": self.product_name, "range_text": self.range_text,
            "remediation": [{"category": r.category, "details": r.details, "url": r.url}
                            for r in self.remediation],
            "confidence": round(self.confidence, 3), "advisory": self.advisory, "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class _Vuln:
    id: str
    status: Mapping[str, str]  # product id -> category
    remediations: Mapping[str, tuple[Remediation, ...]]


def _compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold().replace("&", "and"))


@lru_cache(maxsize=65536)
def _name_forms(name: str) -> frozenset[str]:
    stripped = strip_vendor_prefix(name)
    forms = {name, stripped, re.sub(r"\([^()]*\)", " ", stripped)}
    return frozenset(c for c in (_compact(f) for f in forms) if c)


@lru_cache(maxsize=65536)
def _tokens(text: str) -> frozenset[str]:
    return frozenset(t for t in re.findall(r"[0-9a-z]+", strip_vendor_prefix(text).casefold()))


def _distinctive(tokens: Iterable[str]) -> bool:
    return any(any(ch.isdigit() for ch in t) or len(t) >= 4 for t in tokens)


class Advisory:
    """A parsed CSAF document: its products and, per vulnerability, the status of each product."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("product_tree", {}), Mapping):
            raise CsafError("not a CSAF document: product_tree must be an object")
        meta = doc.get("document")
        meta = meta if isinstance(meta, Mapping) else {}
        tracking = meta.get("tracking")
        tracking = tracking if isinstance(tracking, Mapping) else {}
        self.id: str = str(tracking.get("id") or meta.get("title") or "")
        self.products: dict[str, CsafProduct] = {}
        tree = doc.get("product_tree") or {}
        self._walk(tree.get("branches"), {})
        for fpn in _list(tree.get("full_product_names")):
            if isinstance(fpn, Mapping):
                self._add_full_name(fpn, "", "")
        for rel in _list(tree.get("relationships")):
            self._add_relationship(rel)
        self.vulns: list[_Vuln] = []
        vulns = doc.get("vulnerabilities")
        vulns = [] if vulns is None else vulns
        if not isinstance(vulns, list):
            raise CsafError("not a CSAF document: vulnerabilities must be a list")
        for v in vulns:
            if isinstance(v, Mapping):
                self.vulns.append(self._vuln(v))
        for vuln in self.vulns:
            for pid, status in vuln.status.items():
                p = self.products.get(pid)
                if p is not None and status in _OPEN_ENDED and p.spec.kind == "exact":
                    self.products[pid] = replace(p, spec=_open_range(p, status))
        self._families = frozenset(f for p in self.products.values() for f in p.families)

    # --- product tree ------------------------------------------------------------------------------
    def _walk(self, branches: Any, ctx: dict[str, str]) -> None:
        if not isinstance(branches, list):
            return
        for br in branches:
            if not isinstance(br, Mapping):
                continue
            c = dict(ctx)
            cat, name = str(br.get("category") or ""), " ".join(str(br.get("name") or "").split())
            if cat == "vendor":
                c["vendor"] = name
            elif cat == "product_family":
                c["family"] = name
                c.setdefault("product", name)
            elif cat == "product_name":
                c["product"] = name
            elif cat in ("product_version", "product_version_range"):
                c["version"] = name
            elif cat in ("service_pack", "patch_level"):
                c["version"] = f"{c.get('version', '')} {name}".strip()
            if isinstance(br.get("product"), Mapping):
                self._add_full_name(br["product"], c.get("vendor", ""), c.get("product", ""),
                                    c.get("version"), c.get("family", ""))
            self._walk(br.get("branches") or [], c)

    def _add_full_name(self, fpn: Mapping[str, Any], vendor: str, product: str,
                       version: str | None = None, family: str = "") -> None:
        pid = fpn.get("product_id")
        if not pid or not isinstance(pid, str):
            return
        full = str(fpn.get("name") or "")
        helper = fpn.get("product_identification_helper")
        helper = helper if isinstance(helper, Mapping) else {}
        cpe_text = helper.get("cpe") if isinstance(helper, Mapping) else None
        purl = helper.get("purl") if isinstance(helper, Mapping) else None
        if cpe_text and (not vendor or not product):
            try:
                c = Cpe.parse(str(cpe_text))
                vendor = vendor or c.vendor.replace("_", " ")
                product = product or c.product.replace("_", " ")
                if version is None and c.version not in ("*", "-"):
                    version = c.version
            except CpeError:
                pass
        if not product:
            product, version_text = _split_name(full)
            version = version if version is not None else version_text
        if not vendor:
            vendor = full.split(" ", 1)[0] if full else ""
        spec = parse_range_text(version) if version is not None else RangeSpec("all", ALL_VERSIONS, "")
        self.products[str(pid)] = CsafProduct(str(pid), vendor, families(vendor), product, spec, full,
                                              str(cpe_text) if cpe_text else None,
                                              str(purl) if purl else None,
                                              family if family != product else "")

    def _add_relationship(self, rel: Any) -> None:
        if not isinstance(rel, Mapping):
            return
        fpn = rel.get("full_product_name")
        fpn = fpn if isinstance(fpn, Mapping) else {}
        comp = self.products.get(str(rel.get("product_reference")))
        plat = self.products.get(str(rel.get("relates_to_product_reference")))
        pid = fpn.get("product_id")
        if not pid or not isinstance(pid, str) or comp is None or plat is None:
            return
        # The component's versions on the platform's name: a device is the platform, running the
        # component (firmware/software) whose version is the device's version.
        spec = comp.spec if comp.spec.kind != "all" else plat.spec
        self.products[str(pid)] = CsafProduct(str(pid), plat.vendor or comp.vendor,
                                              plat.families | comp.families, plat.name, spec,
                                              str(fpn.get("name") or ""), comp.cpe, comp.purl)

    # --- vulnerabilities ---------------------------------------------------------------------------
    def _vuln(self, v: Mapping[str, Any]) -> _Vuln:
        vid = v.get("cve")
        if not vid:
            ids = _list(v.get("ids"))
            vid = ids[0].get("text") if ids and isinstance(ids[0], Mapping) else None
        status: dict[str, str] = {}
        ps = v.get("product_status")
        ps = ps if isinstance(ps, Mapping) else {}
        for cat in reversed(_STATUS_ORDER):  # earlier categories win when a product is listed twice
            for pid in _list(ps.get(cat)):
                status[str(pid)] = cat
        rem: dict[str, list[Remediation]] = {}
        for r in _list(v.get("remediations")):
            if not isinstance(r, Mapping):
                continue
            url = r.get("url")
            item = Remediation(str(r.get("category") or ""), str(r.get("details") or ""),
                               str(url) if url else None)
            for pid in _list(r.get("product_ids")):
                rem.setdefault(str(pid), []).append(item)
        return _Vuln(str(vid or ""), status, {k: tuple(x) for k, x in rem.items()})

    # --- matching ----------------------------------------------------------------------------------
    def match(self, vendor: str | None, model: str | None, version: str | None) -> list[CsafMatch]:
        fams = families(vendor)
        if not fams or not (fams & self._families) or not model:
            return []
        hits: dict[str, tuple[float, str]] = {}
        for p in self.products.values():
            if not (fams & p.families):
                continue
            got = _score(p, model, version)
            if got is not None:
                hits[p.product_id] = got
        if not hits:
            return []
        # A product named exactly makes partial-name hits on other products of this advisory noise.
        if any(reason.startswith("name") for _, reason in hits.values()):
            hits = {k: v for k, v in hits.items() if v[1].startswith("name")}
        out: list[CsafMatch] = []
        for vuln in self.vulns:
            found: list[CsafMatch] = []
            for pid, (conf, reason) in hits.items():
                status = vuln.status.get(pid)
                if status is None:
                    continue
                p = self.products[pid]
                found.append(CsafMatch(vuln.id, status, pid, p.full_name or p.name, p.spec.text,
                                       vuln.remediations.get(pid, ()), conf, self.id, reason))
            out.extend(_resolve(found))
        return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _open_range(p: CsafProduct, status: str) -> RangeSpec:
    assert p.spec.range is not None
    v = p.spec.range.intervals[0].lo
    iv = Interval(None, True, v, True) if status == "last_affected" else Interval(v, True, None, False)
    return replace(p.spec, kind="range", range=VersionRange((iv,)))


def _resolve(found: list[CsafMatch]) -> list[CsafMatch]:
    decided_clear = [m for m in found if m.status in NOT_AFFECTED_STATUSES and "version in" in m.reason]
    if decided_clear:
        return [m for m in found if m.status not in AFFECTED_STATUSES] or decided_clear
    return found


def _score(p: CsafProduct, model: str, version: str | None) -> tuple[float, str] | None:
    dm = _name_forms(model)
    pforms = _name_forms(p.name) | (_name_forms(f"{p.family} {p.name}") if p.family else frozenset())
    variants = p.variants
    name_score, name_reason = 0.0, ""
    if dm & pforms:
        name_score, name_reason = 1.0, f"name {p.name!r}"
    else:
        for var in variants:
            forms = _name_forms(f"{p.name} {var}") | _name_forms(var)
            if dm & forms:
                name_score, name_reason = 1.0, f"name {p.name!r} variant {var!r}"
                break
    if not name_score:
        mt, pt = _tokens(model), _tokens(p.name)
        if mt and pt and (mt < pt or pt < mt) and _distinctive(mt & pt):
            name_score, name_reason = _NAME_PARTIAL, f"partial name {p.name!r}"
    if not name_score:
        return None
    spec = p.spec
    if spec.versioned:
        inside = spec.contains(version)
        if inside is False:
            return None
        if inside is None:
            why = f"{name_reason}; version {version!r} undecided {spec.text!r}"
            return name_score * _UNKNOWN_VERSION, why
        return name_score, f"{name_reason}; version in {spec.range}"
    return name_score * _VERSION_SCORE[spec.kind], f"{name_reason}; versions: {spec.kind} {spec.text!r}"


_NAME_VERSION = re.compile(
    r"^(?P<name>.*?)\s+(?P<ver>(?:vers:|<=|>=|<|>|=|prior to\b|before\b|up to\b|all versions\b|versions?\b"
    r"|v?\d[\w.\-]*(?:\s|$)).*)$", re.IGNORECASE)


def _split_name(full: str) -> tuple[str, str | None]:
    """'Philips IntelliVue MX40 < B.06.18' -> ('Philips IntelliVue MX40', '< B.06.18')."""
    m = _NAME_VERSION.match(full.strip())
    if not m or not m.group("name"):
        return full.strip(), None
    return m.group("name").strip(" :,-"), m.group("ver").strip()


def match_device(doc: Mapping[str, Any] | Advisory, vendor: str | None, model: str | None,
                 version: str | None) -> list[CsafMatch]:
    """Every (vulnerability, product) of the advisory that the device matches, with status, range text,
    remediations and a confidence; `CsafMatch.affected` says whether it is a finding."""
    adv = doc if isinstance(doc, Advisory) else Advisory(doc)
    return adv.match(vendor, model, version)
