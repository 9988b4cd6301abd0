"""Feed parsers against every real record in ../shared/data/vulns, error locations, and fuzzing."""

from __future__ import annotations

import contextlib
import copy
import gzip
import json
import tempfile
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.vulns.feeds import FeedError, Problems, csaf, cve5, detect, epss, kev, nvd, nvd11, osv
from medsentry.vulns.feeds import parse as parse_any
from medsentry.vulns.records import CsafDocument, Vulnerability
from medsentry.vulns.store import VulnStore


@pytest.fixture(scope="module")
def vulns(shared_data: Path) -> Path:
    return shared_data / "vulns"


def _json_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


# -- NVD ------------------------------------------------------------------------------------------------


def test_nvd_every_record_parses(vulns: Path) -> None:
    problems = Problems()
    records = list(nvd.parse(vulns / "nvd", problems))
    assert problems.count == 0, problems.errors[:3]
    assert len(records) == len(_json_files(vulns / "nvd"))
    by_id = {r.id: r for r in records}
    for file in _json_files(vulns / "nvd" / "unanalyzed"):
        assert by_id[file.stem].configurations == []
    with_config = [r for r in records if r.configurations]
    assert len(with_config) == len(_json_files(vulns / "nvd")) - len(
        _json_files(vulns / "nvd" / "unanalyzed")
    )


def test_nvd_scores_recomputed_agree_with_nvd(vulns: Path) -> None:
    """The cvss library's score equals the score NVD published for the same vector, except in one fixture
    whose published 9.8 belongs to C:H/I:H/A:H, not to its own C:H/I:N/A:N vector: why scores are
    recomputed."""
    checked, disagree = 0, []
    for file in _json_files(vulns / "nvd"):
        item = json.loads(file.read_text())
        (record,) = nvd.from_document(item, file)
        published = {
            m["cvssData"]["vectorString"]: m["cvssData"]["baseScore"]
            for key in ("cvssMetricV31", "cvssMetricV30", "cvssMetricV40")
            for m in item["cve"]["metrics"].get(key, [])
        }
        for cvss in (record.cvss3, record.cvss4):
            if cvss is not None and cvss.vector in published:
                checked += 1
                if cvss.score != published[cvss.vector]:
                    disagree.append((record.id, cvss.vector, published[cvss.vector], cvss.score))
    assert checked > 100
    assert disagree == [("CVE-2018-18074", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 9.8, 7.5)]


def test_cvss4_score_is_the_base_score() -> None:
    from medsentry.vulns.feeds._common import cvss_from_vector

    base = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
    plain, threat = cvss_from_vector(base, "x", "/v"), cvss_from_vector(base + "/E:U", "x", "/v")
    assert plain.score == threat.score == 9.3 and threat.vector.endswith("/E:U")
    with pytest.raises(ValueError, match="invalid CVSS vector"):
        cvss_from_vector("CVSS:3.1/AV:N", "x", "/v")


def test_nvd_medical_record_fields(vulns: Path) -> None:
    (record,) = nvd.parse(vulns / "nvd" / "CVE-2018-10597.json")
    assert record.id == "CVE-2018-10597" and record.source == "nvd"
    assert record.published == datetime(2018, 6, 5, 20, 29, 0, 827000, tzinfo=UTC)
    assert record.cvss3 is not None and record.cvss3.score == 8.3 and record.cvss3.source == "nvd@nist.gov"
    assert record.cvss3.vector == "CVSS:3.1/AV:A/AC:H/PR:N/UI:N/S:C/C:H/I:H/A:H"
    assert record.cwes == ("CWE-287", "CWE-787")
    assert record.description.startswith("IntelliVue Patient Monitors")
    criteria = {m["criteria"] for c in record.configurations for n in c["nodes"] for m in n["cpeMatch"]}
    assert "cpe:2.3:h:philips:intellivue_mp2:-:*:*:*:*:*:*:*" in criteria


def test_nvd_affected_is_flattened_with_its_source(vulns: Path) -> None:
    (record,) = nvd.parse(vulns / "nvd" / "CVE-2024-3094.json")
    packages = [a for a in record.affected if a.get("packageName") == "xz" and "versions" in a]
    assert packages and packages[0]["x_source"] == "secalert@redhat.com"
    assert {v["version"] for v in packages[0]["versions"]} == {"5.6.0", "5.6.1"}
    assert record.ssvc == {"Exploitation": "none", "Automatable": "yes", "Technical Impact": "total"}


