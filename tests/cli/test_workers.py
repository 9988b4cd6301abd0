"""`--workers N`: shards stream observations back; the union is what one process sees."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from medsentry import analysis
from medsentry.observe import Observation
from medsentry.pipeline import analyze_files


@pytest.fixture(scope="module")
def capture(shared_data: Path) -> Path:
    p = shared_data / "captures/virtual-hospital/general-hospital-normal-60s.pcap"
    if not p.exists():
        pytest.skip("shared capture absent")
    return p


def test_sharded_run_streams_every_observation_once(capture: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one: list[Observation] = []
    stats_one = analyze_files([capture], one.append)
    monkeypatch.setattr(analysis, "CHUNK", 7)  # many chunks, and a final partial one
    many: list[Observation] = []
    stats = analysis._run_sharded([capture], 2, many.append, lambda n: None, 1)

    def key(o: Observation) -> tuple[object, ...]:
        return (o.ts, o.kind, o.src_ip, o.dst_ip, o.sport, o.dport, repr(sorted(o.fields.items())))

    # ip.ttl: each shard reports a client IP's first packet of its own flows; one per IP is kept
    ttl = [o for o in many if o.kind == "ip.ttl"]
    assert len(ttl) == len({o.src_ip for o in ttl}) == len({o.src_ip for o in one if o.kind == "ip.ttl"})
    rest = Counter(key(o) for o in many if o.kind != "ip.ttl")
    assert rest == Counter(key(o) for o in one if o.kind != "ip.ttl")
    assert stats.observations == len(many) == stats_one.observations
    assert stats.packets == stats_one.packets and stats.flows == stats_one.flows


def test_worker_failure_is_reported(tmp_path: Path) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(analysis, "analyze_files", boom)
        with pytest.raises(RuntimeError, match="boom"):
            analysis._run_sharded([tmp_path / "x.pcap"], 2, lambda o: None, lambda n: None, 1)
