"""SBOM ingestion: CycloneDX 1.2–1.6 (JSON, XML) and SPDX 2.2/2.3 (JSON, tag-value) into one neutral model.

Shape (pip-audit style): a *source* is bytes plus a name (`read_sbom(path)` / `parse_sbom(data, source)`);
each *format* is a small `SbomFormat` (sniff the bytes, parse them); the result is an `Sbom` whose
`components` are flat -- CycloneDX nesting and SPDX CONTAINS/DEPENDS_ON relationships survive as
`Component.parents`. The document's own subject (CycloneDX `metadata.component`, the package an SPDX
document DESCRIBES) is `Sbom.root`, not one of `components`; `Sbom.all_components()` yields both.

Parsing is done by the reference libraries, cyclonedx-python-lib and spdx-tools; this module only sniffs
the format, maps their models and turns their failures into `SbomError`s that name the file and a location
(JSON pointer, or line/column). Neither library reports where a structural error is, so for CycloneDX the
schema validator shipped with cyclonedx-python-lib locates it, and for SPDX JSON the failing section item is
found by re-parsing items one by one.

Deliberately not read: SPDX `files` and `snippets` (no version or package identity to match against) and
SPDX 3.0 (a different, JSON-LD model; `spdx-tools` 0.8 does not read it either).

Cost: cyclonedx-python-lib builds sorted sets of rich objects, about 4-5 s for juice-shop's 1,115
components on this machine; a product's parsed components belong in the store, parsed once per version.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

__all__ = [
    "FORMATS",
    "Component",
    "Sbom",
    "SbomError",
    "SbomFormat",
    "parse_sbom",
    "read_sbom",
]

CDX_NS = re.compile(r"^\{http://cyclonedx\.org/schema/bom/(\d+\.\d+)\}bom$")
# syft, cdxgen and others put the CPEs they could not fit in the single `cpe` field into properties
CPE_PROPERTY = re.compile(r"(^|:)cpe(23|22)?$", re.IGNORECASE)


class SbomError(ValueError):
    """A malformed or unsupported SBOM; `location` is a JSON pointer or "line L column C"."""

    def __init__(self, source: str, location: str, message: str) -> None:
        self.source = source
        self.location = location
        self.message = message
        super().__init__(f"{source}: {location or '/'}: {message}")


@dataclass(frozen=True)
class Component:
    ref: str  # bom-ref or SPDXID; unique within its SBOM
    name: str
    version: str = ""
    supplier: str = ""  # supplier, else publisher/originator, else author
    group: str = ""  # CycloneDX group (Maven groupId, npm scope)
    purl: str = ""
    cpes: tuple[str, ...] = ()
    hashes: tuple[tuple[str, str], ...] = ()  # (CycloneDX algorithm name, lower-case hex digest)
    type: str = ""  # CycloneDX component type / SPDX primary package purpose, lower case
    parents: tuple[str, ...] = ()  # refs that contain (nesting, CONTAINS) or depend on this component


@dataclass
class Sbom:
    name: str
    version: str
    supplier: str
    components: list[Component]
    root: Component | None = None
    format: str = ""  # e.g. "CycloneDX 1.4 JSON", "SPDX-2.3 tag-value"
    source: str = ""
    serial: str = ""  # CycloneDX serialNumber / SPDX documentNamespace: identifies this version
    warnings: list[str] = field(default_factory=list)

    def all_components(self) -> Iterator[Component]:
        if self.root is not None:
            yield self.root
        yield from self.components


class SbomFormat(Protocol):
    name: str

    def sniff(self, text: str, doc: Any) -> bool:
        """`doc` is the decoded JSON when the text is JSON, else None."""
        ...

    def parse(self, text: str, doc: Any, source: str) -> Sbom: ...


def read_sbom(path: str | Path) -> Sbom:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SbomError(str(path), "", f"cannot read: {e.strerror or e}") from e
    return parse_sbom(data, str(path))


def parse_sbom(data: bytes | str, source: str = "<memory>") -> Sbom:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise SbomError(source, f"byte {e.start}", "not UTF-8 text") from e
    else:
        text = data.removeprefix("\ufeff")
    doc = _load_json(text, source) if text.lstrip()[:1] in ("{", "[") else None
    for fmt in FORMATS:
        if fmt.sniff(text, doc):
            return fmt.parse(text, doc, source)
    if isinstance(doc, dict) and "spdx.org/rdf/3" in str(doc.get("@context", "")):
        raise SbomError(source, "/@context", "SPDX 3 is not supported (spdx-tools reads SPDX 2 only)")
    raise SbomError(source, "", "not a CycloneDX (JSON/XML) or SPDX 2 (JSON/tag-value) document")


# --- helpers ---------------------------------------------------------------------------------------


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SbomError(source, f"line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}") from e
    except RecursionError as e:
        raise SbomError(source, "", "JSON nested too deeply") from e


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _uniq(items: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))


# --- CycloneDX -------------------------------------------------------------------------------------


def _cdx_schema_version(spec: str) -> Any:
    from cyclonedx.schema import SchemaVersion

    try:
        return SchemaVersion.from_version(spec)
    except (ValueError, TypeError, KeyError):
        return None


def _cdx_locate(data: str, spec: str, fmt: str) -> tuple[str, str] | None:
    """Where the CycloneDX schema says the document is wrong: (location, message), or None."""
    from cyclonedx.schema import OutputFormat
    from cyclonedx.validation import make_schemabased_validator

    version = _cdx_schema_version(spec)
    if version is None:
        return None
    try:
        validator = make_schemabased_validator(
            OutputFormat.JSON if fmt == "json" else OutputFormat.XML, version
        )
        error = validator.validate_str(data)
    except Exception:  # the locator is best effort; the parse error is reported anyway
        return None
    if error is None:
        return None
    detail = error.data
    if fmt == "json" and hasattr(detail, "absolute_path"):
        return _pointer(detail.absolute_path), str(getattr(detail, "message", detail))[:300]
    line = getattr(detail, "line", None)
    if line is not None:
        return f"line {line}", str(getattr(detail, "message", detail))[:300]
    return None


def _cdx_component(c: Any, parent: str | None) -> Component:
    supplier = ""
    if c.supplier is not None and c.supplier.name:
        supplier = c.supplier.name
    elif c.manufacturer is not None and getattr(c.manufacturer, "name", None):
        supplier = c.manufacturer.name
    elif c.publisher:
        supplier = c.publisher
    elif c.author:
        supplier = c.author
    cpes = [c.cpe or ""]
    cpes += [p.value for p in c.properties if p.name and CPE_PROPERTY.search(p.name)]
    return Component(
        ref=str(c.bom_ref.value or ""),
        name=c.name or "",
        version=c.version or "",
        supplier=supplier,
        group=c.group or "",
        purl=str(c.purl) if c.purl else "",
        cpes=_uniq(x.strip() for x in cpes if x),
        hashes=tuple((h.alg.value, h.content.lower()) for h in c.hashes),
        type=c.type.value if c.type else "",
        parents=(parent,) if parent else (),
    )


def _cdx_walk(components: Any, parent: str | None) -> Iterator[Component]:
    for c in components:
        comp = _cdx_component(c, parent)
        yield comp
        yield from _cdx_walk(c.components, comp.ref or None)


def _cdx_to_sbom(bom: Any, fmt: str, spec: str, source: str) -> Sbom:
    meta = bom.metadata
    root = _cdx_component(meta.component, None) if meta.component is not None else None
    flat = list(_cdx_walk(bom.components, None))
    dependents: dict[str, list[str]] = {}
    for dep in bom.dependencies:
        for child in dep.dependencies:
            dependents.setdefault(str(child.ref.value), []).append(str(dep.ref.value))
    components = [
        Component(**{**c.__dict__, "parents": _uniq([*c.parents, *dependents.get(c.ref, ())])}) for c in flat
    ]
    supplier = ""
    if meta.supplier is not None and meta.supplier.name:
        supplier = meta.supplier.name
    elif meta.manufacture is not None and meta.manufacture.name:
        supplier = meta.manufacture.name
    elif root is not None:
        supplier = root.supplier
    return Sbom(
        name=root.name if root else "",
        version=root.version if root else "",
        supplier=supplier,
        components=components,
        root=root,
        format=f"CycloneDX {spec} {fmt.upper()}",
        source=source,
        serial=bom.serial_number.urn if bom.serial_number else "",  # "urn:uuid:...", as BOM-Links use it
    )


def _cdx_parse(build: Any, raw: str, spec: str, fmt: str, source: str) -> Sbom:
    if _cdx_schema_version(spec) is None:
        where = "/specVersion" if fmt == "json" else "bom@xmlns"
        raise SbomError(source, where, f"unsupported CycloneDX version {spec!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the library warns about each unknown field or lax value
            bom = build()
            return _cdx_to_sbom(bom, fmt, spec, source)
    except SbomError:
        raise
    except Exception as e:  # the library raises whatever its model constructors raise
        where = _cdx_locate(raw, spec, fmt)
        if where is not None:
            raise SbomError(source, where[0], f"invalid CycloneDX: {where[1]}") from e
        raise SbomError(source, "", f"invalid CycloneDX: {type(e).__name__}: {str(e)[:300]}") from e


class CycloneDxJson:
    name = "CycloneDX JSON"

    def sniff(self, text: str, doc: Any) -> bool:
        return isinstance(doc, dict) and doc.get("bomFormat") == "CycloneDX"

    def parse(self, text: str, doc: Any, source: str) -> Sbom:
        from cyclonedx.model.bom import Bom

        spec = doc.get("specVersion")
        if not isinstance(spec, str):
            raise SbomError(source, "/specVersion", "missing or not a string")
        return _cdx_parse(lambda: Bom.from_json(doc), text, spec, "json", source)


class CycloneDxXml:
    name = "CycloneDX XML"

    def sniff(self, text: str, doc: Any) -> bool:
        return doc is None and text.lstrip()[:1] == "<" and "cyclonedx.org/schema/bom" in text[:4096]

    def parse(self, text: str, doc: Any, source: str) -> Sbom:
        from cyclonedx.model.bom import Bom

        try:
            # defusedxml: SBOMs come from suppliers; entity expansion and external entities are refused
            root: Element = SafeET.fromstring(text)
        except ParseError as e:
            line, col = e.position
            raise SbomError(source, f"line {line} column {col + 1}", f"invalid XML: {e.msg}") from e
        except DefusedXmlException as e:
            raise SbomError(source, "", f"refused XML construct: {e}") from e
        m = CDX_NS.match(root.tag)
        if m is None:
            raise SbomError(source, "line 1", f"root element {root.tag!r} is not a CycloneDX bom")
        spec = m.group(1)
        _drop_empty_leaves(root)
        return _cdx_parse(lambda: Bom.from_xml(root), text, spec, "xml", source)


def _drop_empty_leaves(element: Element) -> None:
    # cyclonedx-python-lib 11 reads an empty `<version/>` (what it writes itself for version "") as the
    # string "None"; an empty leaf carries nothing, so drop it and let the field default
    for child in list(element):
        _drop_empty_leaves(child)
        if len(child) == 0 and not child.attrib and not (child.text or "").strip():
            element.remove(child)


# --- SPDX 2 ----------------------------------------------------------------------------------------

SPDX_SECTIONS = {"packages": "package_parser", "relationships": "relationship_parser"}
PARENT_OF = {"CONTAINS", "DEPENDS_ON", "DEV_DEPENDS_ON", "BUILD_DEPENDS_ON", "RUNTIME_DEPENDENCY_OF"}
CHILD_OF = {"CONTAINED_BY", "DEPENDENCY_OF", "DEV_DEPENDENCY_OF", "BUILD_DEPENDENCY_OF"}
# RUNTIME_DEPENDENCY_OF reads "A is a runtime dependency of B": B is the parent
CHILD_OF.add("RUNTIME_DEPENDENCY_OF")
PARENT_OF.discard("RUNTIME_DEPENDENCY_OF")


def _spdx_hash_name(name: str) -> str:
    """SPDX's SHA256 / SHA3_256 / BLAKE2B_256 spelled as CycloneDX does (SHA-256, SHA3-256, BLAKE2b-256)."""
    name = re.sub(r"^SHA(\d+)$", r"SHA-\1", name).replace("_", "-")
    return name.replace("BLAKE2B", "BLAKE2b")


