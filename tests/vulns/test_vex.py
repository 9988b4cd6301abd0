from __future__ import annotations

import contextlib
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.vulns.vex import (
    CDX_TO_OPENVEX,
    OPENVEX_TO_CDX,
    VexError,
    VexStatement,
    dump_vex,
    parse_bom_link,
    parse_vex,
    read_vex,
    to_csaf,
    to_cyclonedx,
    to_openvex,
)

FORMATS = ("cyclonedx", "openvex", "csaf")


def _sorted(statements: list[VexStatement]) -> list[VexStatement]:
    return sorted(statements, key=VexStatement.sort_key)


def _examples(shared_data: Path) -> list[Path]:
    cdx = sorted((shared_data / "sbom/cyclonedx-examples/VEX").rglob("*.json"))
    csaf = sorted((shared_data / "vulns/csaf-oasis").glob("csaf_2.*/examples/csaf/csaf_vex/*.json"))
    if not cdx or not csaf:
        pytest.skip("VEX examples missing")
    # the CycloneDX folder also holds the plain BOMs the VEX documents point into
    return [p for p in cdx if "vulnerabilities" in json.loads(p.read_text())] + csaf


def test_every_example_parses(shared_data: Path) -> None:
    files = _examples(shared_data)
    assert len(files) == 25 + 26
    total = 0
    for f in files:
        statements = read_vex(f)
        assert statements, f
        total += len(statements)
    assert total > 300


def test_known_statements(shared_data: Path) -> None:
    case = read_vex(shared_data / "sbom/cyclonedx-examples/VEX/CISA-Use-Cases/Case-1/vex-not_affected.json")
    [s] = case
    assert (s.vulnerability, s.status, s.justification) == (
        "CVE-2021-44228",
        "not_affected",
        "code_not_present",
    )
    assert s.responses == ("will_not_fix",) and s.subject.endswith("product-ABC")
    assert s.openvex_justification == "vulnerable_code_not_present"

    ranges = read_vex(shared_data / "sbom/cyclonedx-examples/VEX/CISA-Use-Cases/Case-6/vex.json")
    affected = {s.version for s in ranges if s.status == "affected"}
    assert affected == {"2.4", "2.6", "vers:generic/>=2.9|<=4.1"}

    csaf = read_vex(shared_data / "vulns/csaf-oasis/csaf_2.0/examples/csaf/csaf_vex/sec-vex-2022-0001.json")
    assert {s.vulnerability for s in csaf} == {"CVE-2021-44228", "CVE-2021-45046", "CVE-2021-45105"}
    assert all(s.status == "not_affected" and s.justification == "component_not_present" for s in csaf)
    assert all(s.timestamp == datetime(2022, 5, 27, 10, tzinfo=UTC) for s in csaf)
    assert all(s.impact_statement and s.author for s in csaf)

    ui = read_vex(shared_data / "vulns/csaf-oasis/csaf_2.0/examples/csaf/csaf_vex/2022-evd-uc-05-001.json")
    assert [(s.subject, s.version, s.status) for s in ui] == [
        ("Example Company XYZ all versions", "vers:all/*", "under_investigation")
    ]

    everything = read_vex(shared_data / "sbom/cyclonedx-examples/VEX/Use-Cases/Case-7/vex.json")
    assert [(s.subject, s.status, s.author) for s in everything] == [("", "not_affected", "Acme, Inc.")]

    fixes = read_vex(shared_data / "vulns/csaf-oasis/csaf_2.0/examples/csaf/csaf_vex/2022-evd-uc-04-001.json")
    assert all(s.status == "affected" and s.responses == ("update",) and s.action_statement for s in fixes)


def test_round_trip_every_example_through_every_format(shared_data: Path) -> None:
    for f in _examples(shared_data):
        original = _sorted(read_vex(f))
        for a in FORMATS:
            once = _sorted(parse_vex(dump_vex(original, a), a))
            assert once == original, (f, a)
            for b in FORMATS:  # A -> neutral -> B -> neutral
                assert _sorted(parse_vex(dump_vex(once, b), b)) == original, (f, a, b)


