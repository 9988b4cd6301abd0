"""Attack and PHI-exposure detection on the observation stream (see engine.py, docs/detection.md and
data/detect.yaml)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from medsentry.detect.config import Config, ConfigError, accept_entry, load_config
from medsentry.detect.engine import RULES, Alert, Detector, to_json_doc

__all__ = [
    "RULES",
    "Alert",
    "Config",
    "ConfigError",
    "Detector",
    "accept_entry",
    "detect_files",
    "load_config",
    "to_json_doc",
]


def detect_files(
    paths: Iterable[str | Path], config: Config | None = None, classes: dict[str, str] | None = None
) -> tuple[Detector, list[Alert]]:
    """Captures (files or directories) through the packet pipeline into one Detector: for scripts and
    `medsentry alerts`; `analyze` should instead tee its own observation stream into `Detector.add`."""
    from medsentry.pipeline import analyze_files

    det = Detector(config)
    analyze_files([Path(p) for p in paths], det.add)
    return det, det.alerts(classes)