def _spdx_actor(actor: Any) -> str:
    return getattr(actor, "name", "") or ""


def _spdx_component(p: Any, parents: tuple[str, ...]) -> Component:
    purls, cpes = [], []
    for ref in p.external_references:
        kind = (ref.reference_type or "").lower()
        if kind == "purl":
            purls.append(ref.locator)
        elif kind in ("cpe23type", "cpe22type"):
            cpes.append(ref.locator)
    purpose = p.primary_package_purpose.name.lower() if p.primary_package_purpose else ""
    return Component(
        ref=p.spdx_id,
        name=p.name or "",
        version=p.version or "",
        supplier=_spdx_actor(p.supplier) or _spdx_actor(p.originator),
        purl=purls[0].strip() if purls else "",
        cpes=_uniq(c.strip() for c in cpes),
        hashes=tuple((_spdx_hash_name(c.algorithm.name), c.value.lower()) for c in p.checksums),
        type=purpose,
        parents=parents,
    )


def _spdx_to_sbom(doc: Any, fmt: str, source: str) -> Sbom:
    info = doc.creation_info
    parents: dict[str, list[str]] = {}
    described: list[str] = []
    for rel in doc.relationships:
        kind = rel.relationship_type.name
        a, b = rel.spdx_element_id, str(rel.related_spdx_element_id)
        if kind == "DESCRIBES" and a == info.spdx_id:
            described.append(b)
        elif kind == "DESCRIBED_BY" and b == info.spdx_id:
            described.append(a)
        elif kind in PARENT_OF:
            parents.setdefault(b, []).append(a)
        elif kind in CHILD_OF:
            parents.setdefault(a, []).append(b)
    package_ids = {p.spdx_id for p in doc.packages}
    root_id = next((d for d in described if d in package_ids), None)
    root, components = None, []
    for p in doc.packages:
        comp = _spdx_component(p, _uniq(x for x in parents.get(p.spdx_id, ()) if x != info.spdx_id))
        if p.spdx_id == root_id:
            root = comp
        else:
            components.append(comp)
    return Sbom(
        name=root.name if root else info.name,
        version=root.version if root else "",
        supplier=root.supplier if root else "",
        components=components,
        root=root,
        format=f"{info.spdx_version} {fmt}",
        source=source,
        serial=info.document_namespace or "",
    )