def test_nvd_api_page_and_gzip(vulns: Path, tmp_path: Path) -> None:
    items = [json.loads(f.read_text()) for f in _json_files(vulns / "nvd")[:7]]
    page = {
        "resultsPerPage": 7,
        "startIndex": 0,
        "totalResults": 7,
        "format": "NVD_CVE",
        "version": "2.0",
        "vulnerabilities": items,
    }
    target = tmp_path / "page.json.gz"
    target.write_bytes(gzip.compress(json.dumps(page).encode()))
    ids = [r.id for r in nvd.parse(target)]
    assert ids == [i["cve"]["id"] for i in items]


def test_nvd_bad_item_is_skipped_with_its_pointer(vulns: Path, tmp_path: Path) -> None:
    items = [json.loads(f.read_text()) for f in _json_files(vulns / "nvd")[:3]]
    items[1]["cve"]["id"] = "not-a-cve"
    items[2]["cve"]["metrics"]["cvssMetricV31"] = [
        {"type": "Primary", "cvssData": {"vectorString": "CVSS:3.1/AV:Q"}}
    ]
    target = tmp_path / "page.json"
    target.write_text(json.dumps({"totalResults": 3, "vulnerabilities": items}))
    problems = Problems()
    records = list(nvd.parse(target, problems))
    assert [r.id for r in records] == [items[0]["cve"]["id"], items[2]["cve"]["id"]]
    assert records[1].cvss3 is None  # the bad metric is dropped, the record kept
    locations = [e.location for e in problems.errors]
    assert locations == [
        "/vulnerabilities/1/cve/id",
        "/vulnerabilities/2/cve/metrics/cvssMetricV31/0/cvssData/vectorString",
    ]
    assert all(str(target) in str(e) for e in problems.errors)
    with pytest.raises(FeedError, match=r"/vulnerabilities/1/cve/id"):
        list(nvd.parse(target))  # strict mode: the first problem raises


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    target = tmp_path / "broken.json"
    target.write_text('{"cve": {\n  "id": "CVE-2020-0001",\n  "published": }\n}')
    with pytest.raises(FeedError) as caught:
        list(nvd.parse(target))
    assert caught.value.path == str(target) and caught.value.location == "line 3 col 16"


def test_nvd11_converted_to_nvd2_shape_losing_nothing(vulns: Path) -> None:
    problems = Problems()
    records = {r.id: r for r in nvd11.parse(vulns / "nvd-1.1", problems)}
    assert problems.count == 0 and len(records) == len(_json_files(vulns / "nvd-1.1"))
    for file in _json_files(vulns / "nvd-1.1"):
        item = json.loads(file.read_text())
        nodes = item["configurations"]["nodes"]
        source = sorted(
            (m["cpe23Uri"], m["vulnerable"], m.get("versionEndExcluding") or "")
            for n in nodes
            for leaf in (n.get("children") or [n])
            for m in leaf.get("cpe_match", [])
        )
        record = records[item["cve"]["CVE_data_meta"]["ID"]]
        converted = sorted(
            (m["criteria"], m["vulnerable"], m.get("versionEndExcluding") or "")
            for c in record.configurations
            for n in c["nodes"]
            for m in n["cpeMatch"]
        )
        assert converted == source and len(record.configurations) == len(nodes)
    anded = [c for r in records.values() for c in r.configurations if c.get("operator") == "AND"]
    assert anded and all(len(c["nodes"]) >= 2 for c in anded)
    assert all(not records[f.stem].configurations for f in _json_files(vulns / "nvd-1.1" / "unanalyzed"))


# -- CVE 5 / vulnrichment ---------------------------------------------------------------------------------


def test_cve5_and_vulnrichment_every_record_parses(vulns: Path) -> None:
    problems = Problems()
    records = list(cve5.parse(vulns / "cve5", problems)) + list(cve5.parse(vulns / "vulnrichment", problems))
    assert problems.count == 0, problems.errors[:3]
    assert len(records) == len(_json_files(vulns / "cve5")) + len(_json_files(vulns / "vulnrichment"))
    by_id = {r.id: r for r in records if r.source == "cve5"}
    kernel = by_id["CVE-2025-21631"]
    assert any("block/bfq-iosched.c" in a.get("programFiles", []) for a in kernel.affected)
    assert any(v.get("versionType") == "git" for a in kernel.affected for v in a.get("versions", []))
    assert by_id["CVE-2024-40946"].rejected
    assert sum(bool(a.get("cpes")) for r in records for a in r.affected) > 0


