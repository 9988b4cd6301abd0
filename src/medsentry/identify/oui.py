"""MAC address facts: the IEEE registry owner of its prefix, and what its flag bits say.

The first octet's two low bits are flags (IEEE 802-2014 §8.2): I/G (0x01) marks a group (multicast or
broadcast) address, U/L (0x02) a locally administered one. Phones and laptops that randomise their
Wi-Fi MAC set U/L, so such a MAC names no manufacturer and says nothing about the device type.

Registry blocks come in three sizes: MA-L (24-bit prefix), MA-M (28-bit) and MA-S/IAB (36-bit); the
longest registered prefix wins (an MA-S block sits inside an MA-L owned by the "IEEE Registration
Authority"). The table is packaged as `data/oui.tsv` (built by scripts/build_oui.py) and vendor
names are normalised through `data/vendors.yaml`.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib.resources import files
from typing import Final

from medsentry.yamlload import safe_load

_DATA: Final = files("medsentry") / "data"
_HEX: Final = frozenset("0123456789abcdef")
# Legal forms and filler words that distinguish registrations of one company, not companies.
_LEGAL: Final = re.compile(
    r"[\s,.]*\b(inc|incorporated|corp|corporation|corporate|co|company|ltd|limited|llc|gmbh|ag|ab|"
    r"b\.?v|n\.?v|s\.?a|s\.?p\.?a|a/s|as|oy|kg|plc|pty|srl|s\.?r\.?o)\b\.?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class MacInfo:
    mac: str  # "aa:bb:cc:dd:ee:ff"
    multicast: bool  # I/G bit: a group address, never a device's own
    locally_administered: bool  # U/L bit: randomised or assigned by software, no manufacturer
    prefix: str | None  # the registered prefix that matched, e.g. "00:09:FB" or "70:B3:D5:F2:F"
    prefix_bits: int  # 24, 28, 36, or 0 when nothing matched
    organization: str | None  # IEEE organisation name as registered
    vendor: str | None  # normalised vendor name ("Philips"), None for placeholders

    # Written by hand, as `device.Evidence.__init__`: a frozen dataclass's generated one stays interpreted
    # under mypyc (8,000 instructions a lookup; every `--workers` worker looks up the MACs it meets).
    def __init__(self, mac: str, multicast: bool, locally_administered: bool, prefix: str | None,
                 prefix_bits: int, organization: str | None, vendor: str | None) -> None:  # fmt: skip
        object.__setattr__(self, "mac", mac)
        object.__setattr__(self, "multicast", multicast)
        object.__setattr__(self, "locally_administered", locally_administered)
        object.__setattr__(self, "prefix", prefix)
        object.__setattr__(self, "prefix_bits", prefix_bits)
        object.__setattr__(self, "organization", organization)
        object.__setattr__(self, "vendor", vendor)


def normalize_mac(mac: str) -> str | None:
    """"00-09-FB-72-00-FF", "0009.fb72.00ff", "0009fb7200ff" -> "00:09:fb:72:00:ff"; None if not a MAC."""
    if len(mac) == 17 and mac[2::3] == ":::::" and _HEX.issuperset(mac.replace(":", "")):
        return mac  # already normal, as the decoder writes MACs: no walk over its characters
    digits = "".join(c for c in mac.lower() if c not in ":-. ")
    if len(digits) != 12 or not _HEX.issuperset(digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@cache
def _registry() -> list[bytes]:
    """The packaged registry's lines, "prefix<TAB>organisation" in sorted order (scripts/build_oui.py).
    Kept as bytes, decoded only where a lookup finds one: unpacking a compressed table and decoding all
    of it took 15 ms of every run."""
    return _DATA.joinpath("oui.tsv").read_bytes().splitlines()


def _organization(lines: list[bytes], prefix: str) -> str | None:
    key = (prefix + "\t").encode("ascii")  # a tab sorts before any hex digit: this prefix's line first
    i = bisect_left(lines, key)
    if i < len(lines) and lines[i].startswith(key):
        return lines[i][len(key) :].decode("utf-8")
    return None


@dataclass(frozen=True, slots=True)
class _Vendors:
    names: tuple[str, ...]  # in the file's order
    families: dict[str, str]  # name -> family
    # Every entry's patterns as one alternation, entry i in group "v<i>": re.match tries the branches in
    # order at the start, so the first entry that matches wins, as trying them one by one did, in one
    # call instead of a match per entry (54 of them: a new IEEE organisation cost ~50k instructions).
    # An entry's group encloses any group of its own patterns, so it closes last: `lastgroup` names it.
    pattern: re.Pattern[str]
    placeholder: re.Pattern[str]


@cache
def _vendors() -> _Vendors:
    doc = safe_load(_DATA.joinpath("vendors.yaml").read_text("utf-8"))
    entries = doc["vendors"]
    branches = "|".join(f"(?P<v{i}>{'|'.join(v['match'])})" for i, v in enumerate(entries))
    return _Vendors(
        tuple(v["name"] for v in entries),
        {v["name"]: v.get("family", v["name"]) for v in entries},
        re.compile(branches, re.IGNORECASE),
        re.compile("|".join(doc["none"]), re.IGNORECASE),
    )


@lru_cache(maxsize=4096)
def normalize_vendor(name: str | None) -> str | None:
    """An IEEE organisation or on-the-wire vendor string -> the vendor name medsentry reports."""
    if not name or not name.strip():
        return None
    name = " ".join(name.split())
    vendors = _vendors()
    if vendors.placeholder.match(name):
        return None
    m = vendors.pattern.match(name)
    if m is not None and m.lastgroup is not None:
        return vendors.names[int(m.lastgroup[1:])]
    cleaned = _LEGAL.sub("", name).strip(" ,.-")
    return cleaned or name


def vendor_family(name: str) -> str:
    """The corporate family of a normalised vendor name ("Siemens Healthineers" -> "Siemens")."""
    return _vendors().families.get(name, name)


def preload() -> None:
    """Read the registry and the vendor names now: `analyze --workers` forks after this, so workers share
    them instead of each reading them again."""
    _registry()
    _vendors()


def lookup(mac: str) -> MacInfo | None:
    """Registry facts for one MAC address; None if `mac` is not a MAC address."""
    norm = normalize_mac(mac)
    if norm is None:
        return None
    first = int(norm[:2], 16)
    multicast, local = bool(first & 0x01), bool(first & 0x02)
    digits = norm.replace(":", "")
    if not (multicast or local):
        lines = _registry()
        for n in (9, 7, 6):
            org = _organization(lines, digits[:n])
            if org is not None:
                head = digits[:n]
                prefix = ":".join(head[i : i + 2] for i in range(0, n, 2)).upper()
                return MacInfo(norm, multicast, local, prefix, n * 4, org, normalize_vendor(org))
    return MacInfo(norm, multicast, local, None, 0, None, None)
