"""The whole pipeline over every capture in ../shared/data/captures: nothing may take it down.

Each capture (pcap, pcapng, cap; any depth) runs through `medsentry.pipeline.analyze_files` on its own:
no exception may escape, and every malformed payload must be charged to the dissector that rejected it
(`Stats.malformed_by_protocol` keyed by module name), so an analyst sees which protocol misbehaved.
The suites hold fuzzed, truncated and deliberately broken captures, which is the point.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medsentry import protocols
from medsentry.pipeline import Stats, analyze_files

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "captures"
SUFFIXES = (".pcap", ".pcapng", ".cap")
DISSECTORS = {m.NAME for m in protocols.MODULES}


def _files() -> list[Path]:
    if not CAPTURES.is_dir():
        return []
    return sorted(p for p in CAPTURES.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


FILES = _files()


def _replay(path: Path) -> Stats:
    seen: list[str] = []
    stats = analyze_files([path], lambda o: seen.append(o.protocol))
    assert stats.observations == len(seen)
    return stats


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CAPTURES)) for p in FILES])
def test_replay_capture(shared_data: Path, path: Path) -> None:
    stats = _replay(path)
    assert stats.packets > 0 or stats.errors, "a capture with neither packets nor a read error"
    unknown = set(stats.malformed_by_protocol) - DISSECTORS
    assert not unknown, f"malformed payloads charged to no dissector: {unknown}"
    d = stats.to_dict()
    assert d["malformed"] == stats.malformed + sum(stats.malformed_by_protocol.values())


def test_all_shared_captures_are_replayed(shared_data: Path) -> None:
    assert len(FILES) >= 600  # nDPI's and Suricata's suites, IoT-23, the virtual hospital
    assert any("virtual-hospital" in str(p) for p in FILES)