def test_vulnrichment_ssvc_and_adp_cvss(vulns: Path) -> None:
    (record,) = cve5.parse(vulns / "vulnrichment" / "CVE-2017-0144.json")
    assert record.ssvc == {"Exploitation": "active", "Automatable": "no", "Technical Impact": "total"}
    assert record.cvss3 is not None and record.cvss3.score == 8.8 and record.cvss3.source == "CISA-ADP"


# -- KEV / EPSS ---------------------------------------------------------------------------------------------


def test_kev_catalog(vulns: Path) -> None:
    catalog = json.loads((vulns / "cisa-kev" / "known_exploited_vulnerabilities.json").read_text())
    problems = Problems()
    entries = list(kev.parse(vulns / "cisa-kev" / "known_exploited_vulnerabilities.json", problems))
    assert problems.count == 0 and len(entries) == catalog["count"]
    eternal = next(e for e in entries if e.cve == "CVE-2017-0144")
    assert eternal.vendor == "Microsoft" and eternal.date_added == date(2022, 2, 10)
    assert {e.ransomware for e in entries} == {True, False}


def test_epss_csv_plain_gzip_and_old_format(vulns: Path, tmp_path: Path) -> None:
    source = next((vulns / "epss").glob("*.csv"))
    scores = list(epss.parse(source))
    assert [s.cve for s in scores] == [f"CVE-1999-000{i}" for i in range(1, 6)]
    assert scores[4].epss == 0.91963 and scores[4].percentile == 0.99214
    assert {s.date for s in scores} == {date(2025, 2, 20)} and scores[0].model_version == "v2023.03.01"
    gz = tmp_path / "epss.csv.gz"
    gz.write_bytes(gzip.compress(source.read_bytes()))
    assert list(epss.parse(gz)) == scores
    old = tmp_path / "old.csv"
    old.write_text("cve,epss,percentile\nCVE-2021-44228,0.97565,0.99995\n")
    assert [(s.cve, s.date) for s in epss.parse(old)] == [("CVE-2021-44228", None)]


def test_epss_bad_rows_name_their_line(tmp_path: Path) -> None:
    target = tmp_path / "epss.csv"
    target.write_text(
        "#model_version:v1,score_date:2025-01-01T00:00:00+0000\ncve,epss,percentile\n"
        "CVE-2020-0001,0.5,0.5\nCVE-2020-0002,abc,0.5\nnope,0.1,0.1\nCVE-2020-0003,1.5,0.1\n"
    )
    problems = Problems()
    assert [s.cve for s in epss.parse(target, problems)] == ["CVE-2020-0001"]
    assert [e.location for e in problems.errors] == ["line 4", "line 5", "line 6"]


# -- CSAF -------------------------------------------------------------------------------------------------


def test_csaf_icsma_every_advisory_parses(vulns: Path) -> None:
    problems = Problems()
    documents = list(csaf.parse(vulns / "csaf-icsma", problems))
    assert problems.count == 0, problems.errors[:3]
    assert len(documents) == len(_json_files(vulns / "csaf-icsma")) == 124
    assert len({d.key for d in documents}) == 124
    assert all(d.publisher and d.cve_ids for d in documents)
    intellivue = [d for d in documents if "CVE-2018-10597" in d.cve_ids]
    assert intellivue and any("IntelliVue" in name for name in intellivue[0].product_names)
    assert all(isinstance(d.document["product_tree"], dict) for d in documents)  # kept whole


def test_csaf_oasis_examples_and_vex_parse(vulns: Path) -> None:
    problems = Problems()
    documents = list(csaf.parse(vulns / "csaf-oasis" / "csaf_2.0" / "examples" / "csaf", problems))
    assert problems.count == 0
    assert len(documents) == len(_json_files(vulns / "csaf-oasis" / "csaf_2.0" / "examples" / "csaf"))
    assert any(d.document["document"]["category"] == "csaf_vex" for d in documents)


