"""`--workers` readers: each reads its own segments of a file, guessing where they start; together they deal
exactly the batches one process reads, whatever the payloads look like, and stop where the file breaks."""

from __future__ import annotations

import gzip
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.capture import _fastpath, files, records
from medsentry.capture.errors import CaptureError
from medsentry.capture.files import CaptureFile
from medsentry.deal import END, TAKEN, WHOLE, SegmentReader, Shared, dealt, plan
from tests.pcaputil import epb, idb, pcapng_of, record_starts, shb

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/hospital-ward.pcap"


class _Context:
    """What `Shared` needs of a multiprocessing context, for readers run as threads."""

    @staticmethod
    def RawArray(typecode: str, size: int) -> Any:
        import multiprocessing

        return multiprocessing.get_context("fork").RawArray(typecode, size)


class _Queue:
    def __init__(self) -> None:
        self.items: list[Any] = []
        self.at = 0
        self.ready = threading.Condition()

    def put(self, item: Any) -> None:
        with self.ready:
            self.items.append(item)
            self.ready.notify_all()

    def get(self) -> Any:
        with self.ready:
            self.ready.wait_for(lambda: self.at < len(self.items), timeout=60)
            self.at += 1
            return self.items[self.at - 1]


def _read_in_threads(paths: list[Path], readers: int, workers: int
                     ) -> tuple[list[list[Any]], int, list[int]]:  # fmt: skip
    """Every worker's shares, as `dealt` gives them, with `readers` readers running side by side, how many
    segment starts they guessed wrong, and the segments' ends as published."""
    segments = plan(paths)
    shared = Shared(_Context(), workers, len(segments), readers)
    queues = [[_Queue() for _ in range(workers)] for _ in range(readers)]
    parts = [SegmentReader(segments, r, readers, workers, lambda k, s, r=r: queues[r][k].put(s), shared)
             for r in range(readers)]  # fmt: skip
    threads = [threading.Thread(target=p.run) for p in parts]
    for t in threads:
        t.start()
    got = [list(dealt([q[k] for q in queues], len(segments))) for k in range(workers)]
    for t in threads:
        t.join()
    return got, sum(p.guessed_wrong for p in parts), np.frombuffer(shared.ends, np.int64).tolist()


def _as_one_process(got: list[list[Any]]) -> list[Any]:
    """The workers' shares put back together: (file), (error) and each batch's records with their frames'
    file offsets, in the order the workers took them."""
    out: list[Any] = []
    for shares in zip(*got, strict=True):
        kind = shares[0][0]
        assert all(s[0] == kind for s in shares)
        if kind != "batch":
            assert all(s == shares[0] for s in shares)
            out.append(shares[0])
            continue
        rows = np.concatenate([s[2] for s in shares])
        recs = np.concatenate([s[3] for s in shares])[np.argsort(rows)]
        where = shares[0][1]
        assert all(s[1] == where and s[4] == shares[0][4] for s in shares)
        assert sorted(rows.tolist()) == list(range(len(rows)))
        if isinstance(where, tuple):  # (window, length) of a mapped file; a compressed one's frames
            recs["frame_off"] += where[0]
        out.append(("batch", recs.tobytes()))
    return out


def _one_process(paths: list[Path]) -> list[Any]:
    out: list[Any] = []
    for path in files.expand_paths(paths):
        out.append(("file", str(path)))
        cap = CaptureFile(path)
        try:
            for batch in cap:
                recs = batch.recs.copy()
                recs["frame_off"] += cap.window or 0
                out.append(("batch", recs.tobytes()))
        except CaptureError as exc:
            out.append(("error", str(exc)))
    return out


def _udp_frame(payload: bytes) -> bytes:
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02" + b"\x08\x00"
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))  # fmt: skip
    return eth + ip + struct.pack(">HHHH", 40000, 514, 8 + len(payload), 0) + payload


def _pcap(frames: list[bytes]) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, frame in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i, i % 1_000_000, len(frame), len(frame)) + frame)
    return b"".join(out)


def _records_in_payload(count: int) -> bytes:
    """A payload that reads as `count` small pcap records: what a capture of a capture being copied holds."""
    return b"".join(struct.pack("<IIII", 1_700_000_000, 5, 20, 20) + bytes(20) for _ in range(count))


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "SEGMENT", 2048)
    monkeypatch.setattr(records, "BATCH", 5)  # several batches in a segment, too


