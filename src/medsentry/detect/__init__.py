"""Attack and PHI-exposure detection on the observation stream (see engine.py and data/detect.yaml)."""

from medsentry.detect.config import Config, ConfigError, accept_entry, load_config
from medsentry.detect.engine import RULES, Alert, Detector, to_json_doc

__all__ = [
    "RULES",
    "Alert",
    "Config",
    "ConfigError",
    "Detector",
    "accept_entry",
    "load_config",
    "to_json_doc",
]
