"""One TCP direction's bytes in order: retransmissions dropped, reorderings repaired within the bound,
gaps reported."""

from __future__ import annotations

import random

from medsentry.decode.streams import MAX_PENDING_BYTES, MAX_PENDING_SEGMENTS, Direction


def segments(data: bytes, size: int, isn: int = 1000) -> list[tuple[int, bytes]]:
    return [((isn + i) & 0xFFFFFFFF, data[i : i + size]) for i in range(0, len(data), size)]


def deliver(order: list[tuple[int, bytes]]) -> bytes | None:
    d, out = Direction(), []
    d.next_seq = order[0][0] if order else None
    for seq, chunk in order:
        got = d.accept(seq, chunk)
        if got is None:
            return None
        out.append(got)
    return b"".join(out)


DATA = bytes(random.Random(1).randbytes(200 * 100))


def test_in_order_and_retransmissions() -> None:
    segs = segments(DATA, 100)
    assert deliver(segs) == DATA
    # a retransmission (whole, or overlapping with new bytes after it) adds nothing twice
    resent = [*segs[:5], segs[3], (segs[4][0] + 50, DATA[450:550]), *segs[5:]]
    assert deliver(resent) == DATA


def test_interleaved_queues_are_repaired() -> None:
    """Two halves of a burst interleaved 20 segments apart, as in the virtual hospital's capture (where
    14-segment runs alternate): up to 20 wait in the store."""
    segs = segments(DATA, 100)
    rest = segs[1:]
    ahead, behind = rest[20:40], rest[:20]
    mixed = [segs[0], *(s for pair in zip(ahead, behind, strict=True) for s in pair), *rest[40:]]
    assert deliver(mixed) == DATA


def test_the_store_is_bounded_and_a_gap_is_reported() -> None:
    segs = segments(DATA, 100)
    late = segs[1]
    order = [segs[0], *segs[2 : 2 + MAX_PENDING_SEGMENTS], late]
    assert deliver(order) == DATA[: (2 + MAX_PENDING_SEGMENTS) * 100]
    order = [segs[0], *segs[2 : 3 + MAX_PENDING_SEGMENTS], late]  # one more than the store holds
    assert deliver(order) is None


def test_sequence_numbers_wrap() -> None:
    segs = segments(DATA[:1000], 100, isn=0xFFFFFF00)
    assert deliver([segs[0], segs[2], segs[1], *segs[3:]]) == DATA[:1000]


def test_held_bytes_are_bounded_too() -> None:
    """Segments of 64 KiB (a capture taken with offloads on): the store holds at most MAX_PENDING_BYTES."""
    big = bytes(64 * 1024)
    d = Direction()
    d.next_seq = 0
    fits = MAX_PENDING_BYTES // len(big)
    for k in range(1, fits + 1):
        assert d.accept(k * len(big), big) == b""
    assert d.held == fits * len(big) and d.accept((fits + 1) * len(big), big) is None
    resent = d.accept(len(big), big)  # the same segment again replaces itself: nothing more held
    assert resent == b"" and d.held == fits * len(big)
    assert d.accept(0, big) == big * (fits + 1) and d.held == 0 and not d.pending
