"""`--workers N`: each shard identifies its own flows and the parent merges; detection sees every observation
it reads. The result is what one process gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsentry import analysis
from medsentry.detect import Detector
from medsentry.report.serialize import device_to_dict


@pytest.fixture(scope="module", params=["general-hospital-60s.pcap", "general-hospital-normal-60s.pcap"])
def capture(shared_data: Path, request: pytest.FixtureRequest) -> Path:
    p = shared_data / "captures/virtual-hospital" / request.param
    if not p.exists():
        pytest.skip("shared capture absent")
    return p


def _run(capture: Path, workers: int) -> tuple[analysis.Result, Detector]:
    det = Detector()
    return analysis.run_inputs([capture], workers=workers, detector=det), det


@pytest.mark.parametrize("workers", [2, 3])
def test_sharded_run_gives_the_inventory_and_alerts_of_one_process(
    capture: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, det_one = _run(capture, 1)
    monkeypatch.setattr(analysis, "CHUNK", 7)  # many chunks, and a final partial one
    many, det_many = _run(capture, workers)
    assert len(one.devices) > 10
    # evidence, first times, counts, identities and their order included
    assert [device_to_dict(d) for d in many.devices] == [device_to_dict(d) for d in one.devices]
    for key in ("packets", "flows", "observations", "malformed"):
        assert many.stats_dict[key] == one.stats_dict[key]
    # observations of kinds no detector reads stay in the workers, but are counted and span the same time
    assert det_many.summary()["observations"] == det_one.summary()["observations"]
    assert (det_many.first_ts, det_many.last_ts) == (det_one.first_ts, det_one.last_ts)
    assert det_many.learning_end() == det_one.learning_end()
    # detection saw the observations it reads in the order one process gives them
    assert [a.to_dict() for a in many.alerts] == [a.to_dict() for a in one.alerts]
    assert len(one.alerts) > 5


@pytest.mark.parametrize("form", ["pcap", "pcapng"])
def test_several_readers_give_the_inventory_and_alerts_of_one_process(
    capture: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, form: str
) -> None:
    """Three reader processes, each guessing where its 256 KB segments start, claiming hosts for the
    workers in shared tables: one process's devices, alerts and counts."""
    from medsentry.capture import files
    from tests.pcaputil import pcapng_of

    if form == "pcapng":
        capture, pcap = tmp_path / "capture.pcapng", capture
        capture.write_bytes(pcapng_of(pcap.read_bytes()))
    monkeypatch.setattr(files, "SEGMENT", 256 << 10)  # over a hundred segments, read by one process too
    one, _ = _run(capture, 1)
    monkeypatch.setattr(analysis, "READER_SHARE", 1)
    many, _ = _run(capture, 3)
    assert [device_to_dict(d) for d in many.devices] == [device_to_dict(d) for d in one.devices]
    assert [a.to_dict() for a in many.alerts] == [a.to_dict() for a in one.alerts]
    for key in ("packets", "flows", "observations", "malformed", "errors"):
        assert many.stats_dict[key] == one.stats_dict[key]


@pytest.mark.parametrize("reader_share", [4, 1])  # one reader; a reader per worker
def test_small_batches_and_queues_never_stall(
    capture: Path, monkeypatch: pytest.MonkeyPatch, reader_share: int
) -> None:
    """Every shard waits on the readers, each reader on the slowest shard's queue (and on the reader before
    it to say where its segment starts), the parent's merge on whichever shard has the next observation:
    with a batch of 64 packets and one item in flight per queue they would wait for each other for ever
    unless every shard marks each batch it finished and shards take segments in order."""
    import signal

    from medsentry.capture import files, records

    one, _ = _run(capture, 1)

    def stalled(_signum: int, _frame: object) -> None:
        raise TimeoutError("the sharded run stalled")

    monkeypatch.setattr(records, "BATCH", 64)
    monkeypatch.setattr(files, "SEGMENT", 1 << 20)
    for name, value in (("MAX_DEALT", 1), ("MAX_CHUNKS", 1), ("CHUNK", 7), ("READER_SHARE", reader_share)):
        monkeypatch.setattr(analysis, name, value)
    previous = signal.signal(signal.SIGALRM, stalled)
    signal.alarm(120)
    try:
        many, _ = _run(capture, 3)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [device_to_dict(d) for d in many.devices] == [device_to_dict(d) for d in one.devices]
    assert [a.to_dict() for a in many.alerts] == [a.to_dict() for a in one.alerts]


