"""The IEEE registry lookup: longest prefix wins (MA-S 36 bits, MA-M 28, MA-L 24); local/multicast bits."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from importlib import resources

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.identify.oui import (
    _organization,
    _vendors,
    lookup,
    normalize_mac,
    normalize_vendor,
    vendor_family,
)
from medsentry.identify.oui import (
    _registry as _lines,
)


def _registry() -> dict[str, str]:
    """prefix (hex digits) -> organisation, read independently of the module under test; each line is
    "prefix<TAB>organisation"."""
    raw = resources.files("medsentry").joinpath("data/oui.tsv").read_bytes()
    lines = raw.decode().splitlines()
    assert lines == sorted(lines), "the module bisects them"
    rows = [line.split("\t", 1) for line in lines]
    return {prefix.upper(): org for prefix, org in rows}


def test_each_assignment_size_is_found_with_its_own_prefix() -> None:
    by_size: dict[int, tuple[str, str]] = {}
    for prefix, org in _registry().items():
        by_size.setdefault(len(prefix), (prefix, org))
    assert set(by_size) >= {6, 7, 9}, "the packaged registry holds MA-L, MA-M and MA-S"
    for n, (prefix, org) in by_size.items():
        mac = (prefix + "0" * 12)[:12]
        info = lookup(mac)
        assert info is not None and info.organization == org and info.prefix_bits == n * 4
        assert info.prefix is not None and info.prefix.replace(":", "") == prefix.upper()


def test_locally_administered_and_multicast_have_no_vendor() -> None:
    local = lookup("06:d6:aa:bb:cc:dd")
    assert local is not None and local.locally_administered and local.vendor is None
    multicast = lookup("01:00:5e:00:00:fb")
    assert multicast is not None and multicast.multicast and multicast.vendor is None
    assert lookup("not a mac") is None and normalize_mac("00-09-FB-72-00-FF") == "00:09:fb:72:00:ff"


def _one_by_one() -> Callable[[str], str | None]:
    """vendors.yaml read as its comment says, independently of the module's combined pattern: the entries
    tried in order, each's patterns matched at the start, case-insensitively; the first match wins
    ("unmatched": none did)."""
    doc = yaml.safe_load(resources.files("medsentry").joinpath("data/vendors.yaml").read_text("utf-8"))
    placeholder = re.compile("|".join(doc["none"]), re.IGNORECASE)
    entries = [(str(v["name"]), [re.compile(p, re.IGNORECASE) for p in v["match"]]) for v in doc["vendors"]]

    def vendor(name: str) -> str | None:
        name = " ".join(name.split())
        if placeholder.match(name):
            return None
        return next((n for n, patterns in entries if any(p.match(name) for p in patterns)), "unmatched")

    return vendor


def test_vendor_names_are_the_first_matching_entry_for_every_registered_organisation() -> None:
    organisations = sorted(set(_registry().values()))
    wire = ["GE MEDICAL SYSTEMS", "GEHC-CT", "Draeger", "Dräger Medical", "philips lighting b.v.",
            "Philips Medical Systems", "SIEMENS", "Siemens Healthineers AG", "b. braun", "ge"]
    one_by_one, checked = _one_by_one(), 0
    for name in organisations + wire:
        expected = one_by_one(name)
        got = normalize_vendor(name)
        if expected == "unmatched":
            assert got not in _vendors().names or got == name, name  # cleaned generically
        else:
            assert got == expected, name
            checked += expected is not None
    assert checked > 200, "many registered organisations are known vendors (270 today)"
    assert vendor_family("Siemens Healthineers") == "Siemens" and vendor_family("Acme") == "Acme"


def test_every_registered_prefix_and_no_other_is_found_in_the_table() -> None:
    registry = _registry()
    table = _lines()
    for prefix, org in registry.items():
        assert _organization(table, prefix.lower()) == org
    lower = {p.lower() for p in registry}
    rng = random.Random(7)
    absent = [p for p in (f"{rng.getrandbits(4 * n):0{n}x}" for n in (6, 7, 9) * 3000) if p not in lower]
    assert len(absent) > 1000
    for prefix in [*absent, "000000", "fffffffff", "0", ""]:
        if prefix not in lower:
            assert _organization(table, prefix) is None, prefix
    assert _organization([b"00000a\tA", b"00000a0\tB"], "00000a0") == "B"


def _normalized(mac: str) -> str | None:
    """normalize_mac's answer spelled out the long way (its fast path for normal MACs must agree)."""
    digits = "".join(c for c in mac.lower() if c not in ":-. ")
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02x}" for x in b)),
    st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b)),
    st.text(alphabet="0123456789abcdefABCDEFg:-. ", min_size=12, max_size=19),
    st.text(max_size=20),
))  # fmt: skip
def test_normalize_mac_agrees_with_the_long_way(mac: str) -> None:
    assert normalize_mac(mac) == _normalized(mac)
    info = lookup(mac)
    assert (info is None) == (_normalized(mac) is None)
    if info is not None:
        assert info.mac == _normalized(mac)
