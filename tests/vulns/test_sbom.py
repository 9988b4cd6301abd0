from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.vulns import sbom as sbom_module
from medsentry.vulns.sbom import Sbom, SbomError, parse_sbom, read_sbom


def _sbom_dir(shared_data: Path) -> Path:
    d = shared_data / "sbom"
    if not d.is_dir():
        pytest.skip("no sbom data")
    return d


def _cdx_files(shared_data: Path) -> list[Path]:
    return sorted((_sbom_dir(shared_data) / "cyclonedx-examples").rglob("*.json"))


def _spdx2_files(shared_data: Path) -> list[Path]:
    root = _sbom_dir(shared_data) / "spdx-examples"
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix in (".json", ".spdx")
        and "spdx3" not in p.name
        and "spdx3.0" not in p.parts
        and p.parent.name != "spdx3.0"
        and (p.suffix == ".spdx" or '"spdxVersion"' in p.read_text(errors="replace"))
    )


def test_every_cyclonedx_example_reads(shared_data: Path) -> None:
    files = _cdx_files(shared_data)
    assert len(files) >= 60
    for f in files:
        raw = json.loads(f.read_text())
        sbom = read_sbom(f)
        assert sbom.format.startswith(f"CycloneDX {raw['specVersion']} JSON")
        if "metadata" in raw and "component" in raw["metadata"]:
            assert sbom.root is not None and sbom.name == raw["metadata"]["component"]["name"]

        # flattening: every listed component (at any depth) is there exactly once
        def count(cs: list[dict]) -> int:
            return sum(1 + count(c.get("components", [])) for c in cs)

        assert len(sbom.components) == count(raw.get("components", [])), f


def _library_read(path: Path) -> Sbom:
    from cyclonedx.model.bom import Bom

    doc = json.loads(path.read_text("utf-8-sig"))
    parse = lambda: Bom.from_json(doc)  # noqa: E731
    return sbom_module._cdx_parse(parse, "", doc["specVersion"], "json", str(path), "serialNumber" in doc)


def test_fast_cyclonedx_reader_equals_the_library_on_every_example(shared_data: Path) -> None:
    """The fast JSON reader gives exactly the library's components (order, purls, hashes, parents) on
    every shared 1.4-1.6 example, and leaves the documents it does not expect to the library."""
    files = [*_cdx_files(shared_data), _sbom_dir(shared_data) / "medical-device-narrow.cdx.json"]
    fast = 0
    for f in files:
        doc = json.loads(f.read_text("utf-8-sig"))
        if doc.get("specVersion") not in ("1.4", "1.5", "1.6"):
            continue
        try:
            got = sbom_module._cdx_json_fast(doc, doc["specVersion"], str(f))
        except sbom_module._Unusual:
            assert read_sbom(f) == _library_read(f)  # the library's reading is what parse_sbom returns
            continue
        fast += 1
        assert got == _library_read(f) == read_sbom(f), f
    assert fast >= 30


def test_fast_cyclonedx_reader_knows_the_library_vocabulary() -> None:
    from cyclonedx.model import HashAlgorithm
    from cyclonedx.model.component import ComponentType

    assert {t.value for t in ComponentType} == sbom_module.COMPONENT_TYPES
    assert {h.value for h in HashAlgorithm} == sbom_module.HASH_ALGORITHMS


def test_fast_cyclonedx_reader_leaves_odd_documents_to_the_library() -> None:
    base = {"bomFormat": "CycloneDX", "specVersion": "1.5"}
    two = [{"type": "library", "name": "a", "bom-ref": "x"}, {"type": "library", "name": "b", "bom-ref": "x"}]
    for components in (
        [{"type": "library", "name": "a"}],  # no bom-ref: the library's order is not decided by the key
        two,  # duplicate bom-ref
        [{"type": "library", "name": "a", "bom-ref": "x", "purl": "not a purl"}],
        [{"type": "library", "name": 7, "bom-ref": "x"}],
    ):
        with pytest.raises(sbom_module._Unusual):
            sbom_module._cdx_json_fast({**base, "components": components}, "1.5", "x.json")
    sbom = parse_sbom(json.dumps({**base, "components": two[:1]}), "x.json")
    assert sbom.serial == "" and [c.ref for c in sbom.components] == ["x"]  # no invented serial number


def test_juice_shop_counts_and_dependencies(shared_data: Path) -> None:
    sbom = read_sbom(_sbom_dir(shared_data) / "cyclonedx-examples/SBOM/juice-shop/via_npm/flat/bom.1.4.json")
    assert (sbom.name, sbom.version) == ("juice-shop", "14.1.1")
    assert len(sbom.components) == 1115
    assert all(c.purl.startswith("pkg:npm/") for c in sbom.components)
    express = [c for c in sbom.components if c.name == "express"]
    assert express and express[0].parents  # reached through the dependency graph
    assert any(h[0] == "SHA-512" for c in sbom.components for h in c.hashes)


