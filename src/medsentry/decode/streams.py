"""In-order delivery of one TCP direction's bytes, bounded.

Retransmitted bytes are dropped, small reorderings are repaired from a bounded out-of-order store, and a
gap that does not fill is reported so the caller can stop inspecting the flow (a parser fed bytes with a
hole in them would only produce garbage).
"""

from __future__ import annotations

from typing import Final

# Out-of-order segments held per direction. A SPAN session merging several ports, or a capture taken from
# two queues, interleaves a connection's segments some 20 KiB apart: 16 made gaps of such reorderings.
MAX_PENDING_SEGMENTS: Final = 64
# and their bytes: a capture with offloads on has segments of up to 64 KiB
MAX_PENDING_BYTES: Final = 256 * 1024
_SEQ_MOD: Final = 1 << 32


class Direction:
    __slots__ = ("held", "next_seq", "pending")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.pending: dict[int, bytes] = {}
        self.held = 0  # bytes in `pending`

    def accept(self, seq: int, data: bytes) -> bytes | None:
        """Bytes that are now in order (possibly b""), or None when a gap could not be repaired."""
        if self.next_seq is None:
            self.next_seq = seq
        delta = (seq - self.next_seq) % _SEQ_MOD
        if delta >= _SEQ_MOD // 2:  # starts before next_seq: retransmission, maybe with new bytes
            overlap = _SEQ_MOD - delta
            if overlap >= len(data):
                return b""
            data, delta = data[overlap:], 0
        if delta:
            before = self.pending.get(seq, b"")
            if (len(self.pending) >= MAX_PENDING_SEGMENTS and not before) or (
                self.held - len(before) + len(data) > MAX_PENDING_BYTES
            ):
                return None
            self.pending[seq] = data
            self.held += len(data) - len(before)
            return b""
        out = [data]
        self.next_seq = (self.next_seq + len(data)) % _SEQ_MOD
        while self.next_seq in self.pending:
            chunk = self.pending.pop(self.next_seq)
            self.held -= len(chunk)
            out.append(chunk)
            self.next_seq = (self.next_seq + len(chunk)) % _SEQ_MOD
        return b"".join(out) if len(out) > 1 else data