@pytest.mark.parametrize("form", ["pcap", "pcapng"])
@pytest.mark.parametrize("readers", [1, 2, 3])
def test_readers_deal_the_batches_one_process_reads(
    small_segments: None, tmp_path: Path, form: str, readers: int
) -> None:
    pcap = EXAMPLE.read_bytes()[:400_000]
    capture = tmp_path / f"ward.{form}"
    capture.write_bytes(pcap if form == "pcap" else pcapng_of(pcap))
    got, _, _ = _read_in_threads([capture], readers, 2)
    expected = _one_process([capture])
    assert len(expected) > 100
    assert _as_one_process(got) == expected


def test_a_payload_that_looks_like_records_costs_a_reread_not_a_wrong_record(
    small_segments: None, tmp_path: Path
) -> None:
    capture = tmp_path / "copying-a-capture.pcap"
    capture.write_bytes(_pcap([_udp_frame(_records_in_payload(12) + bytes(300)) for _ in range(60)]))
    got, wrong, _ = _read_in_threads([capture], 3, 2)
    assert wrong > 0  # segment starts guessed inside payloads, and read again from where they are
    assert _as_one_process(got) == _one_process([capture])


def test_a_pcapng_whose_interfaces_change_is_read_on_by_the_reader_that_met_the_change(
    small_segments: None, tmp_path: Path
) -> None:
    """A second interface (raw IP) and a new section later in the file: the readers after the change had
    taken the first interfaces to hold; the one that met it reads the rest, as one process does."""
    pcap = EXAMPLE.read_bytes()[:300_000]
    capture = tmp_path / "more-interfaces.pcapng"
    capture.write_bytes(pcapng_of(pcap, {120: idb(101), 400: shb() + idb() + idb(101)}))
    got, _, ends = _read_in_threads([capture], 3, 2)
    assert _as_one_process(got) == _one_process([capture])
    assert TAKEN in ends


def test_a_pcapng_payload_that_looks_like_blocks_costs_a_reread(small_segments: None, tmp_path: Path) -> None:
    blocks = epb(0, 1.0, bytes(40)) * 6  # what a pcapng being copied looks like inside a packet
    capture = tmp_path / "copying-a-pcapng.pcapng"
    frames = [_udp_frame(bytes(2) + blocks + bytes(200)) for _ in range(60)]  # on the blocks' 4-byte grid
    capture.write_bytes(shb() + idb() + b"".join(epb(0, 1.7e9 + i, f) for i, f in enumerate(frames)))
    got, wrong, _ = _read_in_threads([capture], 3, 2)
    assert wrong > 0
    assert _as_one_process(got) == _one_process([capture])


