"""CERT/CC SSVC decisions — deployer (per device) and supplier (per product) — with their reasons.

The decision tables are data (data/ssvc/decision_tables.yaml, transcribed from CERT/CC's certcc-ssvc
export); how medsentry derives each decision point from the facts it has is data too
(data/ssvc/inputs.yaml). This module only looks values up, so every outcome can be checked by hand
against the published table.

Deployer tree (Patch Application Priority): Exploitation × System Exposure × Automatable × Human Impact
-> Defer / Scheduled / Out-of-Cycle / Immediate, where
  - Exploitation: KEV listing -> Active; else the strongest of a CISA vulnrichment / NVD `ssvcV203`
    assessment and EPSS (>= the threshold in inputs.yaml -> Public PoC);
  - System Exposure: the `exposure_hint` the network inventory passes in (internet / vlan / hospital /
    no_listener ...), a stated default otherwise;
  - Automatable: vulnrichment, else CVSS 4.0's AU metric, else a CVSS heuristic (inputs.yaml);
  - Human Impact: Safety Impact × Mission Impact of the device class (data/taxonomy.yaml) through the
    Human Impact table.
Supplier tree (Patch Development Priority): Exploitation × Utility (Automatable × Value Density) ×
Technical Impact × Public Safety Impact (from the Safety Impact of the product's device class).

Any decision point can also be given directly (`given={"System Exposure": "open"}`); it is then reported
as given by the caller. Every result is an `Explained`: the decision, the table used, and each decision
point's value with where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from medsentry.identify import taxonomy
from medsentry.vulns.prioritize.cvss import CvssScore, CvssVectorError, score

EXPLOITATION = "Exploitation"
EXPOSURE = "System Exposure"
AUTOMATABLE = "Automatable"
HUMAN_IMPACT = "Human Impact"
SAFETY_IMPACT = "Safety Impact"
MISSION_IMPACT = "Mission Impact"
TECHNICAL_IMPACT = "Technical Impact"
VALUE_DENSITY = "Value Density"
UTILITY = "Utility"
PUBLIC_SAFETY_IMPACT = "Public Safety Impact"

# Names callers (and CISA's own guide) use for the same decision points.
_POINT_ALIASES = {"exposure": EXPOSURE, "technicalimpact": TECHNICAL_IMPACT}


class SsvcError(ValueError):
    """An unknown decision point or value, or a decision point without a value."""


@dataclass(frozen=True, slots=True)
class Point:
    """One decision point's value and the evidence or rule it came from."""

    name: str  # "Exploitation"
    value: str  # the table's value name, e.g. "Public PoC"
    key: str  # the table's value key, e.g. "P"
    source: str  # human-readable provenance
    via: Explained | None = None  # the sub-decision that produced it (Human Impact, Utility, ...)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value, "source": self.source}
        if self.via is not None:
            out["via"] = self.via.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class Explained:
    decision: str  # outcome value name, e.g. "Out-of-Cycle"
    tree: str  # "Deployer Patch Application Priority"
    table: str  # "ssvc:DT_DP:1.0.0"
    points: tuple[Point, ...] = field(default_factory=tuple)

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def reasons(self) -> list[str]:
        out = [f"SSVC {self.tree} ({self.table}): {self.decision}"]
        out += [f"  {p.name} = {p.value} ({p.source})" for p in self.points]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "tree": self.tree,
            "table": self.table,
            "points": [p.to_dict() for p in self.points],
        }


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    source: str
    points: tuple[str, ...]  # input decision point names, table column order
    outcome: str  # outcome decision point name
    values: dict[str, dict[str, str]]  # decision point name -> value key -> value name
    rows: dict[tuple[str, ...], str]  # input keys -> outcome key

    def decide(self, points: list[Point]) -> Explained:
        by_name = {p.name: p for p in points}
        missing = [n for n in self.points if n not in by_name]
        if missing:
            raise SsvcError(f"{self.name}: no value for {', '.join(missing)}")
        keys = tuple(by_name[n].key for n in self.points)
        try:
            outcome = self.rows[keys]
        except KeyError:
            raise SsvcError(f"{self.name}: no row for {dict(zip(self.points, keys, strict=True))}") from None
        return Explained(
            self.values[self.outcome][outcome], self.name, self.source, tuple(by_name[n] for n in self.points)
        )