def test_csaf_oasis_everything_is_a_document_or_a_located_error(vulns: Path) -> None:
    """The OASIS tree mixes schemas, ROLIE feeds and deliberately invalid test documents."""
    problems = Problems()
    documents = list(csaf.parse(vulns / "csaf-oasis", problems))
    assert len(documents) > 500
    assert all(isinstance(d, CsafDocument) for d in documents)
    assert problems.count > 0 and all(e.path.startswith(str(vulns)) for e in problems.errors)
    deep = (
        vulns / "csaf-oasis/csaf_2.1/test/validator/data/mandatory/oasis_csaf_tc-csaf_2_1-2024-6-1-34-01.json"
    )
    with pytest.raises(FeedError, match="nested deeper"):  # the 2.1 branches recursion-depth test case
        list(csaf.parse(deep))


# -- OSV ----------------------------------------------------------------------------------------------------


def test_osv_pypi_yaml_every_advisory(vulns: Path) -> None:
    problems = Problems()
    advisories = list(osv.parse(vulns / "osv-pypi" / "vulns", problems))
    assert problems.count == 0
    assert len(advisories) == len(list((vulns / "osv-pypi" / "vulns").rglob("*.yaml")))
    zstd = next(a for a in advisories if a.id == "PYSEC-2023-121")
    assert zstd.aliases == ("CVE-2022-4899",)
    (affected,) = zstd.affected
    assert (affected.ecosystem, affected.package, affected.purl) == ("PyPI", "zstd", "pkg:pypi/zstd")
    assert "1.3.0.2" in affected.versions and affected.ranges[0]["events"] == [{"introduced": "0"}]
    # versions stay text even where YAML would read a float ("1.10" is not 1.1)
    assert all(isinstance(v, str) for a in advisories for x in a.affected for v in x.versions)


def test_osv_all_zip_archive(vulns: Path, tmp_path: Path) -> None:
    sources = sorted((vulns / "osv-pypi" / "vulns").rglob("*.yaml"))[:25]
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for source in sources:
            zf.writestr(
                source.stem + ".json", json.dumps(yaml.load(source.read_text(), Loader=yaml.BaseLoader))
            )
        zf.writestr("broken.json", "{")
    problems = Problems()
    advisories = list(osv.parse(archive, problems))
    assert sorted(a.id for a in advisories) == sorted(s.stem for s in sources)
    assert [(e.location, e.path) for e in problems.errors] == [("broken.json: line 1 col 2", str(archive))]


def test_yaml_error_names_line(tmp_path: Path) -> None:
    target = tmp_path / "bad.yaml"
    target.write_text("id: PYSEC-1\nmodified: 2020-01-01\naffected: [\n  - x: : :\n")
    problems = Problems()
    assert list(osv.parse(target, problems)) == []
    assert problems.errors[0].location.startswith("line ")


# -- detection ----------------------------------------------------------------------------------------------


def test_detect_each_kind(vulns: Path) -> None:
    samples = {
        "nvd": vulns / "nvd" / "CVE-2018-10597.json",
        "cve5": vulns / "cve5" / "CVE-2025-21631.json",
        "kev": vulns / "cisa-kev" / "known_exploited_vulnerabilities.json",
        "csaf": next((vulns / "csaf-icsma" / "2020").glob("*.json")),
    }
    for kind, path in samples.items():
        assert detect(json.loads(path.read_text())) == kind
    assert (
        detect(yaml.safe_load((vulns / "osv-pypi" / "vulns" / "zstd" / "PYSEC-2023-121.yaml").read_text()))
        == "osv"
    )
    schema = vulns / "cisa-kev" / "known_exploited_vulnerabilities_schema.json"
    assert detect(json.loads(schema.read_text())) is None


def test_parse_any_mixed_directory(vulns: Path) -> None:
    problems = Problems()
    records = list(parse_any(vulns / "vulnrichment", problems=problems)) + list(
        parse_any(vulns / "epss", problems=problems)
    )
    assert problems.count == 0
    assert sum(isinstance(r, Vulnerability) for r in records) == 5 and len(records) == 10


