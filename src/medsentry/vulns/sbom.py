"""SBOM ingestion: CycloneDX 1.2–1.6 (JSON, XML) and SPDX 2.2/2.3 (JSON, tag-value) into one neutral model.

Shape (pip-audit style): a *source* is bytes plus a name (`read_sbom(path)` / `parse_sbom(data, source)`);
each *format* is a small `SbomFormat` (sniff the bytes, parse them); the result is an `Sbom` whose
`components` are flat -- CycloneDX nesting and SPDX CONTAINS/DEPENDS_ON relationships survive as
`Component.parents`. The document's own subject (CycloneDX `metadata.component`, the package an SPDX
document DESCRIBES) is `Sbom.root`, not one of `components`; `Sbom.all_components()` yields both.

Parsing is done by the reference libraries, cyclonedx-python-lib and spdx-tools, except the common
CycloneDX 1.4-1.6 JSON case, which is read directly (see "CycloneDX JSON, the common case" below). This
module sniffs the format, maps the libraries' models and turns their failures into `SbomError`s that name
the file and a location (JSON pointer, or line/column). Neither library reports where a structural error
is, so for CycloneDX the schema validator shipped with cyclonedx-python-lib locates it, and for SPDX JSON
the failing section item is found by re-parsing items one by one.

Deliberately not read: SPDX `files` and `snippets` (no version or package identity to match against) and
SPDX 3.0 (a different, JSON-LD model; `spdx-tools` 0.8 does not read it either).

Cost: cyclonedx-python-lib builds sorted sets of rich objects: 0.5 s for the bench's 1,000 plain
components, 1.3 s for juice-shop's 1,115 with licenses and hashes; the direct JSON reader takes 0.05 s for
either.
"""

from __future__ import annotations

import json
import re
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from packageurl import PackageURL

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


def _cdx_to_sbom(bom: Any, fmt: str, spec: str, source: str, has_serial: bool) -> Sbom:
    meta = bom.metadata
    root = _cdx_component(meta.component, None) if meta.component is not None else None
    flat = list(_cdx_walk(bom.components, None))
    dependents: dict[str, list[str]] = {}
    for dep in bom.dependencies:
        for child in dep.dependencies:
            dependents.setdefault(str(child.ref.value), []).append(str(dep.ref.value))
    supplier = ""
    if meta.supplier is not None and meta.supplier.name:
        supplier = meta.supplier.name
    elif meta.manufacture is not None and meta.manufacture.name:
        supplier = meta.manufacture.name
    elif root is not None:
        supplier = root.supplier
    # "urn:uuid:...", as BOM-Links use it; the library invents a random one when the document has none
    serial = bom.serial_number.urn if has_serial and bom.serial_number else ""
    return _cdx_sbom(root, flat, dependents, supplier, f"CycloneDX {spec} {fmt.upper()}", source, serial)


def _cdx_sbom(
    root: Component | None,
    flat: list[Component],
    dependents: dict[str, list[str]],
    supplier: str,
    label: str,
    source: str,
    serial: str,
) -> Sbom:
    """The document's components with the dependency graph's parents added after their nesting parent."""
    components = [
        Component(**{**c.__dict__, "parents": _uniq([*c.parents, *dependents.get(c.ref, ())])}) for c in flat
    ]
    return Sbom(
        name=root.name if root else "",
        version=root.version if root else "",
        supplier=supplier,
        components=components,
        root=root,
        format=label,
        source=source,
        serial=serial,
    )


