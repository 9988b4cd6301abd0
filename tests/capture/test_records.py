"""`_fastpath.records`: the records at some rows as tuples, exactly as numpy's `tolist` gives them (the
pipeline indexes them by `FIELDS` position), for any bytes in a record; bad rows raise, never read outside.
`_fastpath.payload`: a slice of a buffer copied, as `bytes(buf[start:end])` gives it. `_fastpath.row_lists`:
the flow table's rows as lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.capture import _fastpath
from medsentry.capture.files import CaptureFile
from medsentry.capture.records import FIELDS, PACKET_DTYPE
from tests.capture.test_files import VH


def _same(got: list[tuple[object, ...]], want: list[tuple[object, ...]]) -> None:
    def comparable(t: tuple[object, ...]) -> tuple[object, ...]:  # a fuzzed time stamp may be NaN, not == NaN
        return tuple("NaN" if isinstance(x, float) and x != x else x for x in t)

    assert [comparable(t) for t in got] == [comparable(t) for t in want]
    for g, w in zip(got, want, strict=True):
        assert len(g) == len(FIELDS)
        assert [type(x) for x in g] == [type(x) for x in w]  # 1 == 1.0 == True: the types must agree too


def test_rows_of_a_real_capture_as_numpy_converts_them(shared_data: Path) -> None:
    for batch in CaptureFile(shared_data / VH):
        recs = batch.recs
        rows = [*range(0, len(recs), 3), len(recs) - 1, 0, 0]  # any order, repeats
        _same(_fastpath.records(recs, rows), recs.take(rows).tolist())


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=PACKET_DTYPE.itemsize, max_size=PACKET_DTYPE.itemsize * 4), st.data())
def test_any_record_bytes_convert_as_numpy_does(raw: bytes, data: st.DataObject) -> None:
    n = len(raw) // PACKET_DTYPE.itemsize
    recs = np.frombuffer(raw[: n * PACKET_DTYPE.itemsize], dtype=PACKET_DTYPE)
    rows = data.draw(st.lists(st.integers(0, n - 1), max_size=8))
    _same(_fastpath.records(recs, rows), recs.take(rows).tolist() if rows else [])


def test_rows_outside_the_records_raise() -> None:
    recs = np.zeros(2, dtype=PACKET_DTYPE)
    for rows in ([2], [-1], [0, 5]):
        with pytest.raises(IndexError):
            _fastpath.records(recs, rows)
    with pytest.raises(TypeError):
        _fastpath.records(recs, (0, 1))  # a list, as the pipeline passes
    with pytest.raises(ValueError):
        _fastpath.records(b"\x00" * (PACKET_DTYPE.itemsize + 1), [0])


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=64),
    st.integers(0, 80),
    st.integers(0, 80),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_payload_is_the_slice_copied(data: bytes, start: int, length: int, kind: type) -> None:
    buf = kind(data)
    assert _fastpath.payload(buf, start, length) == bytes(buf[start : start + length])
    assert type(_fastpath.payload(buf, start, length)) is bytes


def test_payload_refuses_negative_bounds() -> None:
    for start, length in ((-1, 2), (0, -1)):
        with pytest.raises(ValueError):
            _fastpath.payload(b"abc", start, length)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_row_lists_as_numpy_would_list_them(data: st.DataObject) -> None:
    """`_fastpath.row_lists`: rows lo..hi of the flow table's (n x 5) output as six lists, each row's time
    stamp read from its record, as `block.T.tolist()` and `recs["ts"][block[:, 0]].tolist()` give them."""
    recs = np.zeros(data.draw(st.integers(1, 6)), dtype=PACKET_DTYPE)
    recs["ts"] = data.draw(st.lists(st.floats(0, 2e9), min_size=len(recs), max_size=len(recs)))
    n = data.draw(st.integers(0, 8))
    rest = st.lists(st.integers(-(2**40), 2**40), min_size=4, max_size=4)  # start, length, seq, dir
    rows = [[data.draw(st.integers(0, len(recs) - 1)), *data.draw(rest)] for _ in range(n)]
    block = np.array(rows, dtype=np.int64).reshape(n, 5)
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    part = block[lo:hi]
    want = (*part.T.tolist(), recs["ts"][part[:, 0]].tolist())
    assert _fastpath.row_lists(block, lo, hi, recs) == want


def test_row_lists_refuse_rows_outside_the_records_or_the_block() -> None:
    recs = np.zeros(2, dtype=PACKET_DTYPE)
    block = np.array([[0, 1, 2, 3, 0], [5, 1, 2, 3, 0]], dtype=np.int64)
    assert _fastpath.row_lists(block, 0, 1, recs)[0] == [0]
    with pytest.raises(IndexError):
        _fastpath.row_lists(block, 0, 2, recs)  # row 5 of 2 records
    with pytest.raises(ValueError):
        _fastpath.row_lists(block, 1, 3, recs)


def test_tally_counts_as_numpy_does(shared_data: Path) -> None:
    """`_fastpath.tally`: a batch's wire bytes and malformed / fragment / unsupported-link counts."""
    ndpi = sorted((shared_data / "captures/ndpi/cfgs/default/pcap").glob("*.pcap*"))[:40]  # link types
    for path in (shared_data / VH, *ndpi):
        for batch in CaptureFile(path):
            recs = batch.recs
            status = np.bincount(recs["status"], minlength=4)
            assert _fastpath.tally(recs) == (int(recs["wirelen"].sum(dtype=np.int64)), *map(int, status[1:4]))
