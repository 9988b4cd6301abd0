"""YAML loading for the packaged data files and rule files."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it (the pure-Python one took ~0.2 s of every run for the
# packaged data); both build the same objects through the safe constructor.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """`yaml.safe_load`, faster."""
    return yaml.load(text, Loader=_LOADER)