def test_parse_any_zip_mirror_detects_each_member(vulns: Path, tmp_path: Path) -> None:
    archive = tmp_path / "mirror.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(vulns / "nvd" / "CVE-2018-10597.json", "nvd/CVE-2018-10597.json")
        zf.write(vulns / "cve5" / "CVE-2025-21631.json", "cve5/CVE-2025-21631.json")
        zf.write(vulns / "cisa-kev" / "known_exploited_vulnerabilities.json", "kev.json")
        zf.write(vulns / "cisa-kev" / "known_exploited_vulnerabilities_schema.json", "schema.json")
    problems = Problems()
    records = list(parse_any(archive, problems=problems))
    kinds = {(type(r).__name__, getattr(r, "source", "")) for r in records}
    assert kinds == {("Vulnerability", "nvd"), ("Vulnerability", "cve5"), ("KevEntry", "")}
    assert problems.count == 0 and len(records) == 2 + 1404


# -- fuzzing: mutated input yields records or FeedErrors, nothing else ------------------------------------

_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:4]):
            found += _paths(child, (*prefix, index))
    return found


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    mutated = copy.deepcopy(document)
    target = mutated
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return mutated


def _seeds() -> dict[str, tuple[Any, str]]:
    from tests.conftest import SHARED_DATA

    v = SHARED_DATA / "vulns"
    if not v.is_dir():
        return {}
    return {
        "nvd": (nvd, (v / "nvd" / "CVE-2024-3094.json").read_text()),
        "nvd11": (nvd11, (v / "nvd-1.1" / "CVE-2019-17052.json").read_text()),
        "cve5": (cve5, (v / "cve5" / "CVE-2025-21631.json").read_text()),
        "vulnrichment": (cve5, (v / "vulnrichment" / "CVE-2017-0144.json").read_text()),
        "kev": (
            kev,
            json.dumps(
                {
                    **json.loads((v / "cisa-kev" / "known_exploited_vulnerabilities.json").read_text()),
                    "vulnerabilities": json.loads(
                        (v / "cisa-kev" / "known_exploited_vulnerabilities.json").read_text()
                    )["vulnerabilities"][:3],
                }
            ),
        ),
        "csaf": (csaf, next((v / "csaf-icsma" / "2020").glob("*.json")).read_text()),
        "osv": (
            osv,
            json.dumps(
                yaml.load(
                    (v / "osv-pypi" / "vulns" / "zstd" / "PYSEC-2023-121.yaml").read_text(),
                    Loader=yaml.BaseLoader,
                )
            ),
        ),
        "epss": (epss, next((v / "epss").glob("*.csv")).read_text()),
    }


SEEDS = _seeds()
needs_seeds = pytest.mark.skipif(not SEEDS, reason="../shared/data is not beside the repository")


def _check(module: Any, name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / name
        target.write_bytes(data)
        problems = Problems()
        records = list(module.parse(target, problems))
        assert all(isinstance(e, FeedError) and e.path == str(target) for e in problems.errors)
        assert all(type(r).__module__ == "medsentry.vulns.records" for r in records)
        with VulnStore(":memory:") as store:  # whatever parses must also import
            store.import_records(records)
        with contextlib.suppress(FeedError):  # strict mode: the documented error, nothing else
            list(module.parse(target))


@needs_seeds
@pytest.mark.parametrize("seed", sorted(k for k in SEEDS if k != "epss"))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_json_structure(seed: str, data: st.DataObject) -> None:
    module, raw = SEEDS[seed]
    document = json.loads(raw)
    path = data.draw(st.sampled_from(_paths(document)))
    mutated = _replace(document, path, data.draw(_JSON_VALUES))
    _check(module, "seed.json", json.dumps(mutated).encode())


@needs_seeds
@pytest.mark.parametrize("seed", sorted(SEEDS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(min_value=0, max_value=4000), junk=st.binary(max_size=8), gz=st.booleans())
def test_fuzz_bytes(seed: str, cut: int, junk: bytes, gz: bool) -> None:
    module, raw = SEEDS[seed]
    data = raw.encode()
    data = data[: cut % (len(data) + 1)] + junk + data[cut % (len(data) + 1) + len(junk) :]
    suffix = ".csv" if seed == "epss" else ".json"
    if gz:
        data = gzip.compress(data)[: max(10, len(data) // 2)] if cut % 3 == 0 else gzip.compress(data)
    _check(module, "seed" + suffix + (".gz" if gz else ""), data)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300))
def test_fuzz_yaml_text(text: str) -> None:
    _check(osv, "advisory.yaml", text.encode("utf-8", "surrogatepass"))
