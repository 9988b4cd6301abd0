"""The scan service on small synthetic stores: which product a component is, affected vs candidate, guards,
VEX status, and devices against a real CISA ICSMA advisory."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from medsentry.identify.device import Device, Service
from medsentry.vulns.feeds import import_path
from medsentry.vulns.records import Cvss, KevEntry, OsvAdvisory, OsvAffected, Record, Vulnerability
from medsentry.vulns.sbom import Component, Sbom
from medsentry.vulns.scan import same_vendor, scan_devices, scan_sbom
from medsentry.vulns.store import FeedsEmpty, VulnStore
from medsentry.vulns.vex import VexStatement

WHEN = datetime(2024, 1, 2, tzinfo=UTC)


def _config(criteria: str, **bounds: str) -> list[dict]:
    return [
        {"nodes": [{"operator": "OR", "cpeMatch": [{"vulnerable": True, "criteria": criteria, **bounds}]}]}
    ]


def _vuln(
    cve: str,
    description: str,
    configurations: list | None = None,
    affected: list | None = None,
    published: datetime = WHEN,
) -> Vulnerability:
    return Vulnerability(
        id=cve,
        source="nvd",
        published=published,
        modified=published,
        status="Analyzed" if configurations else "Awaiting Analysis",
        description=description,
        cvss3=Cvss("3.1", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8, "CRITICAL", "nvd@nist.gov"),
        configurations=configurations or [],
        affected=affected or [],
    )


def _store(*records: Record) -> VulnStore:
    store = VulnStore(":memory:")
    store.import_records(records)
    return store


def _sbom(*components: Component) -> Sbom:
    return Sbom("device", "1", "maker", list(components))


def _scan(store: VulnStore, *components: Component, **kw: object) -> dict[tuple[str, str], object]:
    result = scan_sbom(store, _sbom(*components), max_age=None, **kw)  # type: ignore[arg-type]
    return {(f.subject["ref"], f.vulnerability): f for f in result.findings}


LOG4NET = _vuln(
    "CVE-2018-1285",
    "Apache log4net versions before 2.0.10 do not disable XML external entities.",
    _config("cpe:2.3:a:apache:log4net:*:*:*:*:*:*:*:*", versionEndExcluding="2.0.10"),
)


def _log4net(version: str) -> Component:
    return Component(
        f"log4net@{version}",
        "log4net",
        version,
        purl=f"pkg:nuget/log4net@{version}",
        cpes=(f"cpe:2.3:a:the_apache_software_foundation:log4net:{version}:*:*:*:*:*:*:*",),
    )


def test_vendor_alias_finds_nvd_product_and_respects_its_range() -> None:
    store = _store(LOG4NET)
    found = _scan(store, _log4net("2.0.8"), _log4net("2.0.10"))
    hit = found[("log4net@2.0.8", "CVE-2018-1285")]
    assert hit.status == "affected"  # type: ignore[attr-defined]
    assert hit.match["how"] == "vendor-alias"  # type: ignore[attr-defined]
    assert hit.match["evidence"][0]["criteria"].startswith("cpe:2.3:a:apache:log4net")  # type: ignore[attr-defined]
    assert hit.match["evidence"][0]["range"]  # the versionEndExcluding that decided  # type: ignore[attr-defined]
    assert ("log4net@2.0.10", "CVE-2018-1285") not in found


def test_same_vendor_ignores_legal_words_but_not_other_vendors() -> None:
    assert same_vendor("the_jquery_foundation", "jquery")
    assert same_vendor("the_apache_software_foundation", "apache")
    assert not same_vendor("quartz_project", "softwareag")


def test_package_named_after_vendor_and_product() -> None:
    store = _store(
        _vuln(
            "CVE-2024-21907",
            "Newtonsoft.Json before version 13.0.1 is affected by a mishandling of exceptional conditions.",
            _config("cpe:2.3:a:newtonsoft:json.net:*:*:*:*:*:*:*:*", versionEndExcluding="13.0.1"),
        )
    )
    comp = Component(
        "nj",
        "Newtonsoft.Json",
        "9.0.1",
        purl="pkg:nuget/Newtonsoft.Json@9.0.1",
        cpes=("cpe:2.3:a:james_newton-king:newtonsoftjson:9.0.1:*:*:*:*:*:*:*",),
    )
    hit = _scan(store, comp)[("nj", "CVE-2024-21907")]
    assert hit.status == "affected"  # type: ignore[attr-defined]
    assert hit.match["target"] == "newtonsoft:json.net"  # type: ignore[attr-defined]


def test_language_of_the_product_decides_among_a_vendors_products() -> None:
    java_only = _vuln(
        "CVE-2020-0001",
        "Bouncy Castle BC Java before 1.66 has a timing issue.",
        _config(
            "cpe:2.3:a:bouncycastle:the_bouncy_castle_crypto_package_for_java:*:*:*:*:*:*:*:*",
            versionEndExcluding="1.66",
        ),
    )
    csharp = _vuln(
        "CVE-2020-0002",
        "Bouncy Castle BC C# .NET before 1.8.7 has a timing issue.",
        _config("cpe:2.3:a:bouncycastle:bc-csharp:*:*:*:*:*:*:*:*", versionEndExcluding="1.8.7"),
    )
    comp = Component("bc", "BouncyCastle", "1.8.1", purl="pkg:nuget/BouncyCastle@1.8.1")
    found = _scan(_store(java_only, csharp), comp)
    assert found[("bc", "CVE-2020-0002")].status == "affected"  # type: ignore[attr-defined]
    assert ("bc", "CVE-2020-0001") not in found


def test_description_only_record_is_a_candidate_never_affected() -> None:
    store = _store(
        _vuln(
            "CVE-2026-0001", "FooMapper is an object mapper in .NET. Versions prior to 15.1.1 are vulnerable."
        )
    )
    old = Component("fm8", "FooMapper", "8.1.0", purl="pkg:nuget/FooMapper@8.1.0")
    new = Component("fm15", "FooMapper", "15.1.1", purl="pkg:nuget/FooMapper@15.1.1")
    found = _scan(store, old, new)
    hit = found[("fm8", "CVE-2026-0001")]
    assert hit.status == "under_investigation"  # type: ignore[attr-defined]
    assert hit.match["method"] == "description"  # type: ignore[attr-defined]
    assert hit.match["bounds"] == ["< 15.1.1"]  # type: ignore[attr-defined]
    assert ("fm15", "CVE-2026-0001") not in found


def test_cna_statement_with_a_build_condition_is_a_candidate() -> None:
    cna = [
        {
            "vendor": "ChaN",
            "product": "FatFs",
            "defaultStatus": "unaffected",
            "versions": [
                {"version": "0", "lessThan": "R0.16", "versionType": "custom", "status": "affected"}
            ],
        }
    ]
    store = _store(
        _vuln("CVE-2026-0002", "FatFs prior to R0.16 that use 'FF_LBA64 = 1' loops forever.", affected=cna),
        _vuln("CVE-2026-0003", "FatFs prior to R0.16 overflows a buffer.", affected=cna),
    )
    comp = Component("ff", "fatFS", "0.13c", cpes=("cpe:2.3:a:chan:fatfs:r0.13:*:*:*:*:*:*:*",))
    found = _scan(store, comp)
    assert found[("ff", "CVE-2026-0003")].status == "affected"  # type: ignore[attr-defined]
    conditional = found[("ff", "CVE-2026-0002")]
    assert conditional.status == "under_investigation"  # type: ignore[attr-defined]
    assert "FF_LBA64 = 1" in conditional.match["condition"]  # type: ignore[attr-defined]


def test_perl_cgi_record_is_not_a_dotnet_package() -> None:
    store = _store(
        _vuln(
            "CVE-1999-1278",
            "nlog CGI scripts do not properly filter shell metacharacters, via nlog-smb.pl or rpc-nlog.pl.",
            _config("cpe:2.3:a:nlog:nlog:*:*:*:*:*:*:*:*"),
            published=datetime(1998, 12, 25, tzinfo=UTC),
        )
    )
    comp = Component(
        "nl",
        "NLog",
        "4.5.11",
        purl="pkg:nuget/NLog@4.5.11",
        cpes=("cpe:2.3:a:nlog_project:nlog:4.5.11:*:*:*:*:*:*:*",),
    )
    result = scan_sbom(store, _sbom(comp), max_age=None)
    assert result.findings == []
    assert [s["vulnerability"] for s in result.suppressed] == ["CVE-1999-1278"]
    assert "perl" in result.suppressed[0]["reason"]


def test_vex_decision_sets_the_status_and_is_reported() -> None:
    store = _store(LOG4NET)
    comp = _log4net("2.0.8")
    decision = VexStatement("CVE-2018-1285", comp.purl, "not_affected", justification="code_not_reachable")
    found = _scan(store, comp, triage={(comp.purl, "CVE-2018-1285"): decision})
    hit = found[(comp.ref, "CVE-2018-1285")]
    assert hit.status == "not_affected"  # type: ignore[attr-defined]
    assert hit.triage["justification"] == "code_not_reachable"  # type: ignore[attr-defined]


def test_priority_uses_kev_from_the_store_and_json_has_the_contract_keys() -> None:
    kev = KevEntry("CVE-2018-1285", "Apache", "log4net", "XXE", WHEN.date())
    result = scan_sbom(_store(LOG4NET, kev), _sbom(_log4net("2.0.8")), max_age=None)
    doc = result.to_json()
    finding = doc["findings"][0]
    assert set(finding) >= {
        "subject",
        "vulnerability",
        "source",
        "match",
        "status",
        "priority",
        "ssvc",
        "cvss",
        "kev",
        "epss",
    }
    assert finding["kev"]["listed"] is True
    assert finding["cvss"]["base_score"] == 9.8
    assert any("KEV" in r for r in finding["priority"]["reasons"])
    assert doc["feeds"]["nvd"]["records"] == 1


def test_empty_store_is_an_error_not_zero_findings() -> None:
    with pytest.raises(FeedsEmpty):
        scan_sbom(VulnStore(":memory:"), _sbom(_log4net("2.0.8")), max_age=None)


def _mx40(model: str, firmware: str | None) -> Device:
    return Device(
        mac="00:09:fb:00:00:01",
        ips=["10.1.2.3"],
        device_class="patient_monitor",
        vendor="Philips",
        model=model,
        firmware=firmware,
        services=[Service("tcp", 24105, None, "offers")],
    )


def test_device_gets_the_cves_of_its_icsma_advisory(shared_data: Path) -> None:
    store = VulnStore(":memory:")
    # ICSMA-17-255-01: Philips IntelliVue MX40 Patient Worn Monitor (WLAN only), all versions prior to B.06.18
    import_path(store, shared_data / "vulns" / "csaf-icsma" / "2017" / "icsma-17-255-01.json")
    name = "IntelliVue MX40 Patient Worn Monitor (WLAN only)"
    result = scan_devices(store, [_mx40(name, "B.06.12"), _mx40("IntelliVue MX40", "B.06.12")], max_age=None)
    exact = {f.vulnerability: f for f in result.findings if f.subject["model"] == name}
    assert set(exact) == {"CVE-2017-9657", "CVE-2017-9658"}
    assert all(f.status == "affected" and f.source == "csaf:ICSMA-17-255-01" for f in exact.values())
    first = exact["CVE-2017-9657"]
    assert first.match["range_text"] == "< B.06.18"
    assert first.cvss["base_score"] == 6.5  # from the advisory's own score: no NVD record stored
    assert first.ssvc["points"]  # deployer tree inputs stated
    assert "System Exposure = Controlled (network evidence" in "\n".join(first.priority["reasons"])
    partial = [f for f in result.findings if f.subject["model"] == "IntelliVue MX40"]
    assert partial and all(f.status == "under_investigation" for f in partial)
    fixed = scan_devices(store, [_mx40(name, "B.06.18")], max_age=None)
    assert fixed.findings == []


def test_device_matches_nvd_firmware_running_on_its_hardware() -> None:
    # the NVD shape for medical devices: firmware (vulnerable) AND the hardware model (platform)
    config = [
        {
            "operator": "AND",
            "nodes": [
                {
                    "operator": "OR",
                    "cpeMatch": [
                        {
                            "vulnerable": True,
                            "versionEndExcluding": "B.06.18",
                            "criteria": "cpe:2.3:o:philips:intellivue_mx40_firmware:*:*:*:*:*:*:*:*",
                        }
                    ],
                },
                {
                    "operator": "OR",
                    "cpeMatch": [
                        {"vulnerable": False, "criteria": "cpe:2.3:h:philips:intellivue_mx40:-:*:*:*:*:*:*:*"}
                    ],
                },
            ],
        }
    ]
    store = _store(_vuln("CVE-2017-9657", "Philips IntelliVue MX40 WLAN firmware before B.06.18.", config))
    old, fixed = _mx40("IntelliVue MX40", "B.06.12"), _mx40("IntelliVue MX40", "B.06.18")
    result = scan_devices(store, [old, fixed], max_age=None)
    assert [(f.subject["firmware"], f.status) for f in result.findings] == [("B.06.12", "affected")]
    evidence = result.findings[0].match["evidence"][0]
    assert evidence["conditions"][0]["criteria"] == "cpe:2.3:h:philips:intellivue_mx40:-:*:*:*:*:*:*:*"
    reasons = "\n".join(result.findings[0].priority["reasons"])
    assert "Human Impact = Very High" in reasons  # a patient monitor
    assert "exposure_hint='hospital'" in reasons  # it offers a service on the hospital network


def test_purl_finds_osv_advisory_with_ecosystem_ranges() -> None:
    advisory = OsvAdvisory(
        id="GHSA-5crp-9r3c-p9vr",
        modified=WHEN,
        aliases=("CVE-2024-21907",),
        summary="Improper Handling of Exceptional Conditions in Newtonsoft.Json",
        affected=(
            OsvAffected(
                "NuGet",
                "Newtonsoft.Json",
                ranges=[{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "13.0.1"}]}],
            ),
        ),
    )
    old = Component("old", "Newtonsoft.Json", "9.0.1", purl="pkg:nuget/Newtonsoft.Json@9.0.1")
    new = Component("new", "Newtonsoft.Json", "13.0.1", purl="pkg:nuget/Newtonsoft.Json@13.0.1")
    found = _scan(_store(advisory), old, new)
    hit = found[("old", "CVE-2024-21907")]
    assert hit.status == "affected" and hit.source == "osv"  # type: ignore[attr-defined]
    assert hit.match["advisory"] == "GHSA-5crp-9r3c-p9vr"  # type: ignore[attr-defined]
    assert hit.match["rule"].startswith(">= 0 < 13.0.1")  # type: ignore[attr-defined]
    assert ("new", "CVE-2024-21907") not in found