def _cdx_parse(build: Any, raw: str, spec: str, fmt: str, source: str, has_serial: bool) -> Sbom:
    if _cdx_schema_version(spec) is None:
        where = "/specVersion" if fmt == "json" else "bom@xmlns"
        raise SbomError(source, where, f"unsupported CycloneDX version {spec!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the library warns about each unknown field or lax value
            bom = build()
            return _cdx_to_sbom(bom, fmt, spec, source, has_serial)
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
        spec = doc.get("specVersion")
        if not isinstance(spec, str):
            raise SbomError(source, "/specVersion", "missing or not a string")
        if spec in _FAST_SPECS:
            try:
                return _cdx_json_fast(doc, spec, source)
            except _Unusual:
                pass  # the library reads it, and says where it is wrong
        from cyclonedx.model.bom import Bom

        return _cdx_parse(lambda: Bom.from_json(doc), text, spec, "json", source, "serialNumber" in doc)


# --- CycloneDX JSON, the common case without the library ---------------------------------------------
#
# Why: cyclonedx-python-lib builds sorted sets of rich model objects; for a 1,000-component SBOM that
# was half a second, a quarter of a whole scan. This reader takes only the identity fields medsentry
# uses, checks their types, and gives the same `Sbom` as the library path (the same component order:
# the library's sort by type, group, name, version, bom-ref -- decided by them alone because every
# bom-ref here is required to be present and unique). Anything it does not expect (a missing or
# duplicate bom-ref, a value of the wrong type, an unknown component type or hash algorithm, a purl
# packageurl cannot read) raises `_Unusual` and the library reads the document instead, so errors keep
# their located messages. Fields medsentry does not read (licenses, evidence, ...) are not validated.

_FAST_SPECS = frozenset({"1.4", "1.5", "1.6"})
COMPONENT_TYPES = frozenset(
    {
        *("application", "container", "cryptographic-asset", "data", "device", "device-driver", "file"),
        *("firmware", "framework", "library", "machine-learning-model", "operating-system", "platform"),
    }
)
HASH_ALGORITHMS = frozenset(
    {
        *("BLAKE2b-256", "BLAKE2b-384", "BLAKE2b-512", "BLAKE3", "MD5", "SHA-1", "SHA-256", "SHA-384"),
        *("SHA-512", "SHA3-256", "SHA3-384", "SHA3-512", "Streebog-256", "Streebog-512"),
    }
)
_URN_UUID = re.compile(
    r"^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


class _Unusual(Exception):
    """Something the fast reader leaves to the library."""


def _text(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _Unusual(key)
    return value


def _entity_name(obj: dict[str, Any], key: str) -> str:
    entity = obj.get(key)
    if entity is None:
        return ""
    if not isinstance(entity, dict):
        raise _Unusual(key)
    return _text(entity, "name") or ""


def _none_last(value: str | None) -> tuple[bool, str]:
    return (value is None, value or "")


def _fast_component(
    c: Any, parent: str | None, refs: set[str]
) -> tuple[tuple[Any, ...], Component, list[Any]]:
    """(the library's sort key, the component, its nested components)."""
    if not isinstance(c, dict):
        raise _Unusual("component")
    ctype, name, ref = _text(c, "type"), _text(c, "name"), _text(c, "bom-ref")
    if ctype not in COMPONENT_TYPES or name is None or not ref or ref in refs:
        raise _Unusual("type, name or bom-ref")
    refs.add(ref)
    group, version, purl_text = _text(c, "group"), _text(c, "version"), _text(c, "purl")
    purl = ""
    if purl_text:
        try:
            purl = PackageURL.from_string(purl_text).to_string()
        except ValueError as e:
            raise _Unusual("purl") from e
    supplier = (
        _entity_name(c, "supplier")
        or _entity_name(c, "manufacturer")
        or _text(c, "publisher")
        or _text(c, "author")
    )
    properties = c.get("properties") or []
    hashes = c.get("hashes") or []
    nested = c.get("components") or []
    if not isinstance(properties, list) or not isinstance(hashes, list) or not isinstance(nested, list):
        raise _Unusual("list")
    pairs = set()
    for prop in properties:
        if not isinstance(prop, dict) or not isinstance(prop.get("name", ""), str):
            raise _Unusual("property")
        pairs.add((prop.get("name"), _text(prop, "value")))
    cpes = [_text(c, "cpe") or ""]
    cpes += [
        v
        for n, v in sorted(pairs, key=lambda p: (_none_last(p[0]), _none_last(p[1])))
        if n and v and CPE_PROPERTY.search(n)
    ]
    digests = set()
    for h in hashes:
        if (
            not isinstance(h, dict)
            or not isinstance(h.get("alg"), str)
            or h["alg"] not in HASH_ALGORITHMS
            or not isinstance(h.get("content"), str)
        ):
            raise _Unusual("hash")
        digests.add((h["alg"], h["content"]))
    comp = Component(
        ref=ref,
        name=name,
        version=version or "",
        supplier=supplier or "",
        group=group or "",
        purl=purl,
        cpes=_uniq(x.strip() for x in cpes if x),
        hashes=tuple((alg, content.lower()) for alg, content in sorted(digests)),
        type=ctype,
        parents=(parent,) if parent else (),
    )
    key = (ctype, _none_last(group), name, _none_last(version), ref)
    return key, comp, nested


def _fast_walk(components: Any, parent: str | None, refs: set[str]) -> Iterator[Component]:
    if not isinstance(components, list):
        raise _Unusual("components")
    read = sorted((_fast_component(c, parent, refs) for c in components), key=lambda r: r[0])
    for _key, comp, nested in read:
        yield comp
        yield from _fast_walk(nested, comp.ref, refs)


def _cdx_json_fast(doc: dict[str, Any], spec: str, source: str) -> Sbom:
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict):
        raise _Unusual("metadata")
    refs: set[str] = set()
    root = None
    if meta.get("component") is not None:
        _key, root, nested = _fast_component(meta["component"], None, refs)
        if nested:
            raise _Unusual("nested root")  # the library keeps them under the root, not in `components`
    flat = list(_fast_walk(doc.get("components") or [], None, refs))
    dependencies = doc.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise _Unusual("dependencies")
    dependents: dict[str, list[str]] = {}
    seen: set[str] = set()
    for dep in sorted(dependencies, key=lambda d: str(d.get("ref")) if isinstance(d, dict) else ""):
        ref, children = (
            (dep.get("ref"), dep.get("dependsOn") or []) if isinstance(dep, dict) else (None, None)
        )
        if not isinstance(ref, str) or ref in seen or not isinstance(children, list):
            raise _Unusual("dependency")
        if not all(isinstance(child, str) for child in children):
            raise _Unusual("dependsOn")
        seen.add(ref)
        for child in sorted(set(children)):
            dependents.setdefault(child, []).append(ref)
    serial = _text(doc, "serialNumber")
    if serial is not None and not _URN_UUID.match(serial):
        raise _Unusual("serialNumber")
    supplier = (
        _entity_name(meta, "supplier") or _entity_name(meta, "manufacture") or (root.supplier if root else "")
    )
    urn = uuid.UUID(serial[9:]).urn if serial else ""
    return _cdx_sbom(root, flat, dependents, supplier, f"CycloneDX {spec} JSON", source, urn)


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
        return _cdx_parse(
            lambda: Bom.from_xml(root), text, spec, "xml", source, "serialNumber" in root.attrib
        )


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
