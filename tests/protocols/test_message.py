"""`Message` keeps the dataclass contract under its hand-written constructor."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from medsentry.protocols.base import Message


def test_fields_defaults_and_frozen() -> None:
    m = Message("hl7.message", {"type": "ADT"}, True)
    assert dataclasses.astuple(m) == ("hl7.message", {"type": "ADT"}, True)
    assert type(m) is Message
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.kind = "x"  # type: ignore[misc]
    bare = Message("arp.reply")
    assert (bare.fields, bare.from_client) == ({}, None)
    assert bare.fields is not Message("arp.reply").fields  # not shared
    with pytest.raises(TypeError):
        Message()  # type: ignore[call-arg]


def test_replace_pickle_equality() -> None:
    m = Message(kind="dns.query", fields={"q": 1}, from_client=False)
    moved = dataclasses.replace(m, from_client=True)
    assert moved.from_client is True and moved.fields == m.fields and type(moved) is Message
    assert pickle.loads(pickle.dumps(m)) == m
    assert m != moved
    assert m == Message("dns.query", {"q": 1}, False)
    assert [f.name for f in dataclasses.fields(Message)] == ["kind", "fields", "from_client"]
    assert repr(m) == "Message(kind='dns.query', fields={'q': 1}, from_client=False)"