def test_nested_components_are_flattened_with_parent() -> None:
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "metadata": {
            "component": {
                "type": "device",
                "name": "Pump",
                "version": "3.1",
                "bom-ref": "root",
                "supplier": {"name": "Acme Medical"},
            }
        },
        "components": [
            {
                "type": "firmware",
                "name": "fw",
                "version": "2.0",
                "bom-ref": "fw",
                "cpe": "cpe:2.3:o:acme:fw:2.0:*:*:*:*:*:*:*",
                "properties": [{"name": "syft:cpe23", "value": "cpe:2.3:o:acme:pump_fw:2.0:*:*:*:*:*:*:*"}],
                "components": [
                    {
                        "type": "library",
                        "name": "zlib",
                        "version": "1.2.11",
                        "bom-ref": "zlib",
                        "purl": "pkg:generic/zlib@1.2.11",
                    }
                ],
            }
        ],
    }
    sbom = parse_sbom(json.dumps(doc))
    assert (sbom.name, sbom.version, sbom.supplier) == ("Pump", "3.1", "Acme Medical")
    by = {c.ref: c for c in sbom.components}
    assert by["zlib"].parents == ("fw",)
    assert by["fw"].cpes == (
        "cpe:2.3:o:acme:fw:2.0:*:*:*:*:*:*:*",
        "cpe:2.3:o:acme:pump_fw:2.0:*:*:*:*:*:*:*",
    )
    assert next(c.ref for c in sbom.all_components()) == "root"


def test_medical_device_sbom(shared_data: Path) -> None:
    d = _sbom_dir(shared_data)
    sbom = read_sbom(d / "medical-device-narrow.cdx.json")
    expected = json.loads((d / "medical-device-narrow.expected.json").read_text())["components"]
    assert len(sbom.components) == 55
    assert sum(1 for c in sbom.components if c.cpes) == 55
    by = {c.ref: c for c in sbom.components}
    for ref, known in expected.items():
        assert by[ref].name == known["name"] and by[ref].version == known["version"]
        assert known["cpe"] in by[ref].cpes
    wolf = by["BomRef.6730320963532548.7863229239413411"]
    assert (wolf.supplier, wolf.type) == ("wolfSSL", "library") or wolf.supplier  # publisher fallback
    assert sbom.root is not None and sbom.root.type == "device"


@pytest.mark.parametrize("version", ["1.4", "1.5", "1.6"])
def test_cyclonedx_xml_matches_json(shared_data: Path, version: str) -> None:
    from cyclonedx.model.bom import Bom
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion

    path = _sbom_dir(shared_data) / "medical-device-narrow.cdx.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bom = Bom.from_json(json.loads(path.read_text()))
        xml = make_outputter(bom, OutputFormat.XML, SchemaVersion.from_version(version)).output_as_string()
    from_json, from_xml = read_sbom(path), parse_sbom(xml, "bom.xml")
    assert from_xml.format == f"CycloneDX {version} XML"
    assert sorted(from_xml.components, key=lambda c: c.ref) == sorted(
        from_json.components, key=lambda c: c.ref
    )


def test_every_spdx2_example_reads(shared_data: Path) -> None:
    files = _spdx2_files(shared_data)
    assert len(files) >= 30
    for f in files:
        sbom = read_sbom(f)
        assert sbom.format.startswith("SPDX-2."), f
        assert sbom.name, f
    acme = read_sbom(
        _sbom_dir(shared_data) / "spdx-examples/presentations/SBOMS-SPDX-Now-and-Future/ACME-v2.3.spdx.json"
    )
    assert acme.format == "SPDX-2.3 JSON" and len(acme.components) == 3
    assert all(c.parents for c in acme.components)


