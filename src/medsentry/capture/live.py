"""Live capture from an interface through libpcap (pcapy-ng), delivered as the same `Batch`es as files.

Frames are re-framed as pcap records in a buffer and walked by the same C fast path, so live and file
input share every line of code after this one. Needs capture privileges: root, or
`setcap cap_net_raw,cap_net_admin=eip $(readlink -f .venv/bin/python)`.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import numpy as np

from medsentry.capture import _fastpath
from medsentry.capture.files import CaptureError
from medsentry.capture.records import PACKET_DTYPE, Batch

_REC = struct.Struct("<IIII")
FLUSH_PACKETS = 4096
FLUSH_SECONDS = 0.5


def capture(
    interface: str, bpf: str | None = None, duration: float | None = None, snaplen: int = 65535
) -> Iterator[Batch]:
    try:
        import pcapy  # pcapy-ng installs as `pcapy`
    except ImportError as exc:
        raise CaptureError(
            f"live:{interface}", 0, "live capture needs pcapy-ng: pip install 'medsentry[live]'"
        ) from exc
    try:
        handle = pcapy.open_live(interface, snaplen, True, int(FLUSH_SECONDS * 1000))
        if bpf:
            handle.setfilter(bpf)
    except pcapy.PcapError as exc:
        raise CaptureError(f"live:{interface}", 0, f"cannot capture: {exc}") from exc
    linktype = handle.datalink()
    out = bytearray(FLUSH_PACKETS * PACKET_DTYPE.itemsize)
    name = f"live:{interface}"
    end = time.monotonic() + duration if duration else None
    buf, count, flushed = bytearray(), 0, time.monotonic()
    while end is None or time.monotonic() < end:
        try:
            header, data = handle.next()
        except pcapy.PcapError as exc:
            raise CaptureError(name, 0, f"capture failed: {exc}") from exc
        if header is not None and data:
            sec, usec = header.getts()
            buf += _REC.pack(sec, usec, header.getcaplen(), header.getlen())
            buf += data
            count += 1
        now = time.monotonic()
        if count >= FLUSH_PACKETS or (count and now - flushed >= FLUSH_SECONDS):
            yield _batch(buf, linktype, out, name)
            buf, count, flushed = bytearray(), 0, now
    if count:
        yield _batch(buf, linktype, out, name)


def _batch(buf: bytearray, linktype: int, out: bytearray, name: str) -> Batch:
    view = memoryview(bytes(buf))
    _, n, _ = _fastpath.scan_pcap(view, 0, False, False, linktype, out, FLUSH_PACKETS)
    return Batch(view, np.frombuffer(out, dtype=PACKET_DTYPE, count=n).copy(), name)
