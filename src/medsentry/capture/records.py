"""The packet record: one row per frame, filled by the C fast path (`_fastpath.c`, struct packet_rec).

A `Batch` is a numpy array of these records plus the buffer their `frame_off` fields point into, so
downstream code slices payloads out of the buffer only for the packets it chooses to dissect.
"""

from __future__ import annotations

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