@cache
def tables() -> dict[str, Table]:
    doc = yaml.safe_load((files("medsentry") / "data" / "ssvc" / "decision_tables.yaml").read_text("utf-8"))
    out = {}
    for short, t in doc["tables"].items():
        names = [dp["name"] for dp in t["decision_points"]]
        values = {
            dp["name"]: {str(k): str(v) for k, v in dp["values"].items()} for dp in t["decision_points"]
        }
        rows = {tuple(str(v) for v in row[:-1]): str(row[-1]) for row in t["rows"]}
        out[short] = Table(t["name"], t["source"], tuple(names[:-1]), names[-1], values, rows)
    return out


@cache
def rules() -> dict[str, Any]:
    return yaml.safe_load((files("medsentry") / "data" / "ssvc" / "inputs.yaml").read_text("utf-8"))


@cache
def _value_index() -> dict[str, dict[str, str]]:
    """Decision point name -> every accepted spelling (lower case) -> value key."""
    index: dict[str, dict[str, str]] = {}
    for table in tables().values():
        for point, values in table.values.items():
            spellings = index.setdefault(point, {})
            for key, name in values.items():
                spellings[key.lower()] = key
                spellings[name.lower()] = key
    for point, aliases in rules()["aliases"].items():
        index.setdefault(point, {}).update({str(a).lower(): str(k) for a, k in aliases.items()})
    return index


def point_name(name: str) -> str:
    index = _value_index()
    if name in index:
        return name
    folded = name.replace(" ", "").replace("_", "").lower()
    for known in index:
        if known.replace(" ", "").lower() == folded:
            return known
    if folded in _POINT_ALIASES:
        return _POINT_ALIASES[folded]
    raise SsvcError(f"unknown SSVC decision point {name!r}")


def make_point(name: str, value: str, source: str, via: Explained | None = None) -> Point:
    """A Point from any accepted spelling of the decision point and value; SsvcError if unknown."""
    name = point_name(name)
    key = _value_index()[name].get(str(value).strip().lower())
    if key is None:
        raise SsvcError(f"{value!r} is not a value of SSVC {name}")
    display = next(t.values[name][key] for t in tables().values() if name in t.values)
    return Point(name, display, key, source, via)


# --- evidence from CVE records -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Vulnrichment:
    """What CISA's ADP container (or NVD's `ssvcV203`) says about one CVE."""

    options: dict[str, str]  # decision point name -> value as published ("active", "yes", ...)
    role: str = ""  # "CISA Coordinator"
    timestamp: str = ""
    kev_date: str | None = None  # dateAdded of the `kev` entry, when the ADP lists one
    source: str = "CISA-ADP vulnrichment"


