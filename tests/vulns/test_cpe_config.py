"""CPE 2.3 binding and NVD configuration evaluation on real records of ../shared/data/vulns/nvd."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.vulns.match.affected import match_affected
from medsentry.vulns.match.cpe import Cpe, CpeError, configurations_of, evaluate, evaluate_cve
from medsentry.vulns.store import configuration_slices, cpe_vendor_product

H = "*:*:*:*:*:*:*"  # the seven attributes after the version


def _nvd(shared: Path, cve: str) -> dict[str, Any]:
    return json.loads((shared / "vulns" / "nvd" / f"{cve}.json").read_text("utf-8"))


def _hits(record: dict[str, Any], *subjects: str) -> list[tuple[str, str]]:
    return sorted({(e.criteria, e.subject) for e in evaluate_cve(record, subjects)})


# --- binding ------------------------------------------------------------------------------------------


def test_parse_and_bind() -> None:
    c = Cpe.parse(r"cpe:2.3:a:cisco:finesse:12.5\(1\):su1:*:*:*:*:*:*")
    assert (c.part, c.vendor, c.product, c.version, c.update) == (
        "a",
        "cisco",
        "finesse",
        r"12.5\(1\)",
        "su1",
    )
    assert c.fs() == r"cpe:2.3:a:cisco:finesse:12.5\(1\):su1:*:*:*:*:*:*"
    assert Cpe.parse(r"cpe:2.3:a:foo\:bar:baz:1.0:*:*:*:*:*:*:*").vendor == r"foo\:bar"
    assert Cpe.parse("cpe:/a:openssl:openssl:1.1.1t") == Cpe.parse(f"cpe:2.3:a:openssl:openssl:1.1.1t:{H}")
    assert (
        Cpe.parse("cpe:2.3:o:microsoft:windows_7:-:sp1:*:*:*:*:*:*").uri()
        == "cpe:/o:microsoft:windows_7:-:sp1"
    )
    for bad in ("", "cpe:2.3:x:a:b", "cpe:2.3:a", "openssl 1.1.1", "cpe:2.3:a::b:1.0"):
        with pytest.raises(CpeError):
            Cpe.parse(bad)


def test_splitter_agrees_with_the_cpe_library_on_every_shared_criteria(shared_data: Path) -> None:
    from cpe import CPE

    texts: set[str] = set()
    for f in [
        *(shared_data / "vulns" / "nvd").rglob("*.json"),
        *(shared_data / "vulns" / "nvd-1.1").glob("*.json"),
    ]:
        for m in re.finditer(r'"(?:criteria|cpe23Uri)": "((?:[^"\\]|\\.)*)"', f.read_text("utf-8")):
            texts.add(json.loads(f'"{m.group(1)}"'))
    assert len(texts) > 1000
    getters = (
        "get_part",
        "get_vendor",
        "get_product",
        "get_version",
        "get_update",
        "get_edition",
        "get_language",
        "get_software_edition",
        "get_target_software",
        "get_target_hardware",
        "get_other",
    )
    for t in texts:
        ref = CPE(t)
        mine = Cpe.parse(t)
        assert [getattr(ref, g)()[0].lower() for g in getters] == [
            mine.part,
            mine.vendor,
            mine.product,
            mine.version,
            mine.update,
            mine.edition,
            mine.language,
            mine.sw_edition,
            mine.target_sw,
            mine.target_hw,
            mine.other,
        ], t


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_fuzz_cpe_parse(text: str) -> None:
    for candidate in (text, "cpe:2.3:" + text, "cpe:/" + text):
        try:
            c = Cpe.parse(candidate)
        except CpeError:
            continue
        assert Cpe.parse(c.fs()) == c


# --- configurations from real records -----------------------------------------------------------------


def test_and_with_platform_cpe_alaris(shared_data: Path) -> None:
    # CVE-2020-25165: alaris_8015_pcu_firmware <= 9.33.1 AND running on h:bd:alaris_8015_pcu
    rec = _nvd(shared_data, "CVE-2020-25165")
    fw = "cpe:2.3:o:bd:alaris_8015_pcu_firmware:{}:" + H
    hw = f"cpe:2.3:h:bd:alaris_8015_pcu:-:{H}"
    ev = evaluate_cve(rec, [fw.format("9.33.1"), hw])
    assert [(e.cve, e.subject, e.range) for e in ev] == [("CVE-2020-25165", fw.format("9.33.1"), "<=9.33.1")]
    assert ev[0].conditions[0].criteria == hw and ev[0].conditions[0].kind == "platform"
    assert evaluate_cve(rec, [fw.format("9.19"), hw])
    assert not evaluate_cve(rec, [fw.format("9.33.2"), hw])  # above the range
    assert not evaluate_cve(rec, [fw.format("9.19")])  # platform absent: configuration does not hold
    assert not evaluate_cve(rec, [hw])  # the platform alone is never a finding
    # a hardware revision on the device still is that hardware
    assert evaluate_cve(rec, [fw.format("9.19"), f"cpe:2.3:h:bd:alaris_8015_pcu:2:{H}"])
    # second configuration: systems manager alone, no platform
    assert _hits(rec, f"cpe:2.3:a:bd:alaris_systems_manager:4.33:{H}")
    assert not _hits(rec, f"cpe:2.3:a:bd:alaris_systems_manager:4.34:{H}")


def test_and_with_platform_cpe_minimed_hardware_must_be_the_right_model(shared_data: Path) -> None:
    rec = _nvd(shared_data, "CVE-2019-10964")
    fw = f"cpe:2.3:o:medtronic:minimed_508_firmware:1.0:{H}"
    assert _hits(rec, fw, f"cpe:2.3:h:medtronic:minimed_508:-:{H}")
    assert not _hits(rec, fw, f"cpe:2.3:h:medtronic:minimed_paradigm_511:-:{H}")


def test_and_with_running_on_windows_and_target_hw(shared_data: Path) -> None:
    # CVE-2017-0144 (EternalBlue): server_message_block 1.0 AND running on one of many Windows CPEs
    rec = _nvd(shared_data, "CVE-2017-0144")
    smb = f"cpe:2.3:a:microsoft:server_message_block:1.0:{H}"
    assert _hits(rec, smb, "cpe:2.3:o:microsoft:windows_10_1507:-:*:*:*:*:*:x64:*")
    assert not _hits(rec, smb)
    assert not _hits(rec, "cpe:2.3:o:microsoft:windows_10_1507:-:*:*:*:*:*:x64:*")
    assert not _hits(rec, smb, "cpe:2.3:o:microsoft:windows_10_1507:-:*:*:*:*:*:arm64:*")
    ev = evaluate_cve(rec, [smb, "cpe:2.3:o:microsoft:windows_10_1507:-:*:*:*:*:*:x64:*"])
    assert {c.subject for e in ev for c in e.conditions} == {
        "cpe:2.3:o:microsoft:windows_10_1507:-:*:*:*:*:*:x64:*"
    }
    # medical firmware inside the same record: Siemens Acuson P300 13.02 on its hardware
    assert _hits(
        rec, f"cpe:2.3:o:siemens:acuson_p300_firmware:13.02:{H}", f"cpe:2.3:h:siemens:acuson_p300:-:{H}"
    )
    assert not _hits(
        rec, f"cpe:2.3:o:siemens:acuson_p300_firmware:13.04:{H}", f"cpe:2.3:h:siemens:acuson_p300:-:{H}"
    )


def test_update_field_and_na_version(shared_data: Path) -> None:
    # CVE-2019-0708 (BlueKeep): windows_7:-:sp1, windows_server_2008:-:sp2 and :r2:sp1
    rec = _nvd(shared_data, "CVE-2019-0708")
    assert _hits(rec, "cpe:2.3:o:microsoft:windows_7:-:sp1:*:*:*:*:*:*")
    assert not _hits(rec, "cpe:2.3:o:microsoft:windows_7:-:sp2:*:*:*:*:*:*")
    assert _hits(rec, "cpe:2.3:o:microsoft:windows_server_2008:r2:sp1:*:*:*:*:*:*")
    assert _hits(rec, "cpe:2.3:o:microsoft:windows_server_2008:-:sp2:*:*:*:*:*:*")
    assert not _hits(rec, "cpe:2.3:o:microsoft:windows_server_2008:r2:sp2:*:*:*:*:*:*")
    # "-" (NA) version of an OS criteria is not "any version"
    assert not _hits(rec, "cpe:2.3:o:microsoft:windows_7:6.1:sp1:*:*:*:*:*:*")
    # an unknown update level matches, but the evidence says it was assumed
    ev = evaluate_cve(rec, ["cpe:2.3:o:microsoft:windows_7:-:*:*:*:*:*:*:*"])
    assert ev and ev[0].assumed == ("update",)


def test_firmware_without_version_in_nvd_matches_any_firmware_version(shared_data: Path) -> None:
    # CVE-2018-10597 (Philips IntelliVue): NVD lists intellivue_mp2_firmware:- on hardware intellivue_mp2
    rec = _nvd(shared_data, "CVE-2018-10597")
    fw = f"cpe:2.3:o:philips:intellivue_mp2_firmware:M.00.03:{H}"
    hw = f"cpe:2.3:h:philips:intellivue_mp2:-:{H}"
    ev = evaluate_cve(rec, [fw, hw])
    assert len(ev) == 1 and ev[0].assumed == ("version",) and ev[0].conditions[0].subject == hw
    assert not evaluate_cve(rec, [fw])
    assert not evaluate_cve(rec, [fw, f"cpe:2.3:h:philips:intellivue_mx40:-:{H}"])


def test_log4shell_ranges_and_update_pre_releases(shared_data: Path) -> None:
    rec = _nvd(shared_data, "CVE-2021-44228")
    log4j = "cpe:2.3:a:apache:log4j:{}:{}:*:*:*:*:*:*"
    ev = evaluate_cve(rec, [log4j.format("2.14.1", "*")])
    assert [e.range for e in ev] == [">=2.13.0|<2.15.0"]
    assert _hits(rec, log4j.format("2.3.0", "*"))
    assert not _hits(rec, log4j.format("2.3.1", "*"))  # versionEndExcluding
    assert not _hits(rec, log4j.format("2.15.0", "*"))
    assert _hits(rec, log4j.format("2.0", "beta9"))
    assert _hits(rec, log4j.format("2.0-beta9", "*"))  # update folded into the version string
    assert _hits(rec, log4j.format("2.0", "rc2"))
    assert not _hits(rec, log4j.format("2.0", "beta8"))
    assert not _hits(rec, log4j.format("2.0-beta8", "*"))
    # version unknown: not reported against version-bounded criteria
    assert not [e for e in evaluate_cve(rec, [log4j.format("*", "*")]) if e.range]
    # escaped characters in a real criteria
    assert _hits(rec, r"cpe:2.3:a:cisco:finesse:12.5\(1\):su1:*:*:*:*:*:*")


def test_no_configurations_means_no_cpe_findings(shared_data: Path) -> None:
    for f in (shared_data / "vulns" / "nvd" / "unanalyzed").glob("*.json"):
        rec = json.loads(f.read_text("utf-8"))
        assert evaluate_cve(rec, [f"cpe:2.3:a:openssl:openssl:1.0.1:{H}"]) == []


def test_nvd_11_children_shape(shared_data: Path) -> None:
    rec = json.loads((shared_data / "vulns" / "nvd-1.1" / "CVE-2020-13595.json").read_text("utf-8"))
    idf = "cpe:2.3:a:espressif:esp-idf:{}:" + H
    esp32 = f"cpe:2.3:h:espressif:esp32:-:{H}"
    ev = evaluate_cve(rec, [idf.format("4.1"), esp32])
    assert [e.cve for e in ev] == ["CVE-2020-13595"] and ev[0].range == ">=4.0.0|<=4.2"
    assert not evaluate_cve(rec, [idf.format("4.1")])
    assert not evaluate_cve(rec, [idf.format("4.3"), esp32])


def test_negate_node() -> None:
    # No shared NVD record uses negate; this is CVE-2020-13595's shape with the platform node negated:
    # "esp-idf 4.0.0-4.2, except when running on an ESP32".
    conf = {
        "operator": "AND",
        "nodes": [
            {
                "operator": "OR",
                "negate": False,
                "cpeMatch": [
                    {
                        "vulnerable": True,
                        "criteria": f"cpe:2.3:a:espressif:esp-idf:*:{H}",
                        "versionStartIncluding": "4.0.0",
                        "versionEndIncluding": "4.2",
                    }
                ],
            },
            {
                "operator": "OR",
                "negate": True,
                "cpeMatch": [{"vulnerable": False, "criteria": f"cpe:2.3:h:espressif:esp32:-:{H}"}],
            },
        ],
    }
    idf = f"cpe:2.3:a:espressif:esp-idf:4.1:{H}"
    ev = evaluate([conf], [idf])
    assert len(ev) == 1 and ev[0].conditions[0].kind == "absent"
    assert evaluate([conf], [idf, f"cpe:2.3:h:espressif:esp32:-:{H}"]) == []
    flipped = copy.deepcopy(conf)
    flipped["nodes"][1]["negate"] = False
    assert evaluate([flipped], [idf]) == []


def test_configurations_of_shapes(shared_data: Path) -> None:
    rec = _nvd(shared_data, "CVE-2020-25165")
    assert configurations_of(rec) == rec["cve"]["configurations"]
    assert configurations_of(rec["cve"]) == rec["cve"]["configurations"]
    assert configurations_of({}) == []


# --- CNA affected[] data ------------------------------------------------------------------------------


def test_cna_affected_in_nvd_record(shared_data: Path) -> None:
    rec = _nvd(shared_data, "CVE-2022-3602")
    # Siemens SCALANCE X204RNA (HSR): V3.2.7 <= v < V3.2.8
    got = match_affected(rec, "Siemens", "SCALANCE X204RNA (HSR)", "V3.2.7")
    assert [(m.cve, m.status) for m in got] == [("CVE-2022-3602", "affected")]
    assert not [
        m
        for m in match_affected(rec, "Siemens", "SCALANCE X204RNA (HSR)", "V3.2.8")
        if m.status == "affected"
    ]
    assert (
        match_affected(rec, "Siemens", "SCALANCE X204RNA (PRP)", "V3.2.7")[0].product
        == "SCALANCE X204RNA (PRP)"
    )
    assert match_affected(rec, "Philips", "SCALANCE X204RNA (HSR)", "V3.2.7") == []


def test_cna_affected_in_cve5_records(shared_data: Path) -> None:
    found = 0
    for f in sorted((shared_data / "vulns" / "cve5").glob("*.json")):
        rec = json.loads(f.read_text("utf-8"))
        for aff in rec.get("containers", {}).get("cna", {}).get("affected", []):
            for v in aff.get("versions", []):
                if (
                    v.get("status") == "affected"
                    and v.get("lessThan")
                    and v.get("version") not in (None, "0", "*", "unspecified")
                ):
                    got = match_affected(rec, aff.get("vendor"), aff.get("product"), v["version"])
                    assert any(m.status == "affected" for m in got), (f.name, aff.get("product"), v)
                    found += 1
    assert found >= 5


def _criteria(node: Any) -> list[dict[str, Any]]:
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        out += [m for m in n.get("cpeMatch") or [] if isinstance(m, dict)]
        stack += list(n.get("nodes") or []) + list(n.get("children") or [])
    return out


def _subjects_for(matches: list[dict[str, Any]]) -> list[Cpe]:
    """Subject CPEs at every version a criteria names: its own, its bounds, and any."""
    out: dict[str, Cpe] = {}
    for m in matches:
        c = Cpe.parse(m["criteria"])
        versions = {c.version, "*"} | {
            str(m[k])
            for k in ("versionStartIncluding", "versionEndIncluding", "versionEndExcluding")
            if k in m
        }
        for v in versions:
            s = dataclasses.replace(c, version=re.sub(r"([^0-9A-Za-z._\-*])", r"\\\1", v) if v != "*" else v)
            out[s.fs()] = s
    return list(out.values())


def test_configuration_slices_decide_every_shared_record_as_the_whole_configurations(
    shared_data: Path,
) -> None:
    """The store keeps, per product, only what can decide a match for it (`configuration_slices`): on every
    shared record and product, evaluating the slices gives exactly the evidence of the whole record."""
    files = sorted((shared_data / "vulns" / "nvd").rglob("*.json"))
    if not files:
        pytest.skip("no shared NVD records")
    products = whole_size = cut_size = 0
    for path in files:
        doc = json.loads(path.read_text("utf-8"))
        for item in doc.get("vulnerabilities", [doc]):
            confs = configurations_of(item)
            slices = configuration_slices(confs)
            for key, cut in slices.items():
                products += 1
                mine = [
                    m
                    for c in confs
                    for m in _criteria(c)
                    if m.get("vulnerable") and cpe_vendor_product(m["criteria"]) == key
                ]
                platforms = [
                    Cpe.parse(m["criteria"]) for c in confs for m in _criteria(c) if not m.get("vulnerable")
                ]
                whole_size += sum(len(_criteria(confs[i])) for i, _ in cut)
                cut_size += sum(len(_criteria(c)) for _, c in cut)
                for subjects in (_subjects_for(mine), [*_subjects_for(mine), *platforms]):
                    want = [
                        e.as_dict()
                        for e in evaluate(confs, subjects)
                        if cpe_vendor_product(e.criteria) == key
                    ]
                    got = [
                        e.as_dict()
                        for e in evaluate([c for _, c in cut], subjects, indices=[i for i, _ in cut])
                        if cpe_vendor_product(e.criteria) == key
                    ]
                    assert got == want, (path.name, key)
    assert products > 500 and cut_size < whole_size / 2  # many products, and the slices are much smaller
