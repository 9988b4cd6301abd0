"""Rendering devices, runs and alerts: rich tables for people, JSON and CSV for machines."""

from __future__ import annotations

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
