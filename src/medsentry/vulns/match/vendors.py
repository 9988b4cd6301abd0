"""Vendor names from advisories and from device identification, reduced to comparable families.

`data/vendor_aliases.yaml` holds the spellings advisories use (Phillips, Koninklijke Philips,
"General Electric (GE)", "Becton, Dickinson and Company (BD)", St. Jude Medical now Abbott ...);
`data/vendors.yaml` (shared with device identification) supplies display names and families. An
advisory may name several vendors ("Silex Technology and GE Healthcare"): every one counts.
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from importlib.resources import files

import yaml

from medsentry.identify.oui import normalize_vendor, vendor_family

__all__ = ["families", "same_vendor", "strip_vendor_prefix"]

_DATA = files("medsentry") / "data"
_SPLIT = re.compile(r"\s*(?:,\s*(?:and\s+)?|\s+and\s+|\s*&\s*|;\s*)\s*", re.IGNORECASE)


@cache
def _entries() -> tuple[tuple[re.Pattern[str], str], ...]:
    """(pattern, vendor name) pairs: aliases first, then vendors.yaml."""
    out: list[tuple[re.Pattern[str], str]] = []
    aliases = yaml.safe_load(_DATA.joinpath("vendor_aliases.yaml").read_text("utf-8"))
    for a in aliases.get("aliases", []):
        out.append((re.compile("|".join(f"(?:{p})" for p in a["match"]), re.IGNORECASE), a["name"]))
    doc = yaml.safe_load(_DATA.joinpath("vendors.yaml").read_text("utf-8"))
    for v in doc["vendors"]:
        out.append((re.compile("|".join(f"(?:{p})" for p in v["match"]), re.IGNORECASE), v["name"]))
    return tuple(out)


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.casefold())


def _known(name: str) -> str | None:
    for pat, vendor in _entries():
        if pat.match(name):
            return vendor
    return None


@lru_cache(maxsize=8192)
def families(text: str | None) -> frozenset[str]:
    """Comparable family keys of every vendor a string names ("" or None names none)."""
    if not text or not text.strip():
        return frozenset()
    text = " ".join(text.split())
    out: set[str] = set()
    whole = _known(text)
    if whole:
        out.add(_key(vendor_family(whole)))
    parts = [p for p in _SPLIT.split(text) if p.strip()]
    if len(parts) > 1:
        for p in parts:
            known = _known(p)
            out.add(_key(vendor_family(known or normalize_vendor(p) or p)))
    if not out:
        norm = normalize_vendor(text) or text
        out.add(_key(vendor_family(norm)))
    out.discard("")
    return frozenset(out)


def same_vendor(a: str | None, b: str | None) -> bool:
    return bool(families(a) & families(b))


def strip_vendor_prefix(name: str) -> str:
    """ "GE Aespire" -> "Aespire", "BD Pyxis MedStation ES" -> "Pyxis MedStation ES",
    "Welch Allyn Connex Spot Monitor" -> "Connex Spot Monitor". Leaves a name that is only a vendor."""
    s = name.strip()
    for _ in range(3):
        for pat, _vendor in _entries():
            m = pat.match(s)
            if m and m.end() > 0 and (m.end() == len(s) or not s[m.end()].isalnum()):
                rest = s[m.end():].strip(" -:,")
                if rest:
                    s = rest
                    break
        else:
            break
    return s
