"""Rendering devices, runs and alerts: rich tables for people, JSON and CSV for machines.

The names below are imported from their modules on first use (PEP 562): the tables need rich, ~30 ms
to import, which a run writing only JSON (`analyze -q --json`) would pay at every start for nothing."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers see; at run time `__getattr__` below
    from medsentry.report.alerts import (
        alert_detail,
        alert_dicts,
        alert_table,
        fitting_alert_table,
        most_severe,
        render_alerts,
        write_alerts_json,
    )
    from medsentry.report.console import (
        device_detail,
        device_table,
        feed_table,
        most_relevant,
        run_summary,
        runs_table,
    )
    from medsentry.report.export import evidence_summary, render_csv, render_json
    from medsentry.report.serialize import device_from_dict, device_to_dict, stats_to_dict

_HOMES = {
    "medsentry.report.alerts": (
        "alert_detail",
        "alert_dicts",
        "alert_table",
        "fitting_alert_table",
        "most_severe",
        "render_alerts",
        "write_alerts_json",
    ),
    "medsentry.report.console": (
        "device_detail",
        "device_table",
        "feed_table",
        "most_relevant",
        "run_summary",
        "runs_table",
    ),
    "medsentry.report.export": ("evidence_summary", "render_csv", "render_json"),
    "medsentry.report.serialize": ("device_from_dict", "device_to_dict", "stats_to_dict"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "alert_detail",
    "alert_dicts",
    "alert_table",
    "device_detail",
    "device_from_dict",
    "device_table",
    "device_to_dict",
    "evidence_summary",
    "feed_table",
    "fitting_alert_table",
    "most_relevant",
    "most_severe",
    "render_alerts",
    "render_csv",
    "render_json",
    "run_summary",
    "runs_table",
    "stats_to_dict",
    "write_alerts_json",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary one
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
