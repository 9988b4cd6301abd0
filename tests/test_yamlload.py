"""YAML texts parse as PyYAML's safe loader parses them, remembered in the cache by their text."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import yaml

from medsentry import yamlload

TEXT = "rules:\n  - {id: a, kind: [dhcp.discover], weight: 0.5, in: [1, 2], when: {x: [null, true]}}\n"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDSENTRY_CACHE", str(tmp_path))
    return tmp_path / "yaml"


def test_a_remembered_text_is_read_back_without_parsing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = yamlload.safe_load(TEXT)
    assert first == yaml.safe_load(TEXT)
    assert len(list(cache.iterdir())) == 1

    def no_parse(text: str) -> object:
        raise AssertionError("parsed again")

    monkeypatch.setattr(yamlload, "_parse", no_parse)
    again = yamlload.safe_load(TEXT)
    assert again == first and again is not first  # a fresh copy: callers may change what they get
    with pytest.raises(AssertionError):
        yamlload.safe_load(TEXT + "# another text\n")


def test_damaged_entries_unwritable_caches_and_non_plain_results_just_parse(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    yamlload.safe_load(TEXT)
    (entry,) = cache.iterdir()
    entry.write_bytes(b"\xff not marshal")
    assert yamlload.safe_load(TEXT) == yaml.safe_load(TEXT)  # and written anew
    assert yamlload.safe_load(TEXT) == yaml.safe_load(TEXT)

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("MEDSENTRY_CACHE", str(blocked))  # the cache directory cannot be made
    assert yamlload.safe_load(TEXT) == yaml.safe_load(TEXT)

    monkeypatch.setenv("MEDSENTRY_CACHE", str(tmp_path / "dates"))
    assert yamlload.safe_load("when: 2026-12-07\n") == {"when": datetime.date(2026, 12, 7)}
    assert not (tmp_path / "dates" / "yaml").exists() or not list((tmp_path / "dates" / "yaml").iterdir())
    with pytest.raises(yaml.YAMLError):
        yamlload.safe_load("a: [unclosed\n")