def test_spdx_purl_cpe_and_relationships() -> None:
    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "pump-fw",
        "documentNamespace": "https://example.org/pump-fw-3.1",
        "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [
            {
                "SPDXID": "SPDXRef-root",
                "name": "pump-fw",
                "versionInfo": "3.1",
                "downloadLocation": "NOASSERTION",
                "supplier": "Organization: Acme Medical",
            },
            {
                "SPDXID": "SPDXRef-ssl",
                "name": "openssl",
                "versionInfo": "1.1.1t",
                "downloadLocation": "NONE",
                "checksums": [{"algorithm": "SHA256", "checksumValue": "ab" * 32}],
                "primaryPackagePurpose": "LIBRARY",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": "pkg:generic/openssl@1.1.1t",
                    },
                    {
                        "referenceCategory": "SECURITY",
                        "referenceType": "cpe23Type",
                        "referenceLocator": "cpe:2.3:a:openssl:openssl:1.1.1t:*:*:*:*:*:*:*",
                    },
                ],
            },
        ],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": "SPDXRef-root",
            },
            {
                "spdxElementId": "SPDXRef-root",
                "relationshipType": "CONTAINS",
                "relatedSpdxElement": "SPDXRef-ssl",
            },
        ],
    }
    sbom = parse_sbom(json.dumps(doc), "pump.spdx.json")
    assert (sbom.name, sbom.version, sbom.supplier) == ("pump-fw", "3.1", "Acme Medical")
    [ssl] = sbom.components
    assert ssl.purl == "pkg:generic/openssl@1.1.1t"
    assert ssl.cpes == ("cpe:2.3:a:openssl:openssl:1.1.1t:*:*:*:*:*:*:*",)
    assert (
        ssl.hashes == (("SHA-256", "ab" * 32),) and ssl.type == "library" and ssl.parents == ("SPDXRef-root",)
    )
    # the same document as tag-value (written by spdx-tools) reads to the same components
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
    from spdx_tools.spdx.writer.tagvalue.tagvalue_writer import write_document_to_stream

    out = io.StringIO()
    write_document_to_stream(JsonLikeDictParser().parse(doc), out, validate=False)
    tv = parse_sbom(out.getvalue(), "pump.spdx")
    assert tv.format == "SPDX-2.3 tag-value"
    assert tv.components == sbom.components and tv.root == sbom.root


# --- errors ------------------------------------------------------------------------------------------


def test_errors_name_file_and_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cdx.json"
    bad.write_text('{"bomFormat": "CycloneDX",\n "specVersion": "1.5",\n "components": [,]}')
    with pytest.raises(SbomError) as e:
        read_sbom(bad)
    assert e.value.source == str(bad) and e.value.location == "line 3 column 17"

    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "components": [{"type": "library", "name": "a"}, {"type": "nonsense", "name": "b"}],
    }
    with pytest.raises(SbomError) as e:
        parse_sbom(json.dumps(doc), "x.json")
    assert e.value.location == "/components/1/type"

    with pytest.raises(SbomError) as e:
        parse_sbom('{"bomFormat": "CycloneDX", "specVersion": "9.9"}', "x.json")
    assert e.value.location == "/specVersion"

    spdx = {
        "spdxVersion": "SPDX-2.3",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "d",
        "dataLicense": "CC0-1.0",
        "documentNamespace": "https://x",
        "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: t"]},
        "packages": [
            {"SPDXID": "SPDXRef-a", "name": "a", "downloadLocation": "NONE"},
            {"SPDXID": "SPDXRef-b", "downloadLocation": 7},
        ],
    }
    with pytest.raises(SbomError) as e:
        parse_sbom(json.dumps(spdx), "x.spdx.json")
    assert e.value.location == "/packages/1"

    with pytest.raises(SbomError) as e:
        parse_sbom('<bom xmlns="http://cyclonedx.org/schema/bom/1.5"><components>', "x.xml")
    assert e.value.location.startswith("line 1 column")

    with pytest.raises(SbomError):
        read_sbom(tmp_path / "missing.json")
    with pytest.raises(SbomError, match="not a CycloneDX"):
        parse_sbom("hello", "x.txt")


def test_xml_schema_error_names_the_line() -> None:
    xml = (
        '<?xml version="1.0"?>\n<bom xmlns="http://cyclonedx.org/schema/bom/1.5" version="1">\n<components>\n'
        '<component type="nonsense"><name>z</name></component>\n</components></bom>'
    )
    with pytest.raises(SbomError) as e:
        parse_sbom(xml, "a.xml")
    assert e.value.location == "line 4" and "nonsense" in e.value.message


def test_xml_entity_expansion_refused() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE bom [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        '<bom xmlns="http://cyclonedx.org/schema/bom/1.5"><metadata>&b;</metadata></bom>'
    )
    with pytest.raises(SbomError, match="refused"):
        parse_sbom(bomb, "bomb.xml")


# --- fuzz: mutated real documents raise SbomError or parse, nothing else ------------------------------