def _spdx_locate_json(doc: dict[str, Any]) -> tuple[str, str] | None:
    """spdx-tools collects messages without positions: re-parse item by item to find the first bad one."""
    from spdx_tools.spdx.parser.error import SPDXParsingError
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser

    parser = JsonLikeDictParser()
    for section, attr in SPDX_SECTIONS.items():
        items = doc.get(section)
        if items is None:
            continue
        if not isinstance(items, list):
            return f"/{section}", "not an array"
        parse_one = getattr(getattr(parser, attr), "parse_" + section[:-1])
        for i, item in enumerate(items):
            try:
                parse_one(item)
            except SPDXParsingError as e:
                return f"/{section}/{i}", "; ".join(e.get_messages())[:300]
            except Exception as e:  # spdx-tools assumes dicts; anything else breaks it
                return f"/{section}/{i}", f"{type(e).__name__}: {e}"[:300]
    return None


class SpdxJson:
    name = "SPDX JSON"

    def sniff(self, text: str, doc: Any) -> bool:
        return isinstance(doc, dict) and "spdxVersion" in doc

    def parse(self, text: str, doc: Any, source: str) -> Sbom:
        from spdx_tools.spdx.parser.error import SPDXParsingError
        from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser

        version = doc.get("spdxVersion")
        if not isinstance(version, str) or not version.startswith("SPDX-2."):
            raise SbomError(source, "/spdxVersion", f"unsupported SPDX version {version!r}")
        try:
            parsed = JsonLikeDictParser().parse(doc)
            return _spdx_to_sbom(parsed, "JSON", source)
        except Exception as e:  # SPDXParsingError, or whatever a wrong type trips in the library
            located = _spdx_locate_json(doc)
            if located is not None:
                raise SbomError(source, located[0], f"invalid SPDX: {located[1]}") from e
            detail = (
                "; ".join(e.get_messages()) if isinstance(e, SPDXParsingError) else f"{type(e).__name__}: {e}"
            )
            raise SbomError(source, "", f"invalid SPDX: {detail[:300]}") from e