def _options(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for option in raw if isinstance(raw, list) else []:
        if isinstance(option, Mapping):
            for name, value in option.items():
                try:
                    out[point_name(str(name))] = str(value)
                except SsvcError:
                    continue  # a decision point this version does not use; ignored, not fatal
    return out


def vulnrichment(record: Mapping[str, Any]) -> Vulnrichment | None:
    """SSVC (and KEV) from a CVE 5 record with a CISA ADP container, or from an NVD 2.0 item."""
    cve = record.get("cve")
    if isinstance(cve, Mapping):  # NVD API 2.0 item
        metrics = cve.get("metrics")
        entries = metrics.get("ssvcV203") if isinstance(metrics, Mapping) else None
        for entry in entries if isinstance(entries, list) else []:
            data = entry.get("ssvcData") if isinstance(entry, Mapping) else None
            if isinstance(data, Mapping):
                return Vulnrichment(
                    _options(data.get("options")),
                    str(data.get("role", "")),
                    str(data.get("timestamp", "")),
                    None,
                    "NVD ssvcV203 (CISA-ADP)",
                )
        return None
    containers = record.get("containers")
    adps = containers.get("adp") if isinstance(containers, Mapping) else None
    found: Vulnrichment | None = None
    kev_date: str | None = None
    for adp in adps if isinstance(adps, list) else []:
        for metric in adp.get("metrics", []) if isinstance(adp, Mapping) else []:
            other = metric.get("other") if isinstance(metric, Mapping) else None
            if not isinstance(other, Mapping) or not isinstance(other.get("content"), Mapping):
                continue
            content = other["content"]
            if other.get("type") == "ssvc" and found is None:
                found = Vulnrichment(
                    _options(content.get("options")),
                    str(content.get("role", "")),
                    str(content.get("timestamp", "")),
                )
            elif other.get("type") == "kev":
                kev_date = str(content.get("dateAdded", "")) or "listed"
    if found is None and kev_date is None:
        return None
    found = found or Vulnrichment({})
    return Vulnrichment(found.options, found.role, found.timestamp, kev_date, found.source)


# --- decision points from facts --------------------------------------------------------------------------

_ORDER = {EXPLOITATION: ("N", "P", "A")}


def exploitation(
    *, kev: bool = False, epss: float | None = None, assessed: Vulnrichment | None = None
) -> Point:
    """The strongest exploitation evidence among KEV, an SSVC assessment and EPSS (see inputs.yaml)."""
    r = rules()["exploitation"]
    candidates: list[Point] = []
    if kev:
        candidates.append(make_point(EXPLOITATION, r["kev"], "listed in CISA KEV"))
    elif assessed is not None and assessed.kev_date:
        candidates.append(
            make_point(
                EXPLOITATION, r["kev"], f"CISA KEV entry in {assessed.source} (added {assessed.kev_date})"
            )
        )
    if assessed is not None and EXPLOITATION in assessed.options:
        when = f", {assessed.timestamp[:10]}" if assessed.timestamp else ""
        candidates.append(
            make_point(
                EXPLOITATION, assessed.options[EXPLOITATION], f"{assessed.source} ({assessed.role}{when})"
            )
        )
    if epss is not None:
        threshold = float(r["epss_poc_threshold"])
        if epss >= threshold:
            candidates.append(make_point(EXPLOITATION, "P", f"EPSS {epss:.4f} >= {threshold} (inputs.yaml)"))
        else:
            candidates.append(
                make_point(EXPLOITATION, "N", f"EPSS {epss:.4f} < {threshold}, no other evidence")
            )
    if not candidates:
        return make_point(EXPLOITATION, "N", "no KEV listing, SSVC assessment or EPSS score known")
    return max(candidates, key=lambda p: _ORDER[EXPLOITATION].index(p.key))


def exposure(hint: str | None) -> Point:
    r = rules()["exposure"]
    if hint is None:
        return make_point(
            EXPOSURE, r["default"], "assumed: no network exposure evidence (inputs.yaml default)"
        )
    key = r["hints"].get(hint.strip().lower())
    if key is None:
        raise SsvcError(f"unknown exposure hint {hint!r}; known: {', '.join(r['hints'])}")
    return make_point(EXPOSURE, key, f"network evidence: exposure_hint={hint!r}")


def _as_score(cvss: CvssScore | str | None) -> CvssScore | None:
    if cvss is None or isinstance(cvss, CvssScore):
        return cvss
    try:
        return score(cvss)
    except CvssVectorError:
        return None  # a bad vector only removes this evidence; the caller's cvss module reports it


def _matches(metrics: dict[str, str], wanted: Mapping[str, str]) -> bool:
    return all(metrics.get(k) == v for k, v in wanted.items())


def automatable(*, assessed: Vulnrichment | None = None, cvss: CvssScore | str | None = None) -> Point:
    if assessed is not None and AUTOMATABLE in assessed.options:
        return make_point(AUTOMATABLE, assessed.options[AUTOMATABLE], f"{assessed.source} ({assessed.role})")
    scored = _as_score(cvss)
    if scored is None:
        return make_point(AUTOMATABLE, "N", "assumed: no SSVC assessment and no CVSS vector")
    m = scored.metrics
    if scored.version == "4.0" and m.get("AU") in ("Y", "N"):
        return make_point(AUTOMATABLE, m["AU"], f"CVSS 4.0 supplemental metric AU:{m['AU']}")
    wanted = rules()["automatable"]["cvss_v4" if scored.version == "4.0" else "cvss_v3"]
    hit = _matches(m, wanted)
    rule = "/".join(f"{k}:{v}" for k, v in wanted.items())
    return make_point(
        AUTOMATABLE,
        "Y" if hit else "N",
        f"heuristic: CVSS {scored.version} vector {'has' if hit else 'lacks'} {rule} (inputs.yaml)",
    )


def technical_impact(*, assessed: Vulnrichment | None = None, cvss: CvssScore | str | None = None) -> Point:
    if assessed is not None and TECHNICAL_IMPACT in assessed.options:
        return make_point(
            TECHNICAL_IMPACT, assessed.options[TECHNICAL_IMPACT], f"{assessed.source} ({assessed.role})"
        )
    scored = _as_score(cvss)
    if scored is None:
        return make_point(TECHNICAL_IMPACT, "T", "assumed Total: no SSVC assessment and no CVSS vector")
    wanted = rules()["technical_impact"]["cvss_v4_total" if scored.version == "4.0" else "cvss_v3_total"]
    hit = _matches(scored.metrics, wanted)
    rule = "/".join(f"{k}:{v}" for k, v in wanted.items())
    return make_point(
        TECHNICAL_IMPACT,
        "T" if hit else "P",
        f"heuristic: CVSS {scored.version} vector {'has' if hit else 'lacks'} {rule} (inputs.yaml)",
    )


def _device_class(name: str | None) -> tuple[taxonomy.DeviceClass, str]:
    known = taxonomy.classes()
    if name is None:
        return known[taxonomy.UNKNOWN], f"no device class given: defaults of class {taxonomy.UNKNOWN!r}"
    if name not in known:
        raise SsvcError(f"unknown device class {name!r}; known: {', '.join(known)}")
    return known[name], f"device class {name!r}"


def human_impact(
    device_class: str | None = None, *, safety_impact: str | None = None, mission_impact: str | None = None
) -> Point:
    """Human Impact = Safety Impact × Mission Impact (Human Impact table), defaults from the device class."""
    cls, why = _device_class(device_class)
    safety = (
        make_point(SAFETY_IMPACT, safety_impact, "given")
        if safety_impact
        else make_point(SAFETY_IMPACT, cls.safety_impact, f"{why} (data/taxonomy.yaml)")
    )
    mission = (
        make_point(MISSION_IMPACT, mission_impact, "given")
        if mission_impact
        else make_point(MISSION_IMPACT, cls.mission_impact, f"{why} (data/taxonomy.yaml)")
    )
    sub = tables()["human_impact"].decide([safety, mission])
    return make_point(
        HUMAN_IMPACT, sub.decision, f"Safety Impact {safety.value} × Mission Impact {mission.value}", sub
    )


def value_density(device_class: str | None) -> Point:
    r = rules()["value_density"]
    if device_class in r["concentrated"]:
        return make_point(
            VALUE_DENSITY, "C", f"device class {device_class!r} is listed concentrated (inputs.yaml)"
        )
    return make_point(VALUE_DENSITY, r["default"], f"device class {device_class!r}: default (inputs.yaml)")


def utility(auto: Point, density: Point) -> Point:
    sub = tables()["utility"].decide([auto, density])
    return make_point(UTILITY, sub.decision, f"Automatable {auto.value} × Value Density {density.value}", sub)


def public_safety_impact(device_class: str | None = None, *, safety_impact: str | None = None) -> Point:
    cls, why = _device_class(device_class)
    safety = (
        make_point(SAFETY_IMPACT, safety_impact, "given")
        if safety_impact
        else make_point(SAFETY_IMPACT, cls.safety_impact, f"{why} (data/taxonomy.yaml)")
    )
    sub = tables()["public_safety_impact"].decide([safety])
    return make_point(PUBLIC_SAFETY_IMPACT, sub.decision, f"Safety Impact {safety.value}", sub)


# --- the two trees -----------------------------------------------------------------------------------------


def _given(given: Mapping[str, str] | None, tree: str, usable: tuple[str, ...]) -> dict[str, Point]:
    fixed = {
        point_name(name): make_point(name, value, "given by the caller")
        for name, value in (given or {}).items()
    }
    unused = [name for name in fixed if name not in usable]
    if unused:  # silently ignoring a value the caller set would misstate the decision's inputs
        raise SsvcError(f"{tree} does not use {', '.join(unused)}; it takes {', '.join(usable)}")
    return fixed


def deployer(
    *,
    kev: bool = False,
    epss: float | None = None,
    assessed: Vulnrichment | Mapping[str, Any] | None = None,
    cvss: CvssScore | str | None = None,
    exposure_hint: str | None = None,
    device_class: str | None = None,
    given: Mapping[str, str] | None = None,
) -> Explained:
    """Deployer Patch Application Priority for one vulnerability on one device."""
    facts = _assessment(assessed)
    usable = (EXPLOITATION, EXPOSURE, AUTOMATABLE, HUMAN_IMPACT, SAFETY_IMPACT, MISSION_IMPACT)
    fixed = _given(given, "the deployer tree", usable)
    safety, mission = fixed.get(SAFETY_IMPACT), fixed.get(MISSION_IMPACT)
    points = [
        fixed.get(EXPLOITATION) or exploitation(kev=kev, epss=epss, assessed=facts),
        fixed.get(EXPOSURE) or exposure(exposure_hint),
        fixed.get(AUTOMATABLE) or automatable(assessed=facts, cvss=cvss),
        fixed.get(HUMAN_IMPACT)
        or human_impact(
            device_class,
            safety_impact=safety.value if safety else None,
            mission_impact=mission.value if mission else None,
        ),
    ]
    return tables()["deployer"].decide(points)


def supplier(
    *,
    kev: bool = False,
    epss: float | None = None,
    assessed: Vulnrichment | Mapping[str, Any] | None = None,
    cvss: CvssScore | str | None = None,
    device_class: str | None = None,
    given: Mapping[str, str] | None = None,
) -> Explained:
    """Supplier Patch Development Priority for one vulnerability in one product (of `device_class`)."""
    facts = _assessment(assessed)
    usable = (
        EXPLOITATION,
        UTILITY,
        AUTOMATABLE,
        VALUE_DENSITY,
        TECHNICAL_IMPACT,
        PUBLIC_SAFETY_IMPACT,
        SAFETY_IMPACT,
    )
    fixed = _given(given, "the supplier tree", usable)
    safety = fixed.get(SAFETY_IMPACT)
    util = fixed.get(UTILITY) or utility(
        fixed.get(AUTOMATABLE) or automatable(assessed=facts, cvss=cvss),
        fixed.get(VALUE_DENSITY) or value_density(device_class),
    )
    points = [
        fixed.get(EXPLOITATION) or exploitation(kev=kev, epss=epss, assessed=facts),
        util,
        fixed.get(TECHNICAL_IMPACT) or technical_impact(assessed=facts, cvss=cvss),
        fixed.get(PUBLIC_SAFETY_IMPACT)
        or public_safety_impact(device_class, safety_impact=safety.value if safety else None),
    ]
    return tables()["supplier"].decide(points)


def _assessment(assessed: Vulnrichment | Mapping[str, Any] | None) -> Vulnrichment | None:
    """Accept a Vulnrichment, a raw CVE 5 / NVD record, or an options dict (records.Vulnerability.ssvc)."""
    if assessed is None or isinstance(assessed, Vulnrichment):
        return assessed
    if "containers" in assessed or "cve" in assessed:
        return vulnrichment(assessed)
    return Vulnrichment({point_name(str(k)): str(v) for k, v in assessed.items()}, source="SSVC assessment")
