"""The IEEE registry lookup: longest prefix wins (MA-S 36 bits, MA-M 28, MA-L 24); local/multicast bits."""

from __future__ import annotations

import gzip
from importlib import resources

from medsentry.identify.oui import lookup, normalize_mac


def _registry() -> dict[str, str]:
    """prefix (hex digits) -> organisation, read independently of the module under test; each line is
    "prefix<TAB>organisation"."""
    raw = resources.files("medsentry").joinpath("data/oui.tsv.gz").read_bytes()
    lines = gzip.decompress(raw).decode().splitlines()
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