SPDX_LINE = re.compile(r"\bline:? (\d+)", re.IGNORECASE)


class SpdxTagValue:
    name = "SPDX tag-value"

    def sniff(self, text: str, doc: Any) -> bool:
        return (
            doc is None and re.search(r"^\s*SPDXVersion:\s*SPDX-2\.", text[:8192], re.MULTILINE) is not None
        )

    def parse(self, text: str, doc: Any, source: str) -> Sbom:
        from spdx_tools.spdx.parser.error import SPDXParsingError
        from spdx_tools.spdx.parser.tagvalue.parser import Parser

        try:
            # a Parser keeps per-document state and cannot be reused; building one costs ~0.3 s (ply tables)
            parsed = Parser().parse(text)
            return _spdx_to_sbom(parsed, "tag-value", source)
        except SPDXParsingError as e:
            messages = e.get_messages()
            first = messages[0] if messages else "unknown error"
            m = SPDX_LINE.search(first)
            raise SbomError(source, f"line {m.group(1)}" if m else "", f"invalid SPDX: {first[:300]}") from e
        except Exception as e:  # the ply grammar actions raise on odd values
            raise SbomError(source, "", f"invalid SPDX: {type(e).__name__}: {str(e)[:300]}") from e


FORMATS: tuple[SbomFormat, ...] = (CycloneDxJson(), CycloneDxXml(), SpdxJson(), SpdxTagValue())
