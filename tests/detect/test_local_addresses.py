"""Whether an address is the hospital's (`Config.is_local`): the IPv4 fast path says what ipaddress says."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.detect.config import Config, default_document


def _by_ipaddress(ip: str, networks: list[Any]) -> bool:
    """The answer as ipaddress gives it (the fast path's reference, and what `is_local` did before it)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    return (addr.is_multicast or addr.is_loopback or addr.is_link_local or addr.is_unspecified
            or str(addr) == "255.255.255.255" or any(addr in n for n in networks))  # fmt: skip


def _config(networks: list[str]) -> Config:
    return Config({**default_document(), "address_space": networks})


NETWORKS = st.lists(
    st.builds(lambda n, bits: str(ipaddress.ip_network((n, bits), strict=False)), st.integers(0, 2**32 - 1),
              st.integers(0, 32)),
    max_size=4,
).map(lambda ns: [*ns, "fc00::/7"])  # fmt: skip
DOTTED = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
NEAR_MISSES = st.lists(st.sampled_from(["0", "1", "01", "127", "255", "256", "1000", "", " ", "x", "٣"]),
                       min_size=1, max_size=6).map(".".join)  # fmt: skip
EDGES = st.sampled_from([
    "0.0.0.0", "255.255.255.255", "255.255.255.254", "127.0.0.1", "126.255.255.255", "128.0.0.0",
    "169.254.1.1", "169.253.255.255", "224.0.0.251", "239.255.255.250", "240.0.0.1", "10.0.0.1",
    "203.0.113.50", "::", "::1", "fe80::1", "fd00::5", "ff02::1", "::ffff:10.0.0.1", "1.2.3.4\x00", "",
])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(ip=st.one_of(DOTTED, NEAR_MISSES, EDGES, st.text(max_size=20)), networks=NETWORKS)
def test_local_as_ipaddress_says(ip: str, networks: list[str]) -> None:
    config = _config(networks)
    assert config.is_local(ip) == _by_ipaddress(ip, config.networks)
    assert config.is_local(ip) == _by_ipaddress(ip, config.networks)  # and again, from its cache


def test_the_default_address_space() -> None:
    config = Config(default_document())
    for ip in ("10.1.2.3", "192.168.255.255", "8.8.8.8", "203.0.113.50", "127.0.0.1", "224.0.0.1", "fd12::1",
               "2001:db8::1"):
        assert config.is_local(ip) == _by_ipaddress(ip, config.networks)
    assert config.is_local("10.1.2.3") and not config.is_local("8.8.8.8")
    assert config.is_local(None)
