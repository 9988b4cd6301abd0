"""An address's facts (`inventory._Addr`): the IPv4 fast path says what ipaddress says."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.identify.inventory import _NO_ADDRESS, LOCAL_NETWORKS, _Addr


def _by_ipaddress(ip: str, networks: tuple[Any, ...]) -> tuple[Any, ...]:
    """The facts as ipaddress gives them (the fast path's reference)."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return 0, False, False, False, (9, 0)
    local = a.is_link_local or any(a in n for n in networks)
    usable = not (a.is_multicast or a.is_unspecified or ip in _NO_ADDRESS)
    return a.version, a.is_link_local, local, usable, (a.version, int(a))


def _facts(ip: str, networks: tuple[Any, ...]) -> tuple[Any, ...]:
    ranges = tuple((int(n.network_address), int(n.broadcast_address)) for n in networks if n.version == 4)
    a = _Addr(ip, networks, ranges)
    return a.family, a.link_local, a.local, a.usable, a.order


NETWORKS = st.lists(
    st.builds(lambda n, bits: ipaddress.ip_network((n, bits), strict=False), st.integers(0, 2**32 - 1),
              st.integers(0, 32)),
    max_size=4,
).map(lambda ns: (*ns, ipaddress.ip_network("fc00::/7")))  # fmt: skip

DOTTED = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
NEAR_MISSES = st.lists(st.sampled_from(["0", "1", "01", "255", "256", "1000", "", " ", "x", "٣"]), min_size=1,
                       max_size=6).map(".".join)  # fmt: skip
EDGES = st.sampled_from([
    "0.0.0.0", "255.255.255.255", "169.254.1.1", "169.253.255.255", "224.0.0.251", "239.255.255.250",
    "240.0.0.1", "10.0.0.1", "172.31.255.255", "172.32.0.0", "100.64.0.1", "::", "fe80::1", "fd00::5",
    "::ffff:10.0.0.1", "1.2.3.4\x00", "1.2.3.4 ", "",
])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(ip=st.one_of(DOTTED, NEAR_MISSES, EDGES, st.text(max_size=20)), networks=NETWORKS)
def test_ipv4_facts_match_ipaddress(ip: str, networks: tuple[Any, ...]) -> None:
    assert _facts(ip, networks) == _by_ipaddress(ip, networks)


def test_the_default_address_space() -> None:
    for ip in ("10.1.2.3", "172.16.0.1", "192.168.255.255", "100.127.0.1", "8.8.8.8", "169.254.9.9",
               "fd12::1"):
        assert _facts(ip, LOCAL_NETWORKS) == _by_ipaddress(ip, LOCAL_NETWORKS)
    assert _facts("8.8.8.8", LOCAL_NETWORKS)[2] is False and _facts("10.1.2.3", LOCAL_NETWORKS)[2] is True
