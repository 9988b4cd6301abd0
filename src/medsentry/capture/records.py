"""The packet record: one row per frame, filled by the C fast path (`_fastpath.c`, struct packet_rec).

A `Batch` is a numpy array of these records plus the buffer their `frame_off` fields point into, so
downstream code slices payloads out of the buffer only for the packets it chooses to dissect.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final

import numpy as np

from medsentry.capture import _fastpath

PACKET_DTYPE: Final = np.dtype(
    [
        ("ts", "<f8"),
        ("flow_hash", "<u8"),
        ("frame_off", "<u8"),
        ("caplen", "<u4"),
        ("wirelen", "<u4"),
        ("payload_off", "<u4"),
        ("payload_len", "<u4"),
        ("tcp_seq", "<u4"),
        ("ethertype", "<u2"),
        ("vlan", "<u2"),
        ("sport", "<u2"),
        ("dport", "<u2"),
        ("tcp_win", "<u2"),
        ("ipver", "u1"),
        ("proto", "u1"),
        ("tcp_flags", "u1"),
        ("ttl", "u1"),
        ("dir", "u1"),
        ("status", "u1"),
        ("iface", "u1"),
        ("linktype_ok", "u1"),
        ("src_mac", "V6"),
        ("dst_mac", "V6"),
        ("src_ip", "V16"),
        ("dst_ip", "V16"),
    ]
)
assert PACKET_DTYPE.itemsize == _fastpath.RECORD_SIZE, "PACKET_DTYPE out of step with _fastpath.c"
FIELDS: tuple[str, ...] = PACKET_DTYPE.names or ()  # positions of the fields in a record as a tuple

Buffer = bytes | bytearray | memoryview  # what a batch's frames are in

# Values of the `status` field.
ST_OK: Final = 0
ST_MALFORMED: Final = 1
ST_FRAGMENT: Final = 2
ST_UNSUPPORTED: Final = 3


@dataclass(slots=True)
class Batch:
    buf: Buffer  # frames live here, at rec["frame_off"]
    recs: np.ndarray  # PACKET_DTYPE
    source: str  # file name or interface, for evidence and error messages


# What `_fastpath`'s scans return: the buffer holds no further complete record, `out` is full, a record or
# block header is corrupt, a pcapng section header or interface block comes next (the caller reads it).
NEED_DATA: Final = 0
OUT_FULL: Final = 1
CORRUPT: Final = 2
NEED_BLOCK: Final = 3

BATCH = 1 << 16  # records decoded per step


class RecordArrays:
    """Arrays of `size` records for scans to write into, each taken again once nothing holds records of it
    (no batch, no view of its fields). With a fresh array a batch the kernel did the work: numpy asks for
    huge pages above 4 MB, so each array's first touch zeroed 2 MB pages and its free took them back,
    in the analysing thread too (zeroing 2.8 % of the command's CPU samples on the bench capture, 0.5 %
    with arrays taken again)."""

    KEEP: Final = 6  # the batches read ahead (`pipeline.READ_AHEAD`), the one analysed, the one read, spare

    def __init__(self, size: int | None = None) -> None:
        self.size = size or BATCH  # read now: tests make batches small by setting BATCH
        self._arrays: list[np.ndarray] = []
        self._free_refs = 0  # an array's references when only the list holds it (and the taking frame)

    def take(self) -> np.ndarray:
        for out in self._arrays:
            if sys.getrefcount(out) == self._free_refs:
                return out
        out = np.empty(self.size, dtype=PACKET_DTYPE)
        if len(self._arrays) < self.KEEP:
            self._arrays.append(out)
            self._free_refs = sys.getrefcount(out)
        return out
