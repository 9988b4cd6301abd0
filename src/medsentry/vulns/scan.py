"""The scan service: subjects (SBOM components, inventory devices) in, evidenced findings out.

For every subject the store is asked for candidate products, then each candidate record is decided by
the exact matchers (`match.cpe.evaluate`, `match.affected`, `match.csaf`), and what they decide becomes a
finding with its evidence, VEX status and priority.

Candidate products of an SBOM component ("targets"), each with the confidence that it *is* the component:
* `exact`: a CPE of the component names the NVD vendor:product (1.0);
* `vendor-alias`: same product, vendor equal once legal/filler words are ignored
  (`the_apache_software_foundation` = `apache`, `the_jquery_foundation` = `jquery`) or of one vendor
  family (`vendors.families`) (0.9);
* `package-name`: the component's or purl's name is the product, vendor consistent (0.85);
* `vendor-package`: the package is named after the NVD vendor (+ product): `Newtonsoft.Json` =
  `newtonsoft:json.net`, NuGet `BouncyCastle` = `bouncycastle:bc-csharp`, the product carrying no
  language marker that contradicts the component's ecosystem (0.8);
* `product-only`: same product name under another vendor (0.5): never more than a candidate, and only
  when nothing better names the component and at most `_MAX_OTHER_VENDORS` vendors share the name.
Candidate CVEs whose indexed version constraints cannot hold the component's version are not loaded.

Decisions per record:
1. NVD configuration mentions the target: `evaluate` decides (AND/negate/platforms); no match = not
   affected, NVD's analysis stands.
2. Else CNA `affected[]` data names it: `match_affected` decides. A CNA statement whose description makes
   the flaw depend on a build option (`FF_LBA64 = 1`, `--enable-x`) the SBOM cannot state is a candidate.
3. Else (neither, e.g. "Awaiting Analysis") the description: a record naming the component and a version
   bound that includes ours ("BC C# .Net before 2.3.1", "versions prior to 15.1.1") is a candidate.
Findings with confidence below `AFFECTED_CONFIDENCE` get status `under_investigation`, never `affected`.

False-positive guards (a guarded match is kept in `ScanResult.suppressed`, with the reason):
* language: the description names only languages the component's ecosystem (purl type, CPE target_sw)
  cannot hold -- a 1998 Perl CGI `nlog` against NuGet NLog, Java-only Bouncy Castle against the C# one,
  `XMLSchedulingDataProcessor.java` against Quartz.NET. Not applied to exact CPE matches;
* age: a record published before the component's package registry existed, matched by a criteria without
  any version bound, cannot be about that package.

Devices: vendor/model/firmware from identification against CSAF advisories (CISA ICSMA first: they are
what medical devices get) with `match.csaf.match_device`, and against NVD/CNA products named like the model
(`<model>`, `<model>_firmware`) of the same vendor family. Human Impact comes from the device class,
System Exposure from the services the inventory saw it offer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from medsentry.identify.device import Device
from medsentry.vulns.match.affected import match_affected
from medsentry.vulns.match.cpe import ANY, Cpe, CpeError, evaluate
from medsentry.vulns.match.csaf import AFFECTED_CONFIDENCE, AFFECTED_STATUSES, Advisory, match_device
from medsentry.vulns.match.versions import InvalidVersion, Version, version_in
from medsentry.vulns.prioritize import FindingInputs, prioritize
from medsentry.vulns.records import OsvAdvisory, Vulnerability
from medsentry.vulns.sbom import Sbom
from medsentry.vulns.store import (
    DEFAULT_MAX_AGE,
    FeedStatus,
    ProductHit,
    VulnStore,
    cpe_vendor_product,
    name_key,
)
from medsentry.vulns.subjects import (
    CAMEL,
    OSV_ECOSYSTEMS,
    TARGET_SW,
    Subject,
    compact,
    component_subject,
    device_subject,
    name_languages,
    name_pattern,
    name_variants,
    same_vendor,
    strip_markers,
    text_languages,
)
from medsentry.vulns.vex import VexStatement

__all__ = ["Finding", "ScanResult", "Subject", "scan_devices", "scan_sbom"]

Triage = Mapping[tuple[str, str], VexStatement]

# A build/configuration option the flaw depends on: a macro assignment or a configure switch.
_BUILD_CONDITION = re.compile(
    r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\s*=\s*\w+|--(?:enable|disable|with|without)-[\w-]+"
    r"|\b(?:compiled|built|configured) with\b",
)
_SENTENCE = re.compile(r"(?<=[A-Za-z0-9)\]])\.\s+(?=[A-Z])")
_VERSION = r"v?\d[\w.\-]*\w|v?\d"
_BOUND = re.compile(
    rf"\b(?P<op>before|prior to|earlier than|through|up to(?: and including)?|<=|<)\s+(?:versions?\s+)?"
    rf"(?P<v>{_VERSION})(?P<more>(?:\s*(?:,|and|or)\s*(?:{_VERSION}))*)"
    rf"|(?P<v2>{_VERSION})\s+and\s+(?:earlier|prior|below|older)",
    re.IGNORECASE,
)

CONFIDENCE = {
    "exact": 1.0,
    "vendor-alias": 0.9,
    "package-name": 0.85,
    "vendor-package": 0.8,
    "device-model": 0.85,
    "product-only": 0.5,
}
_UNBOUNDED_PENALTY = 0.7  # "all versions" criteria reached through a name we had to infer
DESCRIPTION_CONFIDENCE = 0.5
# A product name shared by more vendors than this says nothing about which one a component is.
_MAX_OTHER_VENDORS = 3


@dataclass(frozen=True, slots=True)
class _Target:
    vendor: str  # name_key form, as the store indexes it
    product: str
    how: str  # see CONFIDENCE
    why: str

    @property
    def confidence(self) -> float:
        return CONFIDENCE[self.how]


@dataclass(slots=True)
class Finding:
    subject: dict[str, Any]
    vulnerability: str
    source: str
    match: dict[str, Any]
    status: str
    priority: dict[str, Any] | None = None
    ssvc: dict[str, Any] | None = None
    cvss: dict[str, Any] | None = None
    kev: dict[str, Any] | None = None
    epss: dict[str, Any] | None = None
    triage: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "subject": self.subject,
            "vulnerability": self.vulnerability,
            "source": self.source,
            "match": self.match,
            "status": self.status,
            "priority": self.priority,
            "ssvc": self.ssvc,
            "cvss": self.cvss,
            "kev": self.kev,
            "epss": self.epss,
        }
        if self.triage is not None:
            out["triage"] = self.triage
        return out


@dataclass(slots=True)
class ScanResult:
    findings: list[Finding]
    feeds: dict[str, FeedStatus]
    suppressed: list[dict[str, Any]] = field(default_factory=list)  # guarded matches, with the reason

    def to_json(self) -> dict[str, Any]:
        return {
            "findings": [f.to_json() for f in self.findings],
            "feeds": {name: s.to_json() for name, s in self.feeds.items()},
            "suppressed": self.suppressed,
        }


# -- entry points --------------------------------------------------------------------------------------


def scan_sbom(
    store: VulnStore,
    sbom: Sbom,
    triage: Triage | None = None,
    *,
    role: str = "supplier",
    max_age: timedelta | None = DEFAULT_MAX_AGE,
) -> ScanResult:
    """Findings for every component of an SBOM. `role` picks the SSVC tree: "supplier" for the maker of
    the product, "deployer" for a hospital running it. Raises FeedsEmpty / FeedsStale."""
    feeds = store.require_fresh(max_age)
    scanner = _Scanner(store, triage or {}, role, feeds)
    for comp in sbom.all_components():
        scanner.scan(component_subject(comp))
    return scanner.result()


def scan_devices(
    store: VulnStore,
    devices: Sequence[Device],
    triage: Triage | None = None,
    *,
    max_age: timedelta | None = DEFAULT_MAX_AGE,
) -> ScanResult:
    """Findings for inventory devices (SSVC deployer tree). Raises FeedsEmpty / FeedsStale."""
    feeds = store.require_fresh(max_age)
    scanner = _Scanner(store, triage or {}, "deployer", feeds)
    for device in devices:
        subject = device_subject(device)
        if subject is not None:
            scanner.scan(subject)
    return scanner.result()


# -- subjects ------------------------------------------------------------------------------------------


# -- the scanner ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Decision:
    cve: str
    status: str  # affected | under_investigation
    confidence: float
    source: str
    match: dict[str, Any]
    record: Vulnerability | None
    cvss: list[str] = field(default_factory=list)  # vectors from the advisory when no CVE record is stored


class _Scanner:
    def __init__(self, store: VulnStore, triage: Triage, role: str, feeds: dict[str, FeedStatus]) -> None:
        self.store = store
        self.triage = triage
        self.role = role
        self.feeds = feeds
        self.findings: list[Finding] = []
        self.suppressed: list[dict[str, Any]] = []
        self._advisories: dict[str, Advisory | None] = {}
        self._documents: dict[str, Mapping[str, Any]] = {}

    def result(self) -> ScanResult:
        return ScanResult(self.findings, self.feeds, self.suppressed)

    # .. targets ..........................................................................................

    def _compatible(self, subject: Subject, product: str) -> bool:
        marked = name_languages(product)
        return not (subject.languages and marked and not marked & subject.languages)

    def targets(self, subject: Subject) -> list[_Target]:
        found: dict[tuple[str, str], _Target] = {}

        def add(t: _Target) -> None:
            old = found.get((t.vendor, t.product))
            if old is None or t.confidence > old.confidence:
                found[(t.vendor, t.product)] = t

        if subject.label.get("type") == "device":
            for product in {name_key(subject.name), name_key(subject.name) + "_firmware"}:
                for vendor in self.store.vendors_of(product):
                    if same_vendor(subject.vendor, vendor):
                        add(_Target(vendor, product, "device-model", f"model {subject.name!r} of {vendor}"))
            return list(found.values())

        own_vendors = [v for v in (*(c.vendor for c in subject.cpes), subject.vendor) if v]
        names: dict[str, str] = {}  # product key -> what it came from
        for c in subject.cpes:
            pair = cpe_vendor_product(c.fs())
            if pair is not None:
                names.setdefault(pair[1], f"SBOM CPE {c.fs()}")
        for name in name_variants(subject):
            for key in (name_key(name), name_key(re.sub(r"[.\s-]+", "_", name)), compact(name)):
                names.setdefault(key, f"package name {name!r}")
        others: list[_Target] = []
        for product, why in names.items():
            vendors = self.store.vendors_of(product)
            for vendor in vendors:
                if any(name_key(v) == vendor for v in own_vendors):
                    add(_Target(vendor, product, "exact" if why.startswith("SBOM") else "package-name", why))
                elif any(same_vendor(v, vendor) for v in own_vendors):
                    add(_Target(vendor, product, "vendor-alias", f"{why}; vendor {vendor} is the SBOM's"))
                elif self._compatible(subject, product) and len(vendors) <= _MAX_OTHER_VENDORS:
                    others.append(_Target(vendor, product, "product-only", f"{why}; under vendor {vendor}"))
        if not found:  # the SBOM's own names found nothing: is the package named after its vendor?
            self._vendor_named(subject, add)
        if not found:  # the same name under an unrelated vendor: only when nothing better names it
            for t in others:
                add(t)
        return list(found.values())

    def _vendor_named(self, subject: Subject, add: Any) -> None:
        """Packages named after their NVD vendor: `Newtonsoft.Json` = `newtonsoft:json.net` (vendor +
        product without language words), NuGet `BouncyCastle` = `bouncycastle:bc-csharp` (the vendor's
        product for the component's language)."""
        for name in name_variants(subject):
            tokens = [t for t in re.split(r"[^0-9A-Za-z]+", CAMEL.sub(" ", name).lower()) if t]
            whole = "".join(tokens)
            for cut in range(1, len(tokens) + 1):
                rest = "".join(tokens[cut:])  # what the product must say, language words aside
                for vendor in {"".join(tokens[:cut]), "_".join(tokens[:cut])}:
                    # a big vendor has thousands of products: test the cheap substring first
                    for product in self.store.products_of(vendor):
                        if rest and tokens[cut] not in product:
                            continue
                        if not self._compatible(subject, product):
                            continue
                        if compact(vendor) + strip_markers(product) == whole:
                            why = f"package {name!r} = {vendor}:{product}"
                            add(_Target(vendor, product, "vendor-package", why))
                        elif not rest and name_languages(product) & subject.languages:
                            langs = "/".join(sorted(name_languages(product) & subject.languages))
                            why = f"package {name!r} = vendor {vendor}, its product for {langs}"
                            add(_Target(vendor, product, "vendor-package", why))

    # .. scanning .........................................................................................

    def scan(self, subject: Subject) -> None:
        decided: dict[str, _Decision] = {}

        def keep(d: _Decision) -> None:
            old = decided.get(d.cve)
            rank = (d.status == "affected", d.confidence)
            if old is None or rank > (old.status == "affected", old.confidence):
                decided[d.cve] = d

        targets = self.targets(subject)
        by_cve: dict[str, list[_Target]] = {}
        cuts: dict[tuple[str, _Target], dict[str, ProductHit]] = {}  # (cve, target) -> feed -> "cpe" row
        for t in targets:
            for hit in self.store.candidates(t.product, t.vendor):
                if hit.origin == "cpe":
                    cuts.setdefault((hit.cve_id, t), {})[hit.source] = hit
                    if not _may_contain(hit.versions, subject.version):
                        continue  # no criteria of this product can hold our version: skip loading the record
                if t not in by_cve.setdefault(hit.cve_id, []):
                    by_cve[hit.cve_id].append(t)
        # a component is matched on the stored slices alone; a device also looks for its hardware in the
        # platform criteria of the whole record, and a store written before slices has none
        lean = subject.label.get("type") == "component" and all(
            h.packed_slices is not None for feeds in cuts.values() for h in feeds.values()
        )
        records = self.store.vulnerabilities(by_cve, configurations=not lean)
        seen: set[str] = set(by_cve)
        for cve, cands in by_cve.items():
            record = records.get(cve)
            if record is None or record.rejected:
                continue
            for t in sorted(cands, key=lambda t: -t.confidence):
                d = self._decide(subject, record, t, _configurations(record, cuts.get((cve, t), {}), lean))
                if d is not None:
                    keep(d)
        if subject.label.get("type") == "component":
            self._osv(subject, keep)
            self._described(subject, seen, keep)
        else:
            self._csaf(subject, keep)
        for d in decided.values():
            self.findings.append(self._finding(subject, d))

    def _suppress(self, subject: Subject, cve: str, reason: str, match: dict[str, Any]) -> None:
        self.suppressed.append(
            {"subject": subject.label, "vulnerability": cve, "reason": reason, "match": match}
        )

    def _guard(
        self, subject: Subject, record: Vulnerability, t: _Target | None, unbounded: bool
    ) -> str | None:
        """Why this match cannot be about this subject, or None."""
        if t is None or t.how != "exact":
            said = text_languages(record.description)
            if subject.languages and said and not said & subject.languages:
                return (
                    f"description is about {'/'.join(sorted(said))} code; the component is "
                    f"{'/'.join(sorted(subject.languages))}"
                )
        year = subject.registry_year
        published = record.published
        if unbounded and year and subject.purl is not None and published and published.year < year:
            return (
                f"published {record.published.date()}, before the {subject.purl.type} registry existed "
                f"({subject.registry_year}), by a criteria without version bounds"
            )
        return None

    def _decide(
        self, subject: Subject, record: Vulnerability, t: _Target, confs: list[tuple[int, Any]]
    ) -> _Decision | None:
        criteria = _criteria_for((c for _, c in confs), t)
        if criteria:
            return self._decide_configuration(subject, record, t, criteria, confs)
        for entry in record.affected:
            vendor = entry.get("vendor") if isinstance(entry.get("vendor"), str) else ""
            names = {name_key(str(entry.get(k))) for k in ("product", "packageName") if entry.get(k)}
            entry_vendor = "" if name_key(vendor) in ("", "n/a") else name_key(vendor)
            cpe_pairs = {cpe_vendor_product(c) for c in entry.get("cpes") or [] if isinstance(c, str)}
            if (entry_vendor == t.vendor and t.product in names) or (t.vendor, t.product) in cpe_pairs:
                return self._decide_cna(subject, record, t, entry)
        return None

    def _decide_configuration(
        self,
        subject: Subject,
        record: Vulnerability,
        t: _Target,
        criteria: list[Cpe],
        confs: list[tuple[int, Any]],
    ) -> _Decision | None:
        version = subject.version or ANY
        target_sw = next((c.target_sw for c in subject.cpes if c.target_sw != ANY), ANY)
        subjects = [
            replace(
                c,
                version=_cpe_escape(version),
                update=ANY,
                edition=ANY,
                language=ANY,
                sw_edition=ANY,
                target_sw=target_sw,
                target_hw=ANY,
                other=ANY,
            )
            for c in criteria
        ]
        # platform criteria of the configuration may name the subject's own CPEs too; a device is also
        # its own hardware (`h:philips:intellivue_mx40` beside `o:philips:intellivue_mx40_firmware`)
        platforms = list(subject.cpes)
        if subject.label.get("type") == "device":
            model = name_key(subject.name)
            platforms += [
                c
                for c in _criteria_for(record.configurations, None)
                if c.part == "h" and same_vendor(c.vendor, subject.vendor) and name_key(c.product) == model
            ]
        evidence = evaluate(
            [c for _, c in confs], [*subjects, *platforms], cve=record.id, indices=[i for i, _ in confs]
        )
        evidence = [e for e in evidence if cpe_vendor_product(e.criteria) == (t.vendor, t.product)]
        if not evidence:
            return None
        unbounded = all(not e.range and Cpe.parse(e.criteria).version in (ANY, "-") for e in evidence)
        match = {
            "method": "nvd-configuration",
            "target": f"{t.vendor}:{t.product}",
            "how": t.how,
            "why": t.why,
            "evidence": [e.as_dict() for e in evidence],
        }
        reason = self._guard(subject, record, t, unbounded) or _target_sw_conflict(subject, evidence)
        if reason:
            self._suppress(subject, record.id, reason, match)
            return None
        confidence = t.confidence * (_UNBOUNDED_PENALTY if unbounded and t.how != "exact" else 1.0)
        if unbounded and t.how != "exact":
            match["note"] = "criteria covers every version of a product reached through an inferred name"
        return self._decision(record, confidence, match)

    def _decide_cna(
        self, subject: Subject, record: Vulnerability, t: _Target, entry: Mapping[str, Any]
    ) -> _Decision | None:
        version = _align(subject.version, entry)
        wrapped = {"containers": {"cna": {"affected": [entry]}}, "cveMetadata": {"cveId": record.id}}
        found = match_affected(
            wrapped,
            str(entry.get("vendor") or ""),
            str(entry.get("product") or entry.get("packageName") or ""),
            version,
        )
        if not found or found[0].status != "affected":
            return None
        m = found[0]
        match: dict[str, Any] = {
            "method": "cna-affected",
            "target": f"{t.vendor}:{t.product}",
            "how": t.how,
            "why": t.why,
            "rule": m.rule,
            "cna": {"vendor": m.vendor, "product": m.product, "source": m.source},
            "version_compared": version,
        }
        reason = self._guard(subject, record, t, unbounded=m.rule.startswith("defaultStatus"))
        if reason:
            self._suppress(subject, record.id, reason, match)
            return None
        confidence = t.confidence
        condition = _BUILD_CONDITION.search(record.description)
        if condition and not record.has_configurations:
            match["condition"] = f"applies only with {condition.group(0)!r}, which the subject does not state"
            confidence = min(confidence, DESCRIPTION_CONFIDENCE)
        return self._decision(record, confidence, match)

    def _decision(self, record: Vulnerability, confidence: float, match: dict[str, Any]) -> _Decision:
        status = "affected" if confidence >= AFFECTED_CONFIDENCE else "under_investigation"
        match["confidence"] = round(confidence, 3)
        return _Decision(record.id, status, confidence, record.source, match, record)

    def _described(self, subject: Subject, seen: set[str], keep: Any) -> None:
        """Records without NVD configuration or usable CNA data that name the component in their text."""
        ids: set[str] = set()
        for name in name_variants(subject):
            words = [w for w in re.split(r"\s+", name) if w]
            ids.update(self.store.search_unconfigured(words))
        ids -= seen
        if not ids:
            return
        records = self.store.vulnerabilities(ids)
        for cve in sorted(ids):
            record = records.get(cve)
            if record is None or record.rejected or record.has_configurations or _usable_cna(record):
                continue
            try:
                got = _description_range(subject, record.description)
            except _OtherLanguage as exc:
                self._suppress(subject, cve, str(exc), {"method": "description"})
                continue
            if got is None:
                continue
            bounds, clause = got
            match = {
                "method": "description",
                "clause": clause,
                "bounds": bounds,
                "note": "no NVD configuration and no CNA product data: a candidate to review",
            }
            if not _below_bounds(subject.version, bounds):
                continue
            reason = self._guard(subject, record, None, unbounded=False)
            if reason:
                self._suppress(subject, cve, reason, match)
                continue
            keep(self._decision(record, DESCRIPTION_CONFIDENCE, match))

    def _osv(self, subject: Subject, keep: Any) -> None:
        purl = subject.purl
        if purl is None or not subject.version or purl.type not in OSV_ECOSYSTEMS:
            return
        name = (
            f"{purl.namespace}:{purl.name}"
            if purl.type == "maven" and purl.namespace
            else (f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name)
        )
        for adv in self.store.osv_for_package(OSV_ECOSYSTEMS[purl.type], name):
            if adv.withdrawn is not None:
                continue
            rule = _osv_affects(adv, OSV_ECOSYSTEMS[purl.type], name, subject.version)
            if rule is None:
                continue
            cve = next((a for a in adv.aliases if a.upper().startswith("CVE-")), adv.id)
            record = self.store.vulnerability(cve) if cve.upper().startswith("CVE-") else None
            match = {
                "method": "osv",
                "advisory": adv.id,
                "package": f"{OSV_ECOSYSTEMS[purl.type]}/{name}",
                "rule": rule,
                "confidence": 1.0,
            }
            keep(_Decision(cve, "affected", 1.0, "osv", match, record))

    def _csaf(self, subject: Subject, keep: Any) -> None:
        names = [f"{subject.vendor} {subject.name}"]
        keys = [k for k, _ in self.store.csaf_candidates(names)]
        missing = [k for k in keys if k not in self._advisories]
        for doc in self.store.csaf_documents(missing):
            self._documents[doc.key] = doc.document
            try:
                self._advisories[doc.key] = Advisory(doc.document)
            except ValueError:
                self._advisories[doc.key] = None  # counted at import; unusable for matching
        for key in keys:
            adv = self._advisories.get(key)
            if adv is None:
                continue
            for m in match_device(adv, subject.vendor, subject.name, subject.version or None):
                if m.status not in AFFECTED_STATUSES and m.status != "under_investigation":
                    continue
                status = "affected" if m.affected else "under_investigation"
                record = self.store.vulnerability(m.cve) if m.cve.upper().startswith("CVE-") else None
                match = {"method": "csaf", **m.as_dict()}
                vectors = [] if record is not None else _csaf_vectors(self._documents[key], m.cve)
                keep(_Decision(m.cve, status, m.confidence, f"csaf:{m.advisory}", match, record, vectors))

    # .. findings .........................................................................................

    def _finding(self, subject: Subject, d: _Decision) -> Finding:
        status = d.status
        triage = None
        for name in subject.names:
            st = self.triage.get((name, d.cve))
            if st is not None:
                status, triage = st.status, st.as_dict()
                break
        kev_known = self.feeds.get("kev") is not None and self.feeds["kev"].records > 0
        kev = self.store.kev(d.cve)
        epss = self.store.epss(d.cve)
        priority = prioritize(
            FindingInputs(
                cve=d.cve,
                kev=kev if kev is not None else (False if kev_known else None),
                epss=epss,
                cvss=d.cvss or None,
                vulnerability=d.record,
                device_class=subject.device_class,
                exposure_hint=subject.exposure_hint,
                role=self.role,
            )
        )
        return Finding(
            subject=subject.label,
            vulnerability=d.cve,
            source=d.source,
            match=d.match,
            status=status,
            priority={
                "level": priority.level,
                "rank": priority.rank,
                "score": priority.score,
                "reasons": priority.reasons,
            },
            ssvc=priority.inputs["ssvc"],
            cvss=priority.inputs["cvss"],
            kev=priority.inputs["kev"],
            epss=priority.inputs["epss"],
            triage=triage,
        )


# -- record helpers ------------------------------------------------------------------------------------


def _csaf_vectors(document: Mapping[str, Any], cve: str) -> list[str]:
    """CVSS vectors a CSAF advisory gives for one vulnerability (`scores[].cvss_v3/cvss_v4`)."""
    out = []
    for v in document.get("vulnerabilities") or []:
        if not isinstance(v, Mapping) or v.get("cve") != cve:
            continue
        for sc in v.get("scores") or []:
            for key in ("cvss_v4", "cvss_v3"):
                vector = (sc.get(key) or {}).get("vectorString") if isinstance(sc, Mapping) else None
                if isinstance(vector, str):
                    out.append(vector)
    return out


def _cpe_escape(value: str) -> str:
    return re.sub(r"([^0-9A-Za-z._\-*])", r"\\\1", value)


def _may_contain(constraints: Any, version: str) -> bool:
    """Could any vulnerable criteria ([version, update, startIncl, startExcl, endIncl, endExcl], as the
    store indexes them) hold `version`? True whenever unsure: `evaluate` decides for real."""
    if not version or not isinstance(constraints, list):
        return True
    try:
        ours = Version(version)
    except InvalidVersion:
        return True
    for entry in constraints:
        try:
            ver, update, *bounds = entry
            if ver in (ANY, "-", "") or update not in (ANY, "-", ""):
                if ver != ANY or version_in(
                    ours,
                    start_including=bounds[0],
                    start_excluding=bounds[1],
                    end_including=bounds[2],
                    end_excluding=bounds[3],
                ):
                    return True
            elif Version(ver.replace("\\", "")) == ours:
                return True
        except (InvalidVersion, ValueError, TypeError, IndexError):
            return True
    return False


def _configurations(
    record: Vulnerability, cuts: Mapping[str, ProductHit], lean: bool
) -> list[tuple[int, Any]]:
    """The (index, configuration) pairs to decide a target on: the stored slices for it from the feed the
    record's configurations come from (NVD's when merged), else the whole record. No row from that feed
    means its configurations do not name the target."""
    sources = record.source.split("+")
    hit = cuts.get("nvd" if "nvd" in sources else sources[0])
    if hit is not None and hit.packed_slices is not None:
        return hit.slices() or []
    if lean:
        return []
    return list(enumerate(record.configurations))


def _criteria_for(configurations: Iterable[Any], t: _Target | None) -> list[Cpe]:
    """The vulnerable criteria of a configuration naming the target, in their own CPE spelling; with no
    target, the platform (`vulnerable: false`) criteria."""
    out: dict[tuple[str, str, str], Cpe] = {}
    needle = f":{t.vendor}:{t.product}:" if t is not None else ""
    stack = list(configurations)
    while stack:
        node = stack.pop()
        if not isinstance(node, dict | Mapping):  # dict first: the abc check is slow
            continue
        for m in node.get("cpeMatch") or []:
            crit = m.get("criteria") if isinstance(m, dict | Mapping) else None
            if not isinstance(crit, str) or bool(m.get("vulnerable")) != (t is not None):
                continue
            if t is not None and needle not in crit.lower().replace("\\", ""):
                continue  # most criteria of a long configuration are other products: skip parsing them
            if t is None or cpe_vendor_product(crit) == (t.vendor, t.product):
                try:
                    c = Cpe.parse(crit)
                except CpeError:
                    continue
                out.setdefault((c.part, c.vendor, c.product), c)
        stack.extend(node.get("nodes") or [])
    return list(out.values())


def _target_sw_conflict(subject: Subject, evidence: Iterable[Any]) -> str | None:
    """A criteria for another runtime (`target_sw` node.js, java) than the component's ecosystem."""
    if not subject.languages:
        return None
    for e in evidence:
        sw = Cpe.parse(e.criteria).target_sw
        if sw in TARGET_SW and TARGET_SW[sw] not in subject.languages:
            return (
                f"criteria {e.criteria} is for {sw}; the component is {'/'.join(sorted(subject.languages))}"
            )
    return None


def _usable_cna(record: Vulnerability) -> bool:
    return any(
        name_key(str(e.get("product") or e.get("packageName") or "")) not in ("", "n/a")
        for e in record.affected
    )


_PREFIX = re.compile(r"^([A-Za-z]{1,2})(?=\d)")


def _align(version: str, entry: Mapping[str, Any]) -> str:
    """`0.13c` against bounds written `R0.16`: give ours the same letter prefix."""
    if not version or _PREFIX.match(version):
        return version
    for v in entry.get("versions") or []:
        if not isinstance(v, Mapping):
            continue
        for key in ("lessThan", "lessThanOrEqual", "version"):
            m = _PREFIX.match(str(v.get(key) or ""))
            if m:
                return m.group(1) + version
    return version


def _osv_affects(adv: OsvAdvisory, ecosystem: str, name: str, version: str) -> str | None:
    try:
        ours = Version(version)
    except InvalidVersion:
        return None
    for a in adv.affected:
        if a.ecosystem.lower() != ecosystem.lower() or a.package.lower() != name.lower():
            continue
        if version in a.versions:
            return f"listed version {version}"
        for r in a.ranges:
            if r.get("type") == "GIT":
                continue
            inside, start = False, ""
            for ev in r.get("events") or []:
                try:
                    if "introduced" in ev:
                        start = str(ev["introduced"])
                        inside = start == "0" or Version(start) <= ours
                    elif "fixed" in ev and inside and ours < Version(str(ev["fixed"])):
                        return f">= {start} < {ev['fixed']} ({r.get('type')})"
                    elif "last_affected" in ev and inside and ours <= Version(str(ev["last_affected"])):
                        return f">= {start} <= {ev['last_affected']} ({r.get('type')})"
                except InvalidVersion:
                    continue
            if inside and not any("fixed" in ev or "last_affected" in ev for ev in r.get("events") or []):
                return f">= {start} (no fix)"
    return None


class _OtherLanguage(Exception):
    """The description bounds versions only for products in languages the component is not."""


def _description_range(subject: Subject, text: str) -> tuple[list[str], str] | None:
    """(upper bounds, clause) a description gives for this subject, or None when it names the subject in
    no sentence with a version bound, or its bounds are for other languages only."""
    patterns = [name_pattern(n) for n in name_variants(subject)]
    starts_with_name = any(p.match(text.strip()) for p in patterns)
    clauses: list[tuple[str, list[str], set[str]]] = []
    for sentence in _SENTENCE.split(text):
        if not (starts_with_name or any(p.search(sentence) for p in patterns)):
            continue
        for clause in re.split(r"[,;]\s+", sentence):
            bounds = []
            for m in _BOUND.finditer(clause):
                if m.group("v2"):
                    bounds.append(f"<= {m.group('v2')}")
                    continue
                op = "<=" if m.group("op").lower().startswith(("through", "up to", "<=")) else "<"
                more = re.findall(_VERSION, m.group("more") or "")
                bounds += [f"{op} {v}" for v in (m.group("v"), *more)]
            if bounds:
                clauses.append((clause.strip(), bounds, text_languages(clause)))
    if not clauses:
        return None
    if subject.languages:
        ours = [c for c in clauses if c[2] & subject.languages]
        if ours:
            clauses = ours
        elif all(c[2] for c in clauses):
            langs = "/".join(sorted(set().union(*(c[2] for c in clauses))))
            raise _OtherLanguage(f"every version bound in the description is for {langs} products")
        else:
            clauses = [c for c in clauses if not c[2]]
    bounds = [b for c in clauses for b in c[1]]
    return bounds, "; ".join(c[0] for c in clauses)


def _below_bounds(version: str, bounds: list[str]) -> bool:
    """Inside "before A and B" (A < B): below A, or on B's release line and below B."""
    try:
        ours = Version(version)
        parsed = sorted(
            (
                (Version(b[3:].strip() if b.startswith("<=") else b[2:].strip()), b.startswith("<="))
                for b in bounds
            ),
            key=lambda x: x[0],
        )
    except InvalidVersion:
        return False
    if not parsed:
        return False

    def under(limit: Version, inclusive: bool) -> bool:
        return ours < limit or (inclusive and ours == limit)

    lowest = parsed[0]
    if under(*lowest):
        return True
    major = str(ours).split(".")[0]
    return any(str(v).split(".")[0] == major and under(v, inc) for v, inc in parsed[1:])
