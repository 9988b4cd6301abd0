"""Reading ahead in a thread (`pipeline.read_ahead`) changes when batches are read, never what the
analysis gets: the same events in the same order, errors where they were, and no thread left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medsentry.capture import records
from medsentry.pipeline import READ_AHEAD, read_ahead, read_captures
from tests.decode.test_flows import tcp, udp, write_pcap


def _events(paths: list[Path], ahead: int) -> list[tuple[Any, ...]]:
    """Each event with its batch reduced to what it holds: the records and the frames' bytes."""
    out: list[tuple[Any, ...]] = []
    for event in read_captures(paths, None, ahead):
        if event[0] == "batch":
            batch = event[1]
            out.append(("batch", batch.recs.tobytes(), bytes(batch.buf), event[2]))
        else:
            out.append(event)
    return out


def _readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "medsentry-read-ahead"]


def test_the_same_events_in_the_same_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "BATCH", 7)  # many batches per file
    client, server = ("10.1.0.5", 40000), ("10.1.0.9", 104)
    frames = [tcp(client, server, 0x18, 1000 + 10 * i, b"x" * 10) for i in range(60)]
    good = write_pcap(tmp_path / "a.pcap", frames)
    broken = tmp_path / "b.pcap"
    broken.write_bytes(good.read_bytes()[:-5])  # its last record cut short
    other = write_pcap(tmp_path / "c.pcap", [udp(client, ("10.1.0.1", 53), b"q" * 30)] * 20)
    paths = [good, broken, other]
    plain = _events(paths, 0)
    assert [e[0] for e in plain].count("batch") > 20 and any(e[0] == "error" for e in plain)
    assert _events(paths, READ_AHEAD) == plain
    assert not _readers()


def test_an_exception_while_reading_reaches_the_caller() -> None:
    def failing() -> Iterator[tuple[Any, ...]]:
        yield ("file", "x")
        raise RuntimeError("disk gone")

    got = read_ahead(failing(), 2)
    assert next(got) == ("file", "x")
    with pytest.raises(RuntimeError, match="disk gone"):
        next(got)
    assert not _readers()


def test_a_caller_that_stops_early_stops_the_thread() -> None:
    made: list[int] = []

    def endless() -> Iterator[tuple[Any, ...]]:
        n = 0
        while True:
            made.append(n)
            yield ("batch", n)
            n += 1

    got = read_ahead(endless(), 2)
    assert [next(got) for _ in range(3)] == [("batch", 0), ("batch", 1), ("batch", 2)]
    got.close()
    assert not _readers()
    assert len(made) <= 3 + 2 + 1  # no further than the hand-off's depth ahead


def test_an_analysis_that_fails_leaves_no_reading_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:  # fmt: skip
    from medsentry import pipeline

    monkeypatch.setattr(records, "BATCH", 3)
    client = ("10.1.0.5", 40000)
    query = bytes.fromhex("abcd01000001000000000000") + b"\x04pacs\x08hospital\x00\x00\x01\x00\x01"
    capture = write_pcap(tmp_path / "dns.pcap", [udp(client, ("10.1.0.1", 53), query)] * 200)

    def fail(_: Any) -> None:
        raise RuntimeError("sink broke")

    monkeypatch.setattr(pipeline, "READ_AHEAD", 2)
    with pytest.raises(RuntimeError, match="sink broke") as caught:
        pipeline.analyze_files([capture], fail)
    assert caught.value is not None  # the traceback is still held here
    assert not _readers()
