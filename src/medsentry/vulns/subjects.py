"""What is scanned, and how its names are read: `Subject`s made from SBOM components and inventory devices,
the languages an ecosystem or a product name implies, and the spellings a record may use for a name."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from medsentry.identify.device import Device
from medsentry.vulns.match.cpe import ANY, Cpe, CpeError
from medsentry.vulns.match.purl import InvalidPurl, Purl
from medsentry.vulns.match.vendors import families
from medsentry.vulns.sbom import Component

__all__ = ["Subject", "component_subject", "device_subject", "exposure_hint", "same_vendor"]

# purl type -> (languages its packages can hold, year the registry opened). NuGet and Maven packages do
# ship JavaScript (jQuery, WebJars), so that is not a contradiction there.
ECOSYSTEMS: dict[str, tuple[frozenset[str], int | None]] = {
    "nuget": (frozenset({"dotnet", "javascript"}), 2010),
    "maven": (frozenset({"java", "javascript"}), 2002),
    "npm": (frozenset({"javascript"}), 2010),
    "pypi": (frozenset({"python"}), 2003),
    "gem": (frozenset({"ruby"}), 2004),
    "composer": (frozenset({"php", "javascript"}), 2012),
    "cargo": (frozenset({"rust"}), 2014),
    "golang": (frozenset({"go"}), 2009),
    "cpan": (frozenset({"perl"}), 1995),
}
OSV_ECOSYSTEMS = {
    "nuget": "NuGet",
    "maven": "Maven",
    "npm": "npm",
    "pypi": "PyPI",
    "gem": "RubyGems",
    "composer": "Packagist",
    "cargo": "crates.io",
    "golang": "Go",
}
TARGET_SW = {
    ".net": "dotnet",
    ".net_framework": "dotnet",
    ".net_core": "dotnet",
    "asp.net": "dotnet",
    "node.js": "javascript",
    "nodejs": "javascript",
    "java": "java",
    "python": "python",
    "ruby": "ruby",
    "perl": "perl",
    "php": "php",
    "rust": "rust",
    "go": "go",
    "golang": "go",
}
# How a description names a language (file extensions count: "nlog-smb.pl", "ECCurve.java").
_TEXT_MARKERS = {
    "dotnet": re.compile(r"\.net\b|c#|\bcsharp\b|\bnuget\b|\.cs\b", re.IGNORECASE),
    "java": re.compile(r"\bjava\b|\.java\b|\bjdk\b|\bjre\b|\bjvm\b", re.IGNORECASE),
    "javascript": re.compile(r"\bjavascript\b|\bnode\.js\b|\bnpm\b|\.js\b", re.IGNORECASE),
    "python": re.compile(r"\bpython\b|\.py\b|\bpypi\b", re.IGNORECASE),
    "perl": re.compile(r"\bperl\b|\.pl\b|\bcpan\b", re.IGNORECASE),
    "php": re.compile(r"\bphp\b", re.IGNORECASE),
    "ruby": re.compile(r"\bruby\b|\.rb\b|\brubygems\b", re.IGNORECASE),
    "go": re.compile(r"\bgolang\b", re.IGNORECASE),
    "rust": re.compile(r"\brust\b|\bcrates\.io\b", re.IGNORECASE),
}
# How a CPE product name says its language (`bc-csharp`, `json.net`, `fips_java_api`).
_NAME_MARKERS = {
    "csharp": "dotnet",
    "net": "dotnet",
    "dotnet": "dotnet",
    "java": "java",
    "jdk": "java",
    "js": "javascript",
    "nodejs": "javascript",
    "node": "javascript",
    "python": "python",
    "perl": "perl",
    "php": "php",
    "ruby": "ruby",
    "golang": "go",
    "rust": "rust",
}
# Vendor words that say nothing about who the vendor is.
_VENDOR_FILLER = frozenset(
    {
        "the",
        "project",
        "foundation",
        "software",
        "inc",
        "corp",
        "corporation",
        "llc",
        "ltd",
        "org",
        "team",
        "community",
        "group",
        "co",
        "gmbh",
        "labs",
    }
)

CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class Subject:
    """What is scanned: one SBOM component or one device, with what matching needs to know."""

    key: str  # bom-ref, or the device anchor (MAC / IP)
    label: dict[str, Any]  # the `subject` of a finding
    name: str
    version: str
    vendor: str = ""
    cpes: tuple[Cpe, ...] = ()
    purl: Purl | None = None
    languages: frozenset[str] = frozenset()
    registry_year: int | None = None
    names: tuple[str, ...] = ()  # identifiers a VEX statement may use for it
    device_class: str | None = None
    exposure_hint: str | None = None


def component_subject(comp: Component) -> Subject:
    cpes: list[Cpe] = []
    for text in comp.cpes:
        try:
            cpes.append(Cpe.parse(text))
        except CpeError:
            continue
    purl = None
    if comp.purl:
        try:
            purl = Purl.parse(comp.purl)
        except InvalidPurl:
            purl = None
    languages: set[str] = set()
    year = None
    if purl is not None and purl.type in ECOSYSTEMS:
        languages |= ECOSYSTEMS[purl.type][0]
        year = ECOSYSTEMS[purl.type][1]
    for c in cpes:
        if c.target_sw in TARGET_SW:
            languages.add(TARGET_SW[c.target_sw])
    label = {"type": "component", "ref": comp.ref, "name": comp.name, "version": comp.version}
    if comp.purl:
        label["purl"] = comp.purl
    if comp.cpes:
        label["cpe"] = comp.cpes[0]
    version = comp.version or next((c.version for c in cpes if c.version not in (ANY, "-")), "")
    return Subject(
        key=comp.ref,
        label=label,
        name=comp.name,
        version=version,
        vendor=comp.supplier or (purl.namespace or "" if purl else ""),
        cpes=tuple(cpes),
        purl=purl,
        languages=frozenset(languages),
        registry_year=year,
        names=tuple(n for n in (comp.ref, comp.purl, *comp.cpes, comp.name) if n),
    )


def exposure_hint(device: Device) -> str | None:
    """What the capture says about reachability: a public address means internet exposure; a listening
    service on the hospital network means controlled; otherwise nothing (the SSVC default, stated)."""
    for ip in device.ips:
        try:
            if ipaddress.ip_address(ip).is_global:
                return "internet"
        except ValueError:
            continue
    if any(s.role == "offers" for s in device.services):
        return "hospital"
    return None


def device_subject(device: Device) -> Subject | None:
    if not device.vendor or not device.model:
        return None  # nothing to name a product by
    anchor = device.mac or (device.ips[0] if device.ips else "")
    label = {
        "type": "device",
        "id": anchor,
        "vendor": device.vendor,
        "model": device.model,
        "firmware": device.firmware,
        "device_class": device.device_class,
        "ips": list(device.ips),
    }
    return Subject(
        key=anchor,
        label=label,
        name=device.model,
        version=device.firmware or "",
        vendor=device.vendor,
        names=tuple(
            n for n in (anchor, *device.ips, device.hostname, f"{device.vendor} {device.model}") if n
        ),
        device_class=device.device_class,
        exposure_hint=exposure_hint(device),
    )


# -- name helpers --------------------------------------------------------------------------------------


def compact(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _vendor_core(vendor: str) -> str:
    words = [w for w in re.split(r"[^0-9a-z]+", vendor.lower()) if w and w not in _VENDOR_FILLER]
    return "".join(words)


def same_vendor(a: str, b: str) -> bool:
    """CPE vendor spellings of one vendor: `the_apache_software_foundation` / `apache`, or one family."""
    if not a or not b:
        return False
    ca, cb = _vendor_core(a), _vendor_core(b)
    if ca and ca == cb:
        return True
    return bool(families(a.replace("_", " ")) & families(b.replace("_", " ")))


@lru_cache(maxsize=65536)
def name_languages(product: str) -> frozenset[str]:
    return frozenset(
        {_NAME_MARKERS[t] for t in re.split(r"[^0-9a-z#]+", product.lower()) if t in _NAME_MARKERS}
    )


@lru_cache(maxsize=65536)
def strip_markers(product: str) -> str:
    return "".join(t for t in re.split(r"[^0-9a-z]+", product.lower()) if t and t not in _NAME_MARKERS)


def text_languages(text: str) -> set[str]:
    return {lang for lang, rx in _TEXT_MARKERS.items() if rx.search(text)}


def name_variants(subject: Subject) -> list[str]:
    """Ways a record may spell the component: as written, CamelCase split ("BouncyCastle" -> "Bouncy
    Castle"), and the purl name."""
    names = [subject.name]
    if subject.purl is not None:
        names.append(subject.purl.name)
    out: list[str] = []
    for n in names:
        for v in (n, CAMEL.sub(" ", n)):
            if v and v not in out:
                out.append(v)
    return out


def name_pattern(name: str) -> re.Pattern[str]:
    tokens = [t for t in re.split(r"[^0-9A-Za-z]+", CAMEL.sub(" ", name)) if t]
    return re.compile(r"(?<![0-9a-z])" + r"[\W_]*".join(map(re.escape, tokens)) + r"(?![0-9a-z])", re.I)
