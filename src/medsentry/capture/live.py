"""Live capture from an interface through libpcap (pcapy-ng), delivered as the same `Batch`es as files.

libpcap hands frames over a batch per call (`next_batch`: the frames, and per frame its time, offset and
length) and the C fast path decodes them where they lie (`scan_frames`): no Python runs per packet, as
for files. The handle is non-blocking and waited on with select(): on Linux (TPACKET_V3) libpcap's read
timeout only expires once a packet has arrived, so a blocking read would never see the end of
`--duration`, nor a Ctrl-C, on a quiet interface.

`fanout`: several processes share one interface's traffic by flow (Linux PACKET_FANOUT_HASH: the kernel
hashes the addresses and ports of both directions alike, so a flow's packets all reach one process).

Needs capture privileges: root, or `setcap cap_net_raw,cap_net_admin=eip $(readlink -f .venv/bin/python)`.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from medsentry.capture import _fastpath
from medsentry.capture.errors import CaptureError
from medsentry.capture.records import PACKET_DTYPE, Batch

BATCH_PACKETS = 8192  # at most this many frames per batch
FLUSH_SECONDS = 0.2  # the kernel hands over a partly filled buffer block after this long
BUFFER_BYTES = 64 << 20  # kernel ring buffer: absorbs bursts while a batch is being analysed
WAKE_SECONDS = 0.5  # how soon a quiet capture notices its deadline or a stop
DRAIN_LIMIT_SECONDS = 10.0  # at most this long reading, after a stop, what arrived before it
# Below full batches, read at most this often: every batch costs the analysis ~0.4 ms whatever its size,
# and at 100k packets/s the kernel wakes a reader for ~400 frames (big-1of4 live: 1,400 batches -> 220).
GATHER_SECONDS = 0.02
_META_BYTES = 16  # per frame, in next_batch's `meta`


_NO_SUCH_DEVICE = -5
_ACTIVATE_ERRORS = {  # pcap_activate(3PCAP)
    _NO_SUCH_DEVICE: "no such interface",
    -8: "permission denied: run as root, or give the interpreter cap_net_raw,cap_net_admin (README)",
    -9: "the interface is not up",
    -11: "permission denied for promiscuous mode",
    -1: "libpcap could not open it",
}


class LiveCapture:
    """Iterate to capture; `dropped` counts frames the kernel or the interface dropped because analysis
    fell behind (final once iteration has ended).

    When the deadline passes or `stop()` turns true at time T, what arrived before T is still read: capture
    ends at the first frame stamped after T, or once the kernel has nothing more (it hands over its last,
    partly filled block after FLUSH_SECONDS), or after DRAIN_LIMIT_SECONDS.

    Fanout: the handle joins the group as soon as it is open. A frame that arrived before that reached this
    handle as well as the group, so frames stamped before the join (`not_before`) are skipped, and the
    counters start at the join. Open a group's captures one after the other (e.g. in a parent, then fork):
    every frame after the first join is then seen once (except one arriving during a join call itself,
    which that handle takes for an earlier one and skips: a window of microseconds, at start only)."""

    def __init__(
        self,
        interface: str,
        bpf: str | None = None,
        *,
        deadline: float | None = None,
        stop: Callable[[], bool] | None = None,
        fanout: int | None = None,
        snaplen: int = 65535,
        buffer_bytes: int = BUFFER_BYTES,
    ) -> None:
        """`deadline`: time.monotonic() to stop at (one for all processes of a fanout group); `stop` is
        checked at least every WAKE_SECONDS."""
        self.name = f"live:{interface}"
        self.dropped = 0
        self._deadline = deadline
        self._stop = stop or (lambda: False)
        self.on_idle: Callable[[], None] | None = None  # called when a wait ended without frames
        self._handle, self.not_before = _open(self.name, interface, bpf, fanout, snaplen, buffer_bytes)
        # What the counter said on joining: drops before that were not ours to count.
        self._dropped_before = 0
        if fanout is not None:
            self._count()
            self._dropped_before = self.dropped

    def __iter__(self) -> Iterator[Batch]:
        import pcapy

        handle = self._handle
        linktype = handle.datalink()
        fd = handle.getfd()
        out = bytearray(BATCH_PACKETS * PACKET_DTYPE.itemsize)
        stopped_at: float | None = None  # wall-clock time of the stop: frames before it are still read
        drain_end = 0.0
        last_read, last_full = 0.0, True
        try:
            while True:
                now = time.monotonic()
                if stopped_at is None:
                    if self._stop() or (self._deadline is not None and now >= self._deadline):
                        stopped_at, drain_end = time.time(), now + DRAIN_LIMIT_SECONDS
                        quiet_after = now + 2 * FLUSH_SECONDS
                        continue
                    wait = WAKE_SECONDS if self._deadline is None else min(WAKE_SECONDS, self._deadline - now)
                elif now >= drain_end:
                    break
                else:
                    wait = FLUSH_SECONDS
                select.select([fd], [], [], wait)
                if not last_full and (since := time.monotonic() - last_read) < GATHER_SECONDS:
                    time.sleep(GATHER_SECONDS - since)  # let frames gather (the kernel ring holds them)
                last_read = time.monotonic()
                try:
                    data, meta = handle.next_batch(BATCH_PACKETS)
                except pcapy.PcapError as exc:
                    raise CaptureError(self.name, None, f"capture failed: {exc}") from exc
                last_full = len(meta) >= _META_BYTES * BATCH_PACKETS // 2 if meta else True
                if not meta:
                    if stopped_at is not None and time.monotonic() >= quiet_after:
                        break  # the kernel has handed over everything it held
                    if self.on_idle is not None:
                        self.on_idle()
                    continue
                n = _fastpath.scan_frames(data, meta, linktype, out)
                recs = np.frombuffer(out, dtype=PACKET_DTYPE, count=n)
                ts = recs["ts"]
                if ts[0] < self.not_before:
                    recs = recs[ts >= self.not_before]
                if len(recs):
                    yield Batch(memoryview(data), recs.copy(), self.name)
                if stopped_at is not None and ts[-1] >= stopped_at:
                    break  # frames arrive in order: everything before the stop has been read
        finally:
            self.close()

    def close(self, count: bool = True) -> None:
        """Release the handle; `count`: read its drop counters first (not in a process that handed the
        capture to another, whose counters they are)."""
        if self._handle is not None:
            if count:
                self._count()
            self._handle.close()
            self._handle = None

    def _count(self) -> None:
        import pcapy

        try:
            _, dropped, if_dropped = self._handle.stats()
        except pcapy.PcapError:  # a failed handle has no counters: keep the last ones
            return
        self.dropped = dropped + if_dropped - self._dropped_before


def _open(name: str, interface: str, bpf: str | None, fanout: int | None, snaplen: int, buffer_bytes: int
          ) -> tuple[Any, float]:
    """(handle, when it joined `fanout` in epoch seconds, or 0.0)."""
    try:
        import pcapy  # pcapy-ng installs as `pcapy`
    except ImportError as exc:
        raise CaptureError(name, None, "live capture needs pcapy-ng: pip install 'medsentry[live]'") from exc
    if not hasattr(pcapy, "PACKET_FANOUT_HASH"):
        raise CaptureError(name, None, "live capture needs pcapy-ng >= 2.1: pip install -U 'medsentry[live]'")
    try:
        handle = pcapy.create(interface)
        handle.set_snaplen(snaplen)
        handle.set_promisc(1)
        handle.set_timeout(int(FLUSH_SECONDS * 1000))
        handle.set_buffer_size(buffer_bytes)
        status = handle.activate()  # pcapy-ng returns libpcap's status rather than raising
        if status is not None and status < 0:
            reason = _ACTIVATE_ERRORS.get(status, f"libpcap error {status}")
            if status == _NO_SUCH_DEVICE:
                reason += f" (interfaces: {', '.join(pcapy.findalldevs())})"
            raise CaptureError(name, None, f"cannot capture: {reason}")
        joined = 0.0
        if fanout is not None:
            handle.set_fanout(fanout, pcapy.PACKET_FANOUT_HASH)
            joined = time.time()
        if bpf:
            handle.setfilter(bpf)
        handle.setnonblock(1)
    except (pcapy.PcapError, OSError, ValueError) as exc:
        raise CaptureError(name, None, f"cannot capture: {exc}") from exc
    return handle, joined