def test_writers_produce_schema_valid_documents(shared_data: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from cyclonedx.validation import make_schemabased_validator
    from referencing import Registry, Resource

    base = shared_data / "vulns/csaf-oasis/csaf_2.0"
    schema = json.loads((base / "json_schema/csaf_json_schema.json").read_text())
    resources = []
    for name in ("cvss-v2.0", "cvss-v3.0", "cvss-v3.1"):
        doc = json.loads((base / f"referenced_schema/first/{name}.json").read_text())
        resources.append((f"https://www.first.org/cvss/{name}.json", Resource.from_contents(doc)))
    csaf_validator = jsonschema.Draft202012Validator(schema, registry=Registry().with_resources(resources))
    cdx_validator = make_schemabased_validator(OutputFormat.JSON, SchemaVersion.V1_6)
    for f in _examples(shared_data):
        statements = read_vex(f)
        errors = sorted(csaf_validator.iter_errors(to_csaf(statements)), key=lambda e: list(e.path))
        assert not errors, (f, errors[0].message, list(errors[0].path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert cdx_validator.validate_str(json.dumps(to_cyclonedx(statements))) is None, f
        ov = to_openvex(statements)
        assert ov["@context"] == "https://openvex.dev/ns/v0.2.0" and ov["statements"]
        allowed = {
            "@id",
            "version",
            "vulnerability",
            "timestamp",
            "last_updated",
            "products",
            "status",
            "supplier",
            "status_notes",
            "justification",
            "impact_statement",
            "action_statement",
            "action_statement_timestamp",
        }
        for s in ov["statements"]:
            assert set(s) <= allowed  # the OpenVEX schema forbids other members
            assert s.get("justification", "vulnerable_code_not_present") in OPENVEX_TO_CDX


def test_mapping_tables_are_consistent() -> None:
    # every OpenVEX label maps to a CycloneDX label that maps back into the OpenVEX vocabulary
    assert set(CDX_TO_OPENVEX.values()) == set(OPENVEX_TO_CDX)
    assert set(OPENVEX_TO_CDX.values()) <= set(CDX_TO_OPENVEX)
    assert all(CDX_TO_OPENVEX[OPENVEX_TO_CDX[k]] in OPENVEX_TO_CDX for k in OPENVEX_TO_CDX)


def _full(**kw: object) -> VexStatement:
    base = dict(
        vulnerability="CVE-2024-0001",
        subject="pkg:generic/zlib@1.2.11",
        status="not_affected",
        justification="protected_at_perimeter",
        impact_statement="Port 104 is never reachable.",
        action_statement="Keep the DICOM port firewalled.",
        responses=("rollback", "workaround_available"),
        timestamp=datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC),
        author="Hospital PSIRT",
    )
    base.update(kw)
    return VexStatement(**base)  # type: ignore[arg-type]


def test_fields_a_format_lacks_survive_through_its_extension() -> None:
    statements = [
        _full(),
        _full(
            subject="cpe:2.3:o:acme:pump_fw:3.1:*:*:*:*:*:*:*",
            version="vers:generic/<3.2",
            author="Acme",
            timestamp=None,
            status="affected",
            justification="",
            responses=(),
        ),
        _full(
            vulnerability="GHSA-abcd-efgh-ijkl",
            subject="urn:cdx:1234/1#pump",
            status="fixed",
            justification="vulnerable_code_not_in_execute_path",
            impact_statement="",
            action_statement="",
        ),
        _full(subject="pkg:generic/zlib@1.2.11", version="1.2.11", status="under_investigation"),
    ]
    for a in FORMATS:
        back = parse_vex(dump_vex(statements, a), a)
        assert _sorted(back) == _sorted(statements), a
    # and the native fields are still right for tools that do not know the extension
    cdx = to_cyclonedx(statements)["vulnerabilities"][0]
    assert cdx["analysis"]["justification"] == "protected_at_perimeter"
    assert cdx["analysis"]["response"] == ["rollback", "workaround_available"]
    ov = to_openvex(statements)["statements"][0]
    assert ov["justification"] == "inline_mitigations_already_exist"
    csaf = to_csaf(statements)
    first = csaf["vulnerabilities"][0]
    assert first["flags"][0]["label"] == "inline_mitigations_already_exist"
    # rollback has no CSAF category; an action without any response becomes a mitigation
    assert [(r["category"], r["product_ids"]) for r in first["remediations"]] == [
        ("workaround", ["MEDSENTRY-0001", "MEDSENTRY-0004"]),
        ("mitigation", ["MEDSENTRY-0002"]),
    ]
    ghsa = next(v for v in csaf["vulnerabilities"] if "ids" in v)
    assert ghsa["ids"] == [{"system_name": "GHSA", "text": "GHSA-abcd-efgh-ijkl"}]


def test_errors_name_the_location() -> None:
    with pytest.raises(VexError) as e:
        parse_vex(
            '{"bomFormat": "CycloneDX", "vulnerabilities": [{"id": "CVE-1", "affects": [{"ref": 5}]}]}', "x"
        )
    assert e.value.location == "/vulnerabilities/0/affects/0/ref"
    with pytest.raises(VexError) as e:
        parse_vex(
            '{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{"vulnerability": {"name": "C"},'
            ' "status": "maybe"}]}',
            "y",
        )
    assert e.value.location == "/statements/0/status"
    with pytest.raises(VexError) as e:
        parse_vex(
            '{"document": {"csaf_version": "2.0"}, "vulnerabilities": [{"cve": "CVE-1",'
            ' "product_status": {"fixed": ["A", 3]}}]}',
            "z",
        )
    assert e.value.location == "/vulnerabilities/0/product_status/fixed"
    with pytest.raises(VexError) as e:
        parse_vex('{"bomFormat": "CycloneDX",\n"vulnerabilities": [}', "w")
    assert e.value.location == "line 2 column 21"
    with pytest.raises(VexError, match="not a CycloneDX, OpenVEX or CSAF"):
        parse_vex("{}", "v")


# --- fuzz: mutated documents give statements or VexError, nothing else -----------------------------------

_SEED = [
    _full(),
    _full(
        subject="cpe:2.3:o:acme:pump_fw:3.1:*:*:*:*:*:*:*",
        version="vers:generic/<3.2",
        status="affected",
        timestamp=None,
    ),
]
_SEEDS = {fmt: json.loads(dump_vex(_SEED, fmt)) for fmt in FORMATS}
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda s: st.lists(s, max_size=3) | st.dictionaries(st.text(max_size=8), s, max_size=3),
    max_leaves=6,
)


def _poke(doc: object, data: st.DataObject) -> object:
    doc = json.loads(json.dumps(doc))
    node, keys = doc, []
    while isinstance(node, dict | list) and node and data.draw(st.integers(0, 5)) > 0:
        key = data.draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
        keys.append(key)
        node = node[key]
    if not keys:
        return data.draw(_VALUES)
    target = doc
    for k in keys[:-1]:
        target = target[k]  # type: ignore[index]
    if isinstance(target, dict) and data.draw(st.booleans()):
        del target[keys[-1]]
    else:
        target[keys[-1]] = data.draw(_VALUES)  # type: ignore[index]
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_structure(data: st.DataObject) -> None:
    doc = _poke(_SEEDS[data.draw(st.sampled_from(FORMATS))], data)
    with contextlib.suppress(VexError):
        result = parse_vex(json.dumps(doc), "fuzz")
        assert all(isinstance(s, VexStatement) for s in result)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FORMATS), st.integers(0, 10_000), st.integers(1, 20), st.text(max_size=5))
