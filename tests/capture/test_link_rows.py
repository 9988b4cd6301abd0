"""`_fastpath.link_rows`: the rows link-layer dissectors read, as numpy's masks would pick them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.capture import _fastpath
from medsentry.capture.files import CaptureFile
from medsentry.capture.records import PACKET_DTYPE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/hospital-ward.pcap"


def _by_numpy(recs: np.ndarray, types: list[int]) -> list[int]:
    rows = np.flatnonzero((recs["ipver"] == 0) & (recs["status"] == 0))
    return rows[np.isin(recs["ethertype"][rows], types)].tolist()


def _types(values: list[int]) -> bytes:
    return np.array(values, np.uint16).tobytes()


def test_the_example_s_link_layer_rows() -> None:
    batches = list(CaptureFile(EXAMPLE))
    found = 0
    for types in ([0x0806], [0x0806, 0x88CC, 0x2000], [], [0x0800]):
        for batch in batches:
            rows = _fastpath.link_rows(batch.recs, _types(types))
            assert rows == _by_numpy(batch.recs, types)
            found += len(rows)
    assert found > 0


# (ipver, status, ethertype)
_RECORD = st.tuples(st.sampled_from([0, 4, 6]), st.integers(0, 3), st.integers(0, 0xFFFF))


@settings(max_examples=200, deadline=None)
@given(recs=st.lists(_RECORD, max_size=50), types=st.lists(st.integers(0, 0xFFFF), max_size=5))
def test_any_records(recs: list[tuple[int, int, int]], types: list[int]) -> None:
    arr = np.zeros(len(recs), PACKET_DTYPE)
    for i, (ipver, status, ethertype) in enumerate(recs):
        arr[i]["ipver"], arr[i]["status"], arr[i]["ethertype"] = ipver, status, ethertype
    assert _fastpath.link_rows(arr, _types(types)) == _by_numpy(arr, types)


def test_wrong_buffers_are_refused() -> None:
    with pytest.raises(ValueError, match="link_rows"):
        _fastpath.link_rows(b"\0" * 7, _types([1]))
    with pytest.raises(ValueError, match="link_rows"):
        _fastpath.link_rows(np.zeros(1, PACKET_DTYPE), b"\0")
