"""`Observation` keeps the dataclass contract under its hand-written constructor."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from medsentry.observe import Observation


def test_fields_set_defaults_and_frozen() -> None:
    o = Observation(1.5, "tls", "tls.client_hello", "aa:bb", "10.0.0.1", "cc:dd", "10.0.0.2", 5, 443, "tcp",
                    {"sni": "x"}, "live")
    assert dataclasses.astuple(o) == (
        1.5, "tls", "tls.client_hello", "aa:bb", "10.0.0.1", "cc:dd", "10.0.0.2", 5, 443, "tcp",
        {"sni": "x"}, "live",
    )
    assert type(o) is Observation
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.ts = 2.0  # type: ignore[misc]
    bare = Observation(0.0, "arp", "arp.reply", None, None)
    assert (bare.dst_mac, bare.sport, bare.transport, bare.source) == (None, None, None, "pcap")
    assert bare.fields == {}
    assert bare.fields is not Observation(0.0, "arp", "arp.reply", None, None).fields  # not shared


def test_replace_pickle_equality() -> None:
    o = Observation(ts=1.0, protocol="dns", kind="dns.query", src_mac=None, src_ip="10.0.0.1",
                    fields={"q": 1})
    moved = dataclasses.replace(o, ts=2.0)
    assert moved.ts == 2.0 and moved.fields == o.fields and type(moved) is Observation
    assert pickle.loads(pickle.dumps(o)) == o
    assert o != moved
    assert [f.name for f in dataclasses.fields(Observation)][-2:] == ["fields", "source"]
