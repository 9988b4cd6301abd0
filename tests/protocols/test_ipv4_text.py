"""`ipv4_text` is `socket.inet_ntoa` with a memory: same text, same error, bounded."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medsentry.protocols import base
from medsentry.protocols.base import ipv4_text


@given(st.binary(min_size=4, max_size=4))
def test_same_text_as_inet_ntoa(packed: bytes) -> None:
    assert ipv4_text(packed) == socket.inet_ntoa(packed)
    assert ipv4_text(packed) == socket.inet_ntoa(packed)  # remembered


@pytest.mark.parametrize("packed", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_wrong_length_is_an_os_error(packed: bytes) -> None:
    with pytest.raises(OSError):
        ipv4_text(packed)


def test_memory_is_bounded() -> None:
    for i in range(base._MAX_IPV4_TEXTS + 10):
        ipv4_text(i.to_bytes(4, "big"))
    assert len(base._IPV4_TEXTS) <= base._MAX_IPV4_TEXTS
    assert ipv4_text(b"\x0a\x00\x00\x01") == "10.0.0.1"
