"""Hypothesis strategies shared by the dissector tests."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def spliced(draw: st.DrawFn, seed: bytes) -> bytes:
    """`seed` with a random slice of it replaced by up to 8 random bytes."""
    i = draw(st.integers(0, len(seed)))
    j = draw(st.integers(i, len(seed)))
    return seed[:i] + draw(st.binary(max_size=8)) + seed[j:]
