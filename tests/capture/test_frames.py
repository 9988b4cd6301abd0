"""`_fastpath.scan_frames`: frames as live capture hands them over (data + per-frame meta) decode exactly as
the same frames in a pcap file do, and hostile meta never reads outside the data."""

from __future__ import annotations

import struct
from array import array

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.capture import _fastpath
from medsentry.capture.records import PACKET_DTYPE, ST_MALFORMED
from tests.capture.test_files import _ipv4_udp, _pcap

ETH = bytes.fromhex("001122334455" "66778899aabb" "0800")


def _scan_frames(data: bytes, meta: bytes, linktype: int = 1) -> np.ndarray:
    out = bytearray(max(1, len(meta) // 16) * PACKET_DTYPE.itemsize)
    n = _fastpath.scan_frames(data, meta, linktype, out)
    return np.frombuffer(out, dtype=PACKET_DTYPE, count=n)


def _as_live(frames: list[bytes], ts0: int = 1_700_000_000) -> tuple[bytes, bytes]:
    meta, off = array("I"), 0
    for i, f in enumerate(frames):
        meta.extend((ts0 + i, 500_000, off, len(f)))
        off += len(f)
    return b"".join(frames), meta.tobytes()


def _scan_pcap(frames: list[bytes]) -> np.ndarray:
    buf = _pcap(frames)
    out = bytearray(len(frames) * PACKET_DTYPE.itemsize)
    _, n, _ = _fastpath.scan_pcap(buf, 24, False, False, 1, out, len(frames))
    return np.frombuffer(out, dtype=PACKET_DTYPE, count=n)


def test_live_frames_decode_as_the_file_records_do() -> None:
    frames = [ETH + _ipv4_udp("10.0.0.1", "10.0.0.2", 5000 + i, 53, b"q" * i) for i in range(5)]
    frames.append(bytes.fromhex("ffffffffffff" "66778899aabb" "0806") + b"\x00" * 28)  # ARP
    live, file = _scan_frames(*_as_live(frames)), _scan_pcap(frames)
    assert len(live) == len(file) == 6
    frame_starts = np.cumsum([0] + [len(f) for f in frames[:-1]])
    assert live["frame_off"].tolist() == frame_starts.tolist()
    for name in PACKET_DTYPE.names:
        if name != "frame_off":  # offsets into different buffers
            assert live[name].tolist() == file[name].tolist(), name


def test_meta_pointing_outside_the_data_is_malformed_not_read() -> None:
    data = ETH + _ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"x")
    meta = struct.pack("=4I", 1, 0, 0, len(data)) + struct.pack("=4I", 2, 0, 10, len(data))
    meta += struct.pack("=4I", 3, 0, 0xFFFFFFFF, 0xFFFFFFFF) + b"\x01\x02"  # and a torn record: ignored
    recs = _scan_frames(data, meta)
    assert recs["status"].tolist()[1:] == [ST_MALFORMED, ST_MALFORMED]
    assert recs["caplen"].tolist() == [len(data), 0, 0]
    assert recs["status"][0] != ST_MALFORMED


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.lists(st.tuples(*[st.integers(0, 2**32 - 1)] * 4), max_size=20),
       st.sampled_from([1, 101, 113, 276, 147]))  # fmt: skip
def test_fuzz_frames_never_crash(data: bytes, meta: list[tuple[int, int, int, int]], linktype: int) -> None:
    recs = _scan_frames(data, array("I", [v for m in meta for v in m]).tobytes(), linktype)
    assert len(recs) == len(meta)
    inside = (recs["frame_off"] + recs["caplen"] <= len(data)) | (recs["status"] == ST_MALFORMED)
    assert inside.all()
