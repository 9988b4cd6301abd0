"""YAML loading for the packaged data files and rule files.

What a text parses to is remembered in a cache directory (`MEDSENTRY_CACHE`, else
`$XDG_CACHE_HOME/medsentry`, else `~/.cache/medsentry`), keyed by a hash of the text: importing PyYAML and
parsing the packaged data (fingerprint rules, vendors, taxonomy, detection defaults) took ≈ 20 ms of every
run, reading the remembered results ≈ 1 ms. Only plain data is remembered (marshal: no code runs when it
is read back); a text whose result marshal cannot hold (a YAML timestamp), a cache that cannot be written
or a damaged entry just means parsing again.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from pathlib import Path
from typing import Any

_FORMAT = f"1-{marshal.version}"  # in every key: a new layout or marshal version misses the old entries


def safe_load(text: str) -> Any:
    """`yaml.safe_load(text)`, remembered."""
    data = text.encode("utf-8", "surrogatepass")
    entry = _cache_dir() / f"{hashlib.blake2b(data, digest_size=16, person=_FORMAT.encode()).hexdigest()}"
    try:
        return marshal.loads(entry.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        pass
    doc = _parse(text)
    try:
        blob = marshal.dumps(doc)
    except ValueError:  # not plain data
        return doc
    _remember(entry, blob)
    return doc


def _parse(text: str) -> Any:
    import yaml  # here: a run whose files are all remembered never imports it (≈ 10 ms)

    # libyaml's parser when PyYAML was built with it (the pure-Python one took ~0.2 s of every run for
    # the packaged data); both build the same objects through the safe constructor.
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _cache_dir() -> Path:
    if own := os.environ.get("MEDSENTRY_CACHE"):
        return Path(own) / "yaml"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "medsentry" / "yaml"


def _remember(entry: Path, blob: bytes) -> None:
    try:
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = entry.with_name(f"{entry.name}.{os.getpid()}")
        partial.write_bytes(blob)
        os.replace(partial, entry)  # readers see the whole entry or none
    except OSError:
        pass