_CDX = {
    "bomFormat": "CycloneDX",
    "specVersion": "1.6",
    "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
    "metadata": {"component": {"type": "device", "name": "Pump", "version": "1", "bom-ref": "r"}},
    "components": [
        {
            "type": "library",
            "name": "zlib",
            "version": "1.2.11",
            "bom-ref": "z",
            "purl": "pkg:generic/zlib@1.2.11",
            "cpe": "cpe:2.3:a:zlib:zlib:1.2.11:*:*:*:*:*:*:*",
            "hashes": [{"alg": "SHA-256", "content": "a" * 64}],
            "components": [{"type": "file", "name": "inflate.c", "bom-ref": "i"}],
        }
    ],
    "dependencies": [{"ref": "r", "dependsOn": ["z"]}],
}
_CDX_TEXT = json.dumps(_CDX, indent=1)
_XML = (
    '<?xml version="1.0"?><bom xmlns="http://cyclonedx.org/schema/bom/1.5" version="1"><components>'
    '<component type="library" bom-ref="z"><name>zlib</name><version>1.2.11</version>'
    '<purl>pkg:generic/zlib@1.2.11</purl><hashes><hash alg="SHA-256">' + "a" * 64 + "</hash></hashes>"
    "</component></components></bom>"
)
_TV = """SPDXVersion: SPDX-2.3
DataLicense: CC0-1.0
SPDXID: SPDXRef-DOCUMENT
DocumentName: fw
DocumentNamespace: https://example.org/fw
Creator: Tool: test
Created: 2024-01-01T00:00:00Z
Relationship: SPDXRef-DOCUMENT DESCRIBES SPDXRef-fw

PackageName: fw
SPDXID: SPDXRef-fw
PackageVersion: 3.1
PackageDownloadLocation: NONE

PackageName: zlib
SPDXID: SPDXRef-zlib
PackageVersion: 1.2.11
PackageDownloadLocation: NONE
ExternalRef: PACKAGE-MANAGER purl pkg:generic/zlib@1.2.11
Relationship: SPDXRef-fw CONTAINS SPDXRef-zlib
"""


_SPDX_TEXT = json.dumps(
    {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT", "name": "fw",
        "documentNamespace": "https://example.org/fw",
        "creationInfo": {"created": "2024-01-01T00:00:00Z", "creators": ["Tool: test"]},
        "packages": [
            {"SPDXID": "SPDXRef-fw", "name": "fw", "versionInfo": "3.1", "downloadLocation": "NONE"},
            {"SPDXID": "SPDXRef-z", "name": "zlib", "versionInfo": "1.2.11", "downloadLocation": "NONE",
             "checksums": [{"algorithm": "SHA256", "checksumValue": "a" * 64}],
             "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                               "referenceLocator": "pkg:generic/zlib@1.2.11"}]},
        ],
        "relationships": [
            {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
             "relatedSpdxElement": "SPDXRef-fw"},
            {"spdxElementId": "SPDXRef-fw", "relationshipType": "CONTAINS",
             "relatedSpdxElement": "SPDXRef-z"},
        ],
    }
)  # fmt: skip


def test_fuzz_seeds_parse() -> None:
    spdx = parse_sbom(_SPDX_TEXT)
    assert [(c.name, c.purl, c.parents) for c in spdx.components] == [
        ("zlib", "pkg:generic/zlib@1.2.11", ("SPDXRef-fw",))
    ]
    assert [c.name for c in parse_sbom(_CDX_TEXT).components] == ["zlib", "inflate.c"]
    assert [c.name for c in parse_sbom(_XML).components] == ["zlib"]
    tv = parse_sbom(_TV)
    assert tv.name == "fw" and [(c.name, c.parents) for c in tv.components] == [("zlib", ("SPDXRef-fw",))]


def _mutate(text: str, data: st.DataObject) -> str:
    ops = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from("dir"), st.integers(0, len(text)), st.integers(1, 12), st.text(max_size=8)
            ),
            min_size=1,
            max_size=4,
        )
    )
    for op, pos, n, ins in ops:
        pos = min(pos, len(text))
        if op == "d":
            text = text[:pos] + text[pos + n :]
        elif op == "i":
            text = text[:pos] + ins + text[pos:]
        else:
            text = text[:pos] + ins + text[pos + n :]
    return text


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda s: st.lists(s, max_size=3) | st.dictionaries(st.text(max_size=6), s, max_size=3),
    max_leaves=6,
)


def _check(text: str) -> None:
    with contextlib.suppress(SbomError):
        parse_sbom(text, "fuzz")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_text_mutations(data: st.DataObject) -> None:
    seed = data.draw(st.sampled_from([_CDX_TEXT, _XML, _TV]))
    _check(_mutate(seed, data))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_json_structure(data: st.DataObject) -> None:
    doc = json.loads(data.draw(st.sampled_from([_CDX_TEXT, _SPDX_TEXT])))
    # replace one value somewhere in the tree by an arbitrary JSON value
    node, keys = doc, []
    while isinstance(node, dict | list) and node and data.draw(st.integers(0, 3)) > 0:
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
        keys.append(key)
        node = node[key]
    target = doc
    for k in keys[:-1]:
        target = target[k]
    if keys:
        target[keys[-1]] = data.draw(_JSON_VALUES)
    _check(json.dumps(doc))