@pytest.mark.parametrize("cut", ["corrupt", "truncated"])
def test_a_broken_file_stops_where_one_process_stops(small_segments: None, tmp_path: Path, cut: str) -> None:
    raw = bytearray(EXAMPLE.read_bytes())
    if cut == "corrupt":
        # the 40th record's captured length made impossible; the records after it are fine
        struct.pack_into("<I", raw, record_starts(raw)[40] + 8, 0x7FFFFFFF)
    else:
        raw = raw[: len(raw) // 2 + 7]
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(bytes(raw))
    after = tmp_path / "later.pcap"  # the next file is read as one process reads it
    whole = EXAMPLE.read_bytes()
    after.write_bytes(whole[: record_starts(whole)[30]])
    got, _, _ = _read_in_threads([broken, after], 3, 2)
    merged = _as_one_process(got)
    assert merged == _one_process([broken, after])
    assert [m[0] for m in merged].count("error") == 1


def test_captures_other_than_plain_pcap_or_pcapng_are_one_segment(
    tmp_path: Path, small_segments: None
) -> None:
    (tmp_path / "a.pcap.gz").write_bytes(gzip.compress(EXAMPLE.read_bytes()))
    (tmp_path / "b.pcap").write_bytes(EXAMPLE.read_bytes())
    (tmp_path / "c.pcap").write_bytes(b"not a capture at all")
    (tmp_path / "d.pcapng").write_bytes(shb() + idb())  # no packets
    segments = plan([tmp_path])
    names = ("a.pcap.gz", "b.pcap", "c.pcap", "d.pcapng")
    by_file = {p: [s.index for s in segments if s.path.name == p] for p in names}
    assert by_file["a.pcap.gz"] == by_file["c.pcap"] == by_file["d.pcapng"] == [WHOLE]
    assert by_file["b.pcap"] == list(range((EXAMPLE.stat().st_size - 1) // 2048 + 1))
    got, _, _ = _read_in_threads([tmp_path], 2, 3)
    assert _as_one_process(got) == _one_process([tmp_path])


def test_resync_finds_the_next_record_after_any_offset() -> None:
    raw = EXAMPLE.read_bytes()[:200_000]
    starts = record_starts(raw)
    first = struct.unpack_from("<I", raw, 24)[0]
    for at in range(24, 100_000, 997):
        found = _fastpath.resync_pcap(raw, at, False, False, 8, first)
        assert found == min(s for s in starts if s >= at)
    assert _fastpath.resync_pcap(b"\xff" * 5000, 0, False, False, 8, first) == -1
    assert _fastpath.resync_pcap(bytes(5000), 0, False, False, 8, 0) == -1  # zeros are no records


def test_resync_finds_the_next_pcapng_block_after_any_offset() -> None:
    raw = pcapng_of(EXAMPLE.read_bytes()[:100_000])
    starts, off = [], 0
    while off + 12 <= len(raw):
        starts.append(off)
        off += struct.unpack_from("<I", raw, off + 4)[0]
    for at in range(0, 90_000, 997):
        assert _fastpath.resync_pcapng(raw, at, False, 4) == min(s for s in starts if s >= at)
    assert _fastpath.resync_pcapng(bytes(5000), 0, False, 4) == -1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=3000), start=st.integers(0, 3000), chain=st.integers(1, 12),
       first=st.integers(0, 2**32 - 1))
def test_resync_on_any_bytes_answers_an_offset_in_range_or_none(
    data: bytes, start: int, chain: int, first: int
) -> None:
    found = _fastpath.resync_pcap(data, start, False, True, chain, first)
    assert found == -1 or start <= found <= len(data)
    found = _fastpath.resync_pcapng(data, start, first % 2 == 1, chain)
    assert found == -1 or (start <= found <= len(data) and found % 4 == 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(24, 59_999), st.integers(0, 255)), max_size=6),
       pcapng=st.booleans())
def test_readers_agree_with_one_process_on_damaged_captures(
    tmp_path_factory: pytest.TempPathFactory, flips: list[tuple[int, int]], pcapng: bool
) -> None:
    raw = bytearray(EXAMPLE.read_bytes()[:60_000])
    if pcapng:
        raw = bytearray(pcapng_of(bytes(raw)))
    for at, value in flips:
        raw[at] = value
    path = tmp_path_factory.mktemp("damaged") / ("damaged.pcapng" if pcapng else "damaged.pcap")
    path.write_bytes(bytes(raw))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(files, "SEGMENT", 4096)
        got, _, _ = _read_in_threads([path], 3, 2)
        assert _as_one_process(got) == _one_process([path])


def test_every_segment_ends_with_its_end_mark(small_segments: None) -> None:
    segments = plan([EXAMPLE])
    shared = Shared(_Context(), 1, len(segments), 1)
    sent: list[Any] = []
    SegmentReader(segments, 0, 1, 1, lambda k, s: sent.append(s), shared).run()
    assert sent.count(END) == len(segments) and sent[-1] == END


@pytest.mark.parametrize("start", [-5, 0, 10, 5000])
def test_scanning_from_anywhere_in_or_past_a_buffer_reads_nothing_outside_it(start: int) -> None:
    buf = EXAMPLE.read_bytes()[24:4024]  # records from the first, cut mid-record
    out = np.empty(64, dtype=records.PACKET_DTYPE)
    off, n, _ = _fastpath.scan_pcap(buf, start, False, False, 1, out, 64, 3000)
    assert 0 <= off <= len(buf) and 0 <= n <= 64
    if start >= len(buf):
        assert (off, n) == (len(buf), 0)
    ng = pcapng_of(EXAMPLE.read_bytes()[:4024])
    off, n, _ = _fastpath.scan_pcapng(ng, start, False, b"", out, 64)
    assert 0 <= off <= len(ng) and 0 <= n <= 64
