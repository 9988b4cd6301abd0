"""VEX triage statements: one neutral model, read and written as CycloneDX VEX, OpenVEX 0.2.0 and CSAF VEX.

A `VexStatement` says what one vulnerability means for one subject (a purl, CPE, CycloneDX bom-ref or
BOM-Link, or a product name), optionally narrowed to a version or a `vers:` range of it.

Status
    ======================  ======================  =====================================
    neutral / OpenVEX       CycloneDX analysis      CSAF product_status
    ======================  ======================  =====================================
    affected                exploitable             known_affected (first/last_affected)
    not_affected            not_affected            known_not_affected
                            (false_positive read)
    fixed                   resolved                fixed (first_fixed read)
                            (resolved_with_pedigree read)
    under_investigation     in_triage               under_investigation
    ======================  ======================  =====================================

    CSAF `recommended` is not a VEX status and is ignored.

Justification -- the neutral value keeps whichever label its source used (the two vocabularies are
disjoint); a format that lacks the label gets the nearest one natively and the exact one in its extension.

    CycloneDX -> OpenVEX / CSAF flag label
        code_not_present                 -> vulnerable_code_not_present
        code_not_reachable               -> vulnerable_code_not_in_execute_path
        requires_configuration           -> vulnerable_code_cannot_be_controlled_by_adversary
        requires_environment             -> vulnerable_code_cannot_be_controlled_by_adversary
        requires_dependency              -> component_not_present
        protected_by_compiler            -> inline_mitigations_already_exist
        protected_at_runtime             -> inline_mitigations_already_exist
        protected_at_perimeter           -> inline_mitigations_already_exist
        protected_by_mitigating_control  -> inline_mitigations_already_exist
    OpenVEX / CSAF flag label -> CycloneDX
        component_not_present                              -> code_not_present
        vulnerable_code_not_present                        -> code_not_present
        vulnerable_code_not_in_execute_path                -> code_not_reachable
        vulnerable_code_cannot_be_controlled_by_adversary  -> requires_environment
        inline_mitigations_already_exist                   -> protected_by_mitigating_control

Other fields
    ===================  ===========================  =====================  ==============================
    neutral              CycloneDX                    OpenVEX                CSAF
    ===================  ===========================  =====================  ==============================
    vulnerability        vulnerabilities[].id         vulnerability.name     cve, else ids[0].text
    subject              affects[].ref                products[].@id         helper purl > cpe > product
                                                      (+identifiers)         name
    version              affects[].versions[]         (extension)            product_version(_range) branch
                         .version / .range
    impact_statement     analysis.detail              impact_statement       threats[category=impact]
    action_statement     recommendation               action_statement       remediations[].details
    responses            analysis.response            (extension)            remediations[].category
    timestamp            analysis.lastUpdated         statement timestamp    flags/threats/remediations
                         (read: firstIssued, updated, (else document)        date, else tracking
                         published)                                          current_release_date
    author               metadata.authors/supplier    document author        publisher.name
    ===================  ===========================  =====================  ==============================

    responses (CycloneDX vocabulary) <-> CSAF remediation category: update <-> vendor_fix,
    workaround_available <-> workaround (mitigation read as workaround_available), will_not_fix <->
    no_fix_planned, can_not_fix <-> none_available; rollback has no CSAF category (extension).

Lossless round trip: every writer writes the native fields, reads its own output back, and whatever the
native form did not carry (an exact justification label, a version or responses in OpenVEX, a
per-statement author, a missing timestamp, CSAF's "all products" subject) goes into an extension that the
readers apply after the native fields: in CycloneDX a `vulnerabilities[].properties` entry named
``medsentry:vex`` holding ``{field: value}``; in OpenVEX (whose schema forbids extra members)
`status_notes` as ``medsentry:vex <json>``; in CSAF a vulnerability note (category `other`, title
``medsentry:vex``) holding ``{product_id: {field: value}}``. `source` (which file a statement came from) is
provenance, not content: it is not compared and not written.

Document-level content that is no triage decision (CVSS ratings, descriptions, references, product
hierarchy beyond subject/version, CycloneDX `affects[].versions[].status` when the analysis has a state) is
not carried.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CDX_TO_OPENVEX",
    "OPENVEX_TO_CDX",
    "STATUSES",
    "BomLink",
    "VexError",
    "VexStatement",
    "dump_vex",
    "parse_bom_link",
    "parse_vex",
    "read_vex",
    "to_csaf",
    "to_cyclonedx",
    "to_openvex",
]

Status = Literal["affected", "not_affected", "fixed", "under_investigation"]
STATUSES: tuple[str, ...] = ("affected", "not_affected", "fixed", "under_investigation")

CDX_TO_OPENVEX = {
    "code_not_present": "vulnerable_code_not_present",
    "code_not_reachable": "vulnerable_code_not_in_execute_path",
    "requires_configuration": "vulnerable_code_cannot_be_controlled_by_adversary",
    "requires_dependency": "component_not_present",
    "requires_environment": "vulnerable_code_cannot_be_controlled_by_adversary",
    "protected_by_compiler": "inline_mitigations_already_exist",
    "protected_at_runtime": "inline_mitigations_already_exist",
    "protected_at_perimeter": "inline_mitigations_already_exist",
    "protected_by_mitigating_control": "inline_mitigations_already_exist",
}
OPENVEX_TO_CDX = {
    "component_not_present": "code_not_present",
    "vulnerable_code_not_present": "code_not_present",
    "vulnerable_code_not_in_execute_path": "code_not_reachable",
    "vulnerable_code_cannot_be_controlled_by_adversary": "requires_environment",
    "inline_mitigations_already_exist": "protected_by_mitigating_control",
}
CDX_STATE = {
    "affected": "exploitable",
    "not_affected": "not_affected",
    "fixed": "resolved",
    "under_investigation": "in_triage",
}
CDX_STATE_READ = {
    "exploitable": "affected",
    "not_affected": "not_affected",
    "false_positive": "not_affected",
    "resolved": "fixed",
    "resolved_with_pedigree": "fixed",
    "in_triage": "under_investigation",
}
CDX_RESPONSES = ("can_not_fix", "will_not_fix", "update", "rollback", "workaround_available")
CSAF_STATUS_READ = {
    "known_affected": "affected",
    "first_affected": "affected",
    "last_affected": "affected",
    "known_not_affected": "not_affected",
    "fixed": "fixed",
    "first_fixed": "fixed",
    "under_investigation": "under_investigation",
}
CSAF_STATUS = {
    "affected": "known_affected",
    "not_affected": "known_not_affected",
    "fixed": "fixed",
    "under_investigation": "under_investigation",
}
CSAF_REMEDIATION = {
    "update": "vendor_fix",
    "workaround_available": "workaround",
    "will_not_fix": "no_fix_planned",
    "can_not_fix": "none_available",
}
CSAF_REMEDIATION_READ = {**{v: k for k, v in CSAF_REMEDIATION.items()}, "mitigation": "workaround_available"}
OPENVEX_CONTEXT = "https://openvex.dev/ns/v0.2.0"
EXT = "medsentry:vex"
CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")


class VexError(ValueError):
    """Malformed VEX input; `location` is a JSON pointer (or "line L column C" for JSON syntax)."""

    def __init__(self, source: str, location: str, message: str) -> None:
        self.source = source
        self.location = location
        self.message = message
        super().__init__(f"{source}: {location or '/'}: {message}")


@dataclass(frozen=True)
class VexStatement:
    vulnerability: str
    subject: str  # "" = every product of the author (a CycloneDX vulnerability without affects)
    status: str  # one of STATUSES
    version: str = ""  # "" = every version of subject; "2.4" or a "vers:" range
    justification: str = ""  # a CycloneDX or an OpenVEX/CSAF label, see the module docstring
    impact_statement: str = ""
    action_statement: str = ""
    responses: tuple[str, ...] = ()  # CycloneDX analysis.response vocabulary
    timestamp: datetime | None = None
    author: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown VEX status {self.status!r}")

    def sort_key(self) -> tuple[Any, ...]:
        """A total order (a timestamp may be None, which datetimes do not compare with)."""
        stamp = _fmt_time(self.timestamp) if self.timestamp is not None else ""
        return (
            self.vulnerability,
            self.subject,
            self.version,
            self.status,
            self.justification,
            self.impact_statement,
            self.action_statement,
            self.responses,
            stamp,
            self.author,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form (for the store); `from_dict` inverts it."""
        return {
            "vulnerability": self.vulnerability, "subject": self.subject, "status": self.status,
            "version": self.version, "justification": self.justification,
            "impact_statement": self.impact_statement, "action_statement": self.action_statement,
            "responses": list(self.responses),
            "timestamp": _fmt_time(self.timestamp) if self.timestamp is not None else None,
            "author": self.author, "source": self.source,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VexStatement:
        stamp = d.get("timestamp")
        return cls(**{**d, "responses": tuple(d.get("responses", ())),
                      "timestamp": _parse_time(stamp) if stamp else None})  # fmt: skip

    @property
    def openvex_justification(self) -> str:
        return CDX_TO_OPENVEX.get(self.justification, self.justification)

    @property
    def cyclonedx_justification(self) -> str:
        return OPENVEX_TO_CDX.get(self.justification, self.justification)


@dataclass(frozen=True)
class BomLink:
    """A CycloneDX BOM-Link `urn:cdx:<serial uuid>/<version>#<bom-ref>`: which component of which SBOM."""

    serial: str  # "urn:uuid:..." as in the SBOM's serialNumber
    version: int
    bom_ref: str  # "" when the link names the whole BOM


BOM_LINK = re.compile(r"^urn:cdx:([0-9a-fA-F-]{36})/(\d+)(?:#(.+))?$")


def parse_bom_link(ref: str) -> BomLink | None:
    """The parts of a BOM-Link subject, or None for a plain bom-ref, purl, CPE or name."""
    from urllib.parse import unquote

    m = BOM_LINK.match(ref)
    if m is None:
        return None
    return BomLink(f"urn:uuid:{m.group(1).lower()}", int(m.group(2)), unquote(m.group(3) or ""))


# the fields the extension may carry, in the order they are written
EXT_FIELDS = (
    "subject",
    "version",
    "justification",
    "impact_statement",
    "action_statement",
    "responses",
    "timestamp",
    "author",
)


# --- entry points ------------------------------------------------------------------------------------


def read_vex(path: str | Path, problems: list[str] | None = None) -> list[VexStatement]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise VexError(str(path), "", f"cannot read: {e}") from e
    return parse_vex(text, str(path), problems)


def parse_vex(
    data: str | bytes | dict[str, Any], source: str = "<memory>", problems: list[str] | None = None
) -> list[VexStatement]:
    """Statements of a CycloneDX, OpenVEX or CSAF document (the format is recognised from its content).

    Malformed documents raise `VexError`; entries that are well-formed but unusable are skipped and
    described in `problems` when a list is given.
    """
    doc = data if isinstance(data, dict) else _load_json(data, source)
    if not isinstance(doc, dict):
        raise VexError(source, "", "not a JSON object")
    ctx = _Ctx(source, problems)
    document = doc.get("document")
    if doc.get("bomFormat") == "CycloneDX":
        statements = _read_cdx(doc, ctx)
    elif isinstance(doc.get("@context"), str) and "openvex" in doc["@context"]:
        statements = _read_openvex(doc, ctx)
    elif isinstance(document, dict) and "csaf_version" in document:
        statements = _read_csaf(doc, ctx)
    else:
        raise VexError(source, "", "not a CycloneDX, OpenVEX or CSAF document")
    # a repeated identical statement (CycloneDX examples list a version twice) says nothing new
    return list(dict.fromkeys(statements))


def dump_vex(statements: Iterable[VexStatement], fmt: str, **kw: Any) -> str:
    writers: dict[str, Callable[..., dict[str, Any]]] = {
        "cyclonedx": to_cyclonedx,
        "openvex": to_openvex,
        "csaf": to_csaf,
    }
    if fmt not in writers:
        raise ValueError(f"unknown VEX format {fmt!r}; one of {sorted(writers)}")
    return json.dumps(writers[fmt](list(statements), **kw), indent=2, ensure_ascii=False)


# --- reading helpers: typed access that names the JSON pointer of what is wrong ------------------------


class _Ctx:
    def __init__(self, source: str, problems: list[str] | None = None) -> None:
        self.source = source
        self.problems = problems if problems is not None else []

    def fail(self, ptr: str, message: str) -> VexError:
        return VexError(self.source, ptr, message)

    def obj(self, value: Any, ptr: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(ptr, "expected an object")
        return value

    def arr(self, parent: dict[str, Any], key: str, ptr: str) -> list[Any]:
        value = parent.get(key, [])
        if not isinstance(value, list):
            raise self.fail(f"{ptr}/{key}", "expected an array")
        return value

    def str(self, parent: dict[str, Any], key: str, ptr: str, required: bool = False) -> str:
        value = parent.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or (required and not value):
            raise self.fail(
                f"{ptr}/{key}", "expected a non-empty string" if required else "expected a string"
            )
        return value

    def time(self, parent: dict[str, Any], key: str, ptr: str) -> datetime | None:
        text = self.str(parent, key, ptr)
        if not text:
            return None
        try:
            return _parse_time(text)
        except ValueError as e:
            raise self.fail(f"{ptr}/{key}", f"not an ISO 8601 date-time: {text[:40]!r}") from e


def _load_json(data: str | bytes, source: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        raise VexError(source, f"line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}") from e
    except (RecursionError, UnicodeDecodeError) as e:
        raise VexError(source, "", f"invalid JSON: {type(e).__name__}") from e


def _parse_time(text: str) -> datetime:
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _fmt_time(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ext_encode(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in EXT_FIELDS:
        if k in values:
            v = values[k]
            out[k] = _fmt_time(v) if isinstance(v, datetime) else list(v) if isinstance(v, tuple) else v
    return out


def _ext_apply(st: VexStatement, ext: Any, ctx: _Ctx, ptr: str) -> VexStatement:
    if not isinstance(ext, dict):
        raise ctx.fail(ptr, "extension is not an object")
    changes: dict[str, Any] = {}
    for k in EXT_FIELDS:
        if k not in ext:
            continue
        v = ext[k]
        if k == "timestamp":
            if v is not None and not isinstance(v, str):
                raise ctx.fail(ptr, "extension timestamp is not a string")
            try:
                changes[k] = _parse_time(v) if v else None
            except ValueError as e:
                raise ctx.fail(ptr, "extension timestamp is not ISO 8601") from e
        elif k == "responses":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ctx.fail(ptr, "extension responses is not a list of strings")
            changes[k] = tuple(v)
        elif isinstance(v, str):
            changes[k] = v
        else:
            raise ctx.fail(ptr, f"extension {k} is not a string")
    return replace(st, **changes)


def _diff(want: VexStatement, got: VexStatement) -> dict[str, Any]:
    return {k: getattr(want, k) for k in EXT_FIELDS if getattr(want, k) != getattr(got, k)}


def _group(
    statements: Iterable[VexStatement], key: Callable[[VexStatement], Any]
) -> dict[Any, list[VexStatement]]:
    groups: dict[Any, list[VexStatement]] = {}
    for st in statements:
        groups.setdefault(key(st), []).append(st)
    return groups


def _content(st: VexStatement) -> tuple[Any, ...]:
    """Everything but subject/version: statements sharing it can share one native entry."""
    return (
        st.vulnerability,
        st.status,
        st.justification,
        st.impact_statement,
        st.action_statement,
        st.responses,
        st.timestamp,
        st.author,
    )


def _common_author(statements: list[VexStatement]) -> str:
    authors = [s.author for s in statements if s.author]
    return max(set(authors), key=authors.count) if authors else ""


# --- CycloneDX ------------------------------------------------------------------------------------------


def _cdx_doc_author(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return ""
    authors = meta.get("authors")
    if isinstance(authors, list) and authors and isinstance(authors[0], dict):
        name = authors[0].get("name")
        if isinstance(name, str):
            return name
    for key in ("supplier", "manufacturer", "manufacture"):
        org = meta.get(key)
        if isinstance(org, dict) and isinstance(org.get("name"), str):
            return org["name"]
    return ""


def _cdx_entry(v: dict[str, Any], ptr: str, author: str, ctx: _Ctx) -> Iterator[VexStatement]:
    """Native statements of one `vulnerabilities[]` entry (no extension)."""
    vid = ctx.str(v, "id", ptr, required=True)
    analysis = ctx.obj(v.get("analysis", {}), f"{ptr}/analysis")
    aptr = f"{ptr}/analysis"
    state = ctx.str(analysis, "state", aptr)
    if state and state not in CDX_STATE_READ:
        raise ctx.fail(f"{aptr}/state", f"unknown analysis state {state!r}")
    responses = ctx.arr(analysis, "response", aptr)
    if not all(isinstance(r, str) for r in responses):
        raise ctx.fail(f"{aptr}/response", "expected strings")
    timestamp = None
    for obj, key, p in (
        (analysis, "lastUpdated", aptr),
        (analysis, "firstIssued", aptr),
        (v, "updated", ptr),
        (v, "published", ptr),
    ):
        timestamp = timestamp or ctx.time(obj, key, p)
    base = {
        "vulnerability": vid,
        "justification": ctx.str(analysis, "justification", aptr),
        "impact_statement": ctx.str(analysis, "detail", aptr),
        "action_statement": ctx.str(v, "recommendation", ptr),
        "responses": tuple(responses),
        "timestamp": timestamp,
        "author": author,
        "source": ctx.source,
    }
    affects = ctx.arr(v, "affects", ptr)
    if not affects:
        yield VexStatement(subject="", status=CDX_STATE_READ.get(state, "under_investigation"), **base)
    for i, a in enumerate(affects):
        a_ptr = f"{ptr}/affects/{i}"
        a = ctx.obj(a, a_ptr)
        ref = ctx.str(a, "ref", a_ptr, required=True)
        versions = ctx.arr(a, "versions", a_ptr)
        if not versions:
            yield VexStatement(subject=ref, status=CDX_STATE_READ.get(state, "under_investigation"), **base)
        for j, ver in enumerate(versions):
            v_ptr = f"{a_ptr}/versions/{j}"
            ver = ctx.obj(ver, v_ptr)
            version = ctx.str(ver, "version", v_ptr) or ctx.str(ver, "range", v_ptr)
            if not version:
                raise ctx.fail(v_ptr, "needs a version or a range")
            # without an analysis state the per-version status is all there is
            vstatus = {"affected": "affected", "unaffected": "not_affected"}.get(
                ctx.str(ver, "status", v_ptr)
            )
            status = CDX_STATE_READ.get(state) or vstatus or "under_investigation"
            yield VexStatement(subject=ref, status=status, version=version, **base)


def _cdx_ext(v: dict[str, Any], ptr: str, ctx: _Ctx) -> dict[str, Any] | None:
    props = ctx.arr(v, "properties", ptr)
    for i, p in enumerate(props):
        if isinstance(p, dict) and p.get("name") == EXT:
            value = ctx.str(p, "value", f"{ptr}/properties/{i}")
            try:
                return json.loads(value)
            except (json.JSONDecodeError, RecursionError) as e:
                raise ctx.fail(f"{ptr}/properties/{i}/value", "extension is not JSON") from e
    return None


def _read_cdx(doc: dict[str, Any], ctx: _Ctx) -> Iterator[VexStatement]:
    author = _cdx_doc_author(doc)
    for i, v in enumerate(ctx.arr(doc, "vulnerabilities", "")):
        ptr = f"/vulnerabilities/{i}"
        v = ctx.obj(v, ptr)
        ext = _cdx_ext(v, ptr, ctx)
        for st in _cdx_entry(v, ptr, author, ctx):
            yield st if ext is None else _ext_apply(st, ext, ctx, f"{ptr}/properties")


def to_cyclonedx(statements: list[VexStatement], serial: str = "") -> dict[str, Any]:
    """A standalone CycloneDX 1.6 VEX BOM; statements with equal content share one vulnerability entry."""
    author = _common_author(statements)
    vulns: list[dict[str, Any]] = []
    for group in _group(statements, _content).values():
        first = group[0]
        analysis: dict[str, Any] = {"state": CDX_STATE[first.status]}
        if first.justification:
            analysis["justification"] = first.cyclonedx_justification
        if first.responses:
            analysis["response"] = [r for r in first.responses if r in CDX_RESPONSES]
        if first.impact_statement:
            analysis["detail"] = first.impact_statement
        if first.timestamp is not None:
            analysis["lastUpdated"] = _fmt_time(first.timestamp)
        entry: dict[str, Any] = {"id": first.vulnerability, "analysis": analysis, "affects": []}
        if first.action_statement:
            entry["recommendation"] = first.action_statement
        for subject, members in _group(group, lambda s: s.subject).items():
            if not subject:
                continue  # no affects entry: the statement is about everything the author makes
            ranges = [s.version for s in members if s.version]
            if len(ranges) < len(members):  # a statement about every version of the subject
                entry["affects"].append({"ref": subject})
            if ranges:
                versions = [{"range": r} if r.startswith("vers:") else {"version": r} for r in ranges]
                entry["affects"].append({"ref": subject, "versions": versions})
        if not entry["affects"]:
            del entry["affects"]
        native = next(_cdx_entry(entry, "", author, _Ctx("")))
        diff = _diff(first, replace(native, version=first.version))
        if diff:
            entry["properties"] = [{"name": EXT, "value": json.dumps(_ext_encode(diff), sort_keys=True)}]
        vulns.append(entry)
    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": serial or f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {"timestamp": _fmt_time(_latest(statements))},
        "vulnerabilities": vulns,
    }
    if author:
        doc["metadata"]["authors"] = [{"name": author}]
    return doc


def _latest(statements: list[VexStatement]) -> datetime:
    stamps = [s.timestamp for s in statements if s.timestamp is not None]
    return max(stamps) if stamps else datetime.now(UTC)


# --- OpenVEX ---------------------------------------------------------------------------------------------

_NOTES_EXT = re.compile(r"(?:^|\n)medsentry:vex (\{.*\})\s*$", re.DOTALL)


def _openvex_entry(
    s: dict[str, Any], ptr: str, doc_author: str, doc_time: datetime | None, ctx: _Ctx
) -> Iterator[VexStatement]:
    vuln = s.get("vulnerability")
    if isinstance(vuln, str):  # OpenVEX 0.0.x wrote the id as a plain string
        vid = vuln
    else:
        vid = ctx.str(ctx.obj(vuln, f"{ptr}/vulnerability"), "name", f"{ptr}/vulnerability", required=True)
    status = ctx.str(s, "status", ptr, required=True)
    if status not in STATUSES:
        raise ctx.fail(f"{ptr}/status", f"unknown status {status!r}")
    base = {
        "vulnerability": vid,
        "status": status,
        "justification": ctx.str(s, "justification", ptr),
        "impact_statement": ctx.str(s, "impact_statement", ptr),
        "action_statement": ctx.str(s, "action_statement", ptr),
        "timestamp": ctx.time(s, "timestamp", ptr) or doc_time,
        "author": doc_author,
        "source": ctx.source,
    }
    products = ctx.arr(s, "products", ptr)
    if not products:
        yield VexStatement(subject="", **base)
    for i, p in enumerate(products):
        p_ptr = f"{ptr}/products/{i}"
        p = ctx.obj(p, p_ptr)
        subject = ctx.str(p, "@id", p_ptr)
        if not subject:
            ids = ctx.obj(p.get("identifiers", {}), f"{p_ptr}/identifiers")
            subject = next(
                (x for k in ("purl", "@cpe23", "@cpe22") if isinstance(x := ids.get(k), str) and x), ""
            )
        if not subject:
            raise ctx.fail(p_ptr, "product without @id or identifiers")
        yield VexStatement(subject=subject, **base)


def _read_openvex(doc: dict[str, Any], ctx: _Ctx) -> Iterator[VexStatement]:
    author = ctx.str(doc, "author", "")
    doc_time = ctx.time(doc, "timestamp", "")
    for i, s in enumerate(ctx.arr(doc, "statements", "")):
        ptr = f"/statements/{i}"
        s = ctx.obj(s, ptr)
        notes = ctx.str(s, "status_notes", ptr)
        m = _NOTES_EXT.search(notes)
        ext = None
        if m:
            try:
                ext = json.loads(m.group(1))
            except (json.JSONDecodeError, RecursionError) as e:
                raise ctx.fail(f"{ptr}/status_notes", "extension is not JSON") from e
        for st in _openvex_entry(s, ptr, author, doc_time, ctx):
            yield st if ext is None else _ext_apply(st, ext, ctx, f"{ptr}/status_notes")


def _openvex_product(subject: str) -> dict[str, Any]:
    product: dict[str, Any] = {"@id": subject}
    if subject.startswith("pkg:"):
        product["identifiers"] = {"purl": subject}
    elif subject.startswith("cpe:2.3:"):
        product["identifiers"] = {"@cpe23": subject}
    elif subject.startswith("cpe:/"):
        product["identifiers"] = {"@cpe22": subject}
    return product


def to_openvex(statements: list[VexStatement], doc_id: str = "") -> dict[str, Any]:
    author = _common_author(statements) or "medsentry"
    doc_time = _latest(statements)
    out: list[dict[str, Any]] = []
    # the version is no OpenVEX field: statements differing in it cannot share one
    for group in _group(statements, lambda s: (*_content(s), s.version)).values():
        first = group[0]
        subjects = [x for x in dict.fromkeys(m.subject for m in group) if x]
        s: dict[str, Any] = {"vulnerability": {"name": first.vulnerability}, "status": first.status}
        if subjects:
            s["products"] = [_openvex_product(x) for x in subjects]
        if first.timestamp is not None:
            s["timestamp"] = _fmt_time(first.timestamp)
        if first.justification:
            s["justification"] = first.openvex_justification
        for k in ("impact_statement", "action_statement"):
            if getattr(first, k):
                s[k] = getattr(first, k)
        native = next(_openvex_entry(s, "", author, doc_time, _Ctx("")))
        diff = _diff(first, native)
        if diff:
            s["status_notes"] = f"{EXT} {json.dumps(_ext_encode(diff), sort_keys=True)}"
        out.append(s)
    return {
        "@context": OPENVEX_CONTEXT,
        "@id": doc_id or f"https://openvex.dev/docs/public/vex-{uuid.uuid4()}",
        "author": author,
        "timestamp": _fmt_time(doc_time),
        "version": 1,
        "tooling": "medsentry",
        "statements": out,
    }


# --- CSAF VEX --------------------------------------------------------------------------------------------


@dataclass
class _CsafProduct:
    subject: str
    version: str


def _csaf_products(doc: dict[str, Any], ctx: _Ctx) -> dict[str, _CsafProduct]:
    tree = ctx.obj(doc.get("product_tree", {}), "/product_tree")
    products: dict[str, _CsafProduct] = {}

    def add(fpn: Any, ptr: str, version: str) -> None:
        fpn = ctx.obj(fpn, ptr)
        pid = ctx.str(fpn, "product_id", ptr, required=True)
        name = ctx.str(fpn, "name", ptr)
        helper = ctx.obj(fpn.get("product_identification_helper", {}), f"{ptr}/product_identification_helper")
        purl = helper.get("purl")
        cpe = helper.get("cpe")
        subject = next((x for x in (purl, cpe) if isinstance(x, str) and x), name) or pid
        products[pid] = _CsafProduct(subject, version)

    def walk(branches: list[Any], ptr: str, version: str, depth: int) -> None:
        if depth > 30:
            raise ctx.fail(ptr, "branches nested too deeply")
        for i, b in enumerate(branches):
            b_ptr = f"{ptr}/{i}"
            b = ctx.obj(b, b_ptr)
            category = ctx.str(b, "category", b_ptr)
            here = (
                ctx.str(b, "name", b_ptr)
                if category in ("product_version", "product_version_range")
                else version
            )
            if "product" in b:
                add(b["product"], f"{b_ptr}/product", here)
            walk(ctx.arr(b, "branches", b_ptr), f"{b_ptr}/branches", here, depth + 1)

    walk(ctx.arr(tree, "branches", "/product_tree"), "/product_tree/branches", "", 0)
    for i, fpn in enumerate(ctx.arr(tree, "full_product_names", "/product_tree")):
        add(fpn, f"/product_tree/full_product_names/{i}", "")
    for i, rel in enumerate(ctx.arr(tree, "relationships", "/product_tree")):
        r_ptr = f"/product_tree/relationships/{i}"
        rel = ctx.obj(rel, r_ptr)
        if "full_product_name" in rel:
            add(rel["full_product_name"], f"{r_ptr}/full_product_name", "")
    return products


def _csaf_groups(doc: dict[str, Any], ctx: _Ctx) -> dict[str, list[str]]:
    tree = doc.get("product_tree", {})
    groups: dict[str, list[str]] = {}
    if isinstance(tree, dict):
        for i, g in enumerate(ctx.arr(tree, "product_groups", "/product_tree")):
            g_ptr = f"/product_tree/product_groups/{i}"
            g = ctx.obj(g, g_ptr)
            groups[ctx.str(g, "group_id", g_ptr, required=True)] = _ids(
                ctx.arr(g, "product_ids", g_ptr), g_ptr, ctx
            )
    return groups


def _ids(values: list[Any], ptr: str, ctx: _Ctx) -> list[str]:
    if not all(isinstance(x, str) for x in values):
        raise ctx.fail(ptr, "product ids must be strings")
    return values


def _csaf_targets(item: dict[str, Any], ptr: str, groups: dict[str, list[str]], ctx: _Ctx) -> list[str]:
    ids = list(_ids(ctx.arr(item, "product_ids", ptr), f"{ptr}/product_ids", ctx))
    for g in _ids(ctx.arr(item, "group_ids", ptr), f"{ptr}/group_ids", ctx):
        ids.extend(groups.get(g, ()))
    return ids


def _csaf_vuln_id(v: dict[str, Any], ptr: str, ctx: _Ctx) -> str:
    cve = ctx.str(v, "cve", ptr)
    if cve:
        return cve
    for i, x in enumerate(ctx.arr(v, "ids", ptr)):
        text = ctx.str(ctx.obj(x, f"{ptr}/ids/{i}"), "text", f"{ptr}/ids/{i}")
        if text:
            return text
    # CSAF allows a vulnerability known by its title only
    return ctx.str(v, "title", ptr)


def _csaf_entry(
    v: dict[str, Any],
    ptr: str,
    products: dict[str, _CsafProduct],
    groups: dict[str, list[str]],
    author: str,
    doc_time: datetime | None,
    ctx: _Ctx,
) -> Iterator[tuple[str, VexStatement]]:
    """(product_id, native statement) pairs of one `vulnerabilities[]` entry."""
    vid = _csaf_vuln_id(v, ptr, ctx)
    status_of: dict[str, str] = {}
    ps = ctx.obj(v.get("product_status", {}), f"{ptr}/product_status")
    for key, status in CSAF_STATUS_READ.items():
        for pid in _ids(ctx.arr(ps, key, f"{ptr}/product_status"), f"{ptr}/product_status/{key}", ctx):
            status_of.setdefault(pid, status)
    justification: dict[str, str] = {}
    impact: dict[str, list[str]] = {}
    action: dict[str, list[str]] = {}
    responses: dict[str, list[str]] = {}
    stamp: dict[str, datetime] = {}

    def note_time(pid: str, when: datetime | None) -> None:
        if when is not None and (pid not in stamp or when > stamp[pid]):
            stamp[pid] = when

    for i, f in enumerate(ctx.arr(v, "flags", ptr)):
        f_ptr = f"{ptr}/flags/{i}"
        f = ctx.obj(f, f_ptr)
        label, when = ctx.str(f, "label", f_ptr), ctx.time(f, "date", f_ptr)
        for pid in _csaf_targets(f, f_ptr, groups, ctx):
            justification.setdefault(pid, label)
            note_time(pid, when)
    for i, t in enumerate(ctx.arr(v, "threats", ptr)):
        t_ptr = f"{ptr}/threats/{i}"
        t = ctx.obj(t, t_ptr)
        if ctx.str(t, "category", t_ptr) != "impact":
            continue
        details, when = ctx.str(t, "details", t_ptr), ctx.time(t, "date", t_ptr)
        for pid in _csaf_targets(t, t_ptr, groups, ctx):
            if details not in impact.setdefault(pid, []):
                impact[pid].append(details)
            note_time(pid, when)
    for i, r in enumerate(ctx.arr(v, "remediations", ptr)):
        r_ptr = f"{ptr}/remediations/{i}"
        r = ctx.obj(r, r_ptr)
        category, details = ctx.str(r, "category", r_ptr), ctx.str(r, "details", r_ptr)
        when = ctx.time(r, "date", r_ptr)
        for pid in _csaf_targets(r, r_ptr, groups, ctx):
            if details and details not in action.setdefault(pid, []):
                action[pid].append(details)
            resp = CSAF_REMEDIATION_READ.get(category)
            if resp and resp not in responses.setdefault(pid, []):
                responses[pid].append(resp)
            note_time(pid, when)
    if status_of and not vid:
        # nothing to attach a decision to: skip this entry, not the whole document
        ctx.problems.append(f"{ptr}: product_status for a vulnerability without cve, ids or title; skipped")
        return
    for pid, status in status_of.items():
        product = products.get(pid, _CsafProduct(pid, ""))
        yield (
            pid,
            VexStatement(
                vulnerability=vid,
                subject=product.subject,
                status=status,
                version=product.version,
                justification=justification.get(pid, ""),
                impact_statement="\n\n".join(impact.get(pid, [])),
                action_statement="\n\n".join(action.get(pid, [])),
                responses=tuple(responses.get(pid, ())),
                timestamp=stamp.get(pid, doc_time),
                author=author,
                source=ctx.source,
            ),
        )


def _csaf_ext(v: dict[str, Any], ptr: str, ctx: _Ctx) -> dict[str, Any]:
    for i, n in enumerate(ctx.arr(v, "notes", ptr)):
        if isinstance(n, dict) and n.get("title") == EXT:
            text = ctx.str(n, "text", f"{ptr}/notes/{i}")
            try:
                ext = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as e:
                raise ctx.fail(f"{ptr}/notes/{i}/text", "extension is not JSON") from e
            return ctx.obj(ext, f"{ptr}/notes/{i}/text")
    return {}


def _read_csaf(doc: dict[str, Any], ctx: _Ctx) -> Iterator[VexStatement]:
    document = ctx.obj(doc.get("document"), "/document")
    publisher = ctx.obj(document.get("publisher", {}), "/document/publisher")
    author = ctx.str(publisher, "name", "/document/publisher")
    tracking = ctx.obj(document.get("tracking", {}), "/document/tracking")
    doc_time = ctx.time(tracking, "current_release_date", "/document/tracking")
    products = _csaf_products(doc, ctx)
    groups = _csaf_groups(doc, ctx)
    for i, v in enumerate(ctx.arr(doc, "vulnerabilities", "")):
        ptr = f"/vulnerabilities/{i}"
        v = ctx.obj(v, ptr)
        ext = _csaf_ext(v, ptr, ctx)
        for pid, st in _csaf_entry(v, ptr, products, groups, author, doc_time, ctx):
            yield st if pid not in ext else _ext_apply(st, ext[pid], ctx, f"{ptr}/notes")


def _csaf_vuln_ids(vid: str) -> dict[str, Any]:
    if CVE_ID.match(vid):
        return {"cve": vid}
    system = vid.split("-", 1)[0] if "-" in vid else "unknown"
    return {"ids": [{"system_name": system, "text": vid}]}


def to_csaf(
    statements: list[VexStatement],
    tracking_id: str = "",
    title: str = "",
    namespace: str = "https://medsentry.invalid",
) -> dict[str, Any]:
    """A CSAF 2.0 document of the csaf_vex profile."""
    author = _common_author(statements) or "medsentry"
    doc_time = _latest(statements)
    pids: dict[tuple[str, str], str] = {}
    for st in statements:
        pids.setdefault((st.subject, st.version), f"MEDSENTRY-{len(pids) + 1:04d}")

    # product tree: a product_name branch per subject holding the product, or (a second branch of the same
    # name) product_version / product_version_range branches -- a CSAF branch holds one or the other
    branches: list[dict[str, Any]] = []
    versioned: dict[str, dict[str, Any]] = {}
    for (subject, version), pid in pids.items():
        # CSAF needs a product to hang a status on; "" (everything) is named and restored via the extension
        product: dict[str, Any] = {"name": subject or "all products", "product_id": pid}
        if subject.startswith("pkg:"):
            product["product_identification_helper"] = {"purl": subject}
        elif subject.startswith("cpe:"):
            product["product_identification_helper"] = {"cpe": subject}
        if not version:
            branches.append({"category": "product_name", "name": product["name"], "product": product})
            continue
        if subject not in versioned:
            versioned[subject] = {"category": "product_name", "name": subject, "branches": []}
            branches.append(versioned[subject])
        category = "product_version_range" if version.startswith("vers:") else "product_version"
        versioned[subject]["branches"].append({"category": category, "name": version, "product": product})

    # what a reader makes of the tree, so that the extension covers exactly what the tree cannot say
    products = _csaf_products({"product_tree": {"branches": branches}}, _Ctx(""))
    vulns: list[dict[str, Any]] = []
    # a product has one status per vulnerability in CSAF; contradicting statements get their own entries
    per_vuln: dict[str, list[list[VexStatement]]] = {}
    for st in statements:
        lanes = per_vuln.setdefault(st.vulnerability, [])
        pid = pids[(st.subject, st.version)]
        lane = next((lane for lane in lanes if all(pids[(x.subject, x.version)] != pid for x in lane)), None)
        if lane is None:
            lanes.append(lane := [])
        lane.append(st)
    for vid, lanes in per_vuln.items():
        for lane in lanes:
            vulns.append(_csaf_vuln(vid, lane, pids, products, author, doc_time))

    return {
        "document": {
            "category": "csaf_vex",
            "csaf_version": "2.0",
            "publisher": {"category": "other", "name": author, "namespace": namespace},
            "title": title or "VEX statements",
            "tracking": {
                "current_release_date": _fmt_time(doc_time),
                "id": tracking_id or f"medsentry-vex-{uuid.uuid4()}",
                "initial_release_date": _fmt_time(doc_time),
                "revision_history": [
                    {"date": _fmt_time(doc_time), "number": "1", "summary": "Exported by medsentry."}
                ],
                "status": "final",
                "version": "1",
            },
        },
        "product_tree": {"branches": branches},
        "vulnerabilities": vulns,
    }


def _csaf_vuln(
    vid: str,
    lane: list[VexStatement],
    pids: dict[tuple[str, str], str],
    products: dict[str, _CsafProduct],
    author: str,
    doc_time: datetime,
) -> dict[str, Any]:
    v: dict[str, Any] = _csaf_vuln_ids(vid)
    status: dict[str, list[str]] = {}
    flags: dict[tuple[str, str], list[str]] = {}
    threats: dict[tuple[str, str], list[str]] = {}
    remediations: dict[tuple[str, str, str], list[str]] = {}
    for st in lane:
        pid = pids[(st.subject, st.version)]
        status.setdefault(CSAF_STATUS[st.status], []).append(pid)
        when = _fmt_time(st.timestamp) if st.timestamp is not None else ""
        if st.justification:
            flags.setdefault((st.openvex_justification, when), []).append(pid)
        if st.impact_statement:
            threats.setdefault((st.impact_statement, when), []).append(pid)
        categories = [CSAF_REMEDIATION[r] for r in st.responses if r in CSAF_REMEDIATION]
        if st.action_statement and not categories:
            categories = ["mitigation"]  # CSAF has no category-less remediation; read back via the extension
        for c in categories:
            remediations.setdefault((c, st.action_statement or c, when), []).append(pid)
    v["product_status"] = status
    if flags:
        v["flags"] = [
            {"label": label, "product_ids": ids, **({"date": d} if d else {})}
            for (label, d), ids in flags.items()
        ]
    if threats:
        v["threats"] = [
            {"category": "impact", "details": text, "product_ids": ids, **({"date": d} if d else {})}
            for (text, d), ids in threats.items()
        ]
    if remediations:
        v["remediations"] = [
            {"category": c, "details": text, "product_ids": ids, **({"date": d} if d else {})}
            for (c, text, d), ids in remediations.items()
        ]
    native = dict(_csaf_entry(v, "", products, {}, author, doc_time, _Ctx("")))
    ext = {}
    for st in lane:
        pid = pids[(st.subject, st.version)]
        diff = _diff(st, native[pid])
        if diff:
            ext[pid] = _ext_encode(diff)
    if ext:
        v["notes"] = [{"category": "other", "title": EXT, "text": json.dumps(ext, sort_keys=True)}]
    return v