@pytest.mark.parametrize("part", ["analyze_shares", "SegmentReader"])  # a worker's, the reader's
def test_a_failing_process_is_reported(tmp_path: Path, part: str) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analysis, part, boom)
        with pytest.raises(RuntimeError, match="boom"):
            ident = analysis._identifier(None)
            analysis._run_sharded([tmp_path / "x.pcap"], 2, ident, None, None, lambda n: None, 1)


@pytest.mark.parametrize("reader_share", [4, 1])  # one reader; a reader per worker
def test_sharded_run_reads_broken_and_compressed_captures_as_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader_share: int
) -> None:
    """Files, read errors (with their offsets) and what came before a break are reported as one process
    reports them."""
    import gzip

    from medsentry.capture import files

    monkeypatch.setattr(files, "SEGMENT", 64 << 10)
    monkeypatch.setattr(analysis, "READER_SHARE", reader_share)
    example = Path(__file__).resolve().parents[2] / "examples/hospital-ward.pcap"
    (tmp_path / "a.pcap.gz").write_bytes(gzip.compress(example.read_bytes()))
    (tmp_path / "b.pcap").write_bytes(example.read_bytes()[:300_001])
    one, _ = _run(tmp_path, 1)
    many, _ = _run(tmp_path, 2)
    assert len(one.stats_dict["errors"]) == 1 and "offset" in one.stats_dict["errors"][0]
    for key in ("files", "errors", "packets", "flows", "observations"):
        assert many.stats_dict[key] == one.stats_dict[key]
    assert [device_to_dict(d) for d in many.devices] == [device_to_dict(d) for d in one.devices]


def test_sharded_progress_adds_up_to_the_capture_size(shared_data: Path) -> None:
    capture = shared_data / "captures/virtual-hospital/general-hospital-normal-60s.pcap"
    if not capture.exists():
        pytest.skip("shared capture absent")
    steps: list[int] = []
    total = capture.stat().st_size
    analysis._run_sharded([capture], 2, analysis._identifier(None), None, None, steps.append, total)
    assert steps and all(s >= 0 for s in steps)
    assert sum(steps) == total


def test_sharded_run_with_a_learned_model_gives_the_same_labels(shared_data: Path, tmp_path: Path) -> None:
    """Each shard keeps learned-fingerprint profiles of its own traffic; merged, they classify as one
    process's do."""
    import json
    import shutil

    from medsentry.identify.learn import learn_directory

    root = shared_data / "devices" / "iot-sentinel"
    if not root.is_dir():
        pytest.skip("IoT Sentinel captures absent")
    held_out = []
    for label in ("TP-LinkPlugHS110", "D-LinkCam", "HueBridge"):
        caps = sorted((root / label).glob("Setup-A-*.pcap"))
        (tmp_path / "teach" / label).mkdir(parents=True)
        for cap in caps[:-1]:
            shutil.copy(cap, tmp_path / "teach" / label / cap.name)
        held_out.append(caps[-1])
    model = tmp_path / "model.json"
    model.write_text(json.dumps(learn_directory(tmp_path / "teach")))

    one = analysis.run_inputs(held_out, fingerprints=model, workers=1)
    many = analysis.run_inputs(held_out, fingerprints=model, workers=2)
    assert {d.label for d in one.devices} >= {"TP-LinkPlugHS110", "D-LinkCam", "HueBridge"}
    assert [device_to_dict(d) for d in many.devices] == [device_to_dict(d) for d in one.devices]