def test_fuzz_text(fmt: str, pos: int, n: int, ins: str) -> None:
    text = json.dumps(_SEEDS[fmt], indent=1)
    pos %= len(text)
    with contextlib.suppress(VexError):
        parse_vex(text[:pos] + ins + text[pos + n :], "fuzz")


def test_every_oasis_csaf_document_reads_or_fails_cleanly(shared_data: Path) -> None:
    files = sorted((shared_data / "vulns/csaf-oasis").rglob("*.json"))
    read = failed = 0
    for f in files:
        doc = json.loads(f.read_text())
        if not isinstance(doc, dict) or "document" not in doc:
            continue
        try:
            parse_vex(doc, str(f))
            read += 1
        except VexError as e:
            failed += 1
            assert "nested too deeply" in e.message, e  # only the branch-depth test cases are unreadable
    assert read > 1000 and failed == 2


def test_csaf_product_groups_and_unnamed_vulnerabilities() -> None:
    doc = {
        "document": {
            "csaf_version": "2.0",
            "publisher": {"name": "Acme PSIRT"},
            "tracking": {"current_release_date": "2024-02-01T00:00:00Z"},
        },
        "product_tree": {
            "full_product_names": [
                {"product_id": "A", "name": "Pump 3.1"},
                {"product_id": "B", "name": "Pump 3.2"},
            ],
            "product_groups": [{"group_id": "G", "product_ids": ["A", "B"]}],
        },
        "vulnerabilities": [
            {
                "cve": "CVE-2024-1",
                "product_status": {"known_not_affected": ["A", "B"]},
                "flags": [
                    {
                        "label": "vulnerable_code_not_present",
                        "group_ids": ["G"],
                        "date": "2024-01-05T00:00:00Z",
                    }
                ],
            },
            {"product_status": {"fixed": ["A"]}},
        ],
    }
    problems: list[str] = []
    statements = parse_vex(doc, "g.json", problems)
    assert [(s.subject, s.justification, s.timestamp) for s in statements] == [
        ("Pump 3.1", "vulnerable_code_not_present", datetime(2024, 1, 5, tzinfo=UTC)),
        ("Pump 3.2", "vulnerable_code_not_present", datetime(2024, 1, 5, tzinfo=UTC)),
    ]
    assert all(s.author == "Acme PSIRT" for s in statements)
    assert problems == [
        "/vulnerabilities/1: product_status for a vulnerability without cve, ids or title; skipped"
    ]


def test_openvex_document() -> None:
    doc = {
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://openvex.dev/docs/example/vex-9fb3463de1b57",
        "author": "Wolfi J Inkinson",
        "timestamp": "2023-01-08T18:02:03.647787998-06:00",
        "version": 1,
        "statements": [
            {
                "vulnerability": {"name": "CVE-2014-123456"},
                "products": [
                    {"@id": "pkg:apk/distro/git@2.39.0-r1?arch=armv7"},
                    {"identifiers": {"purl": "pkg:apk/distro/git@2.39.0-r1?arch=x86_64"}},
                ],
                "status": "fixed",
            },
            {
                "vulnerability": "CVE-2023-1",
                "timestamp": "2023-02-01T00:00:00Z",
                "status": "not_affected",
                "justification": "inline_mitigations_already_exist",
                "products": [{"@id": "pkg:oci/img"}],
            },
        ],
    }
    statements = parse_vex(json.dumps(doc))
    assert [(s.vulnerability, s.subject, s.status) for s in statements] == [
        ("CVE-2014-123456", "pkg:apk/distro/git@2.39.0-r1?arch=armv7", "fixed"),
        ("CVE-2014-123456", "pkg:apk/distro/git@2.39.0-r1?arch=x86_64", "fixed"),
        ("CVE-2023-1", "pkg:oci/img", "not_affected"),
    ]
    assert statements[0].timestamp == datetime(2023, 1, 9, 0, 2, 3, 647787, tzinfo=UTC)  # the document's
    assert statements[2].timestamp == datetime(2023, 2, 1, tzinfo=UTC)
    assert statements[2].cyclonedx_justification == "protected_by_mitigating_control"
    assert all(s.author == "Wolfi J Inkinson" for s in statements)


def test_bom_links_and_dict_form(shared_data: Path) -> None:
    from medsentry.vulns.sbom import read_sbom

    case = shared_data / "sbom/cyclonedx-examples/VEX/Use-Cases/Case-13"
    sboms = {(s.serial, 1): s for s in map(read_sbom, sorted(case.glob("bom-*.json")))}
    statements = read_vex(case / "vex.json")
    assert len(statements) == 3
    for statement in statements:
        link = parse_bom_link(statement.subject)
        assert link is not None and link.version == 1
        sbom = sboms[(link.serial, link.version)]  # each link names one of the three product SBOMs
        assert sbom.root is not None and sbom.root.ref == link.bom_ref
        assert VexStatement.from_dict(json.loads(json.dumps(statement.as_dict()))) == statement
    assert parse_bom_link("pkg:npm/a@1") is None
