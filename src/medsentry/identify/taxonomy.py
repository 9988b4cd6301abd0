"""The device classes (data/taxonomy.yaml) with their SSVC safety and mission impact defaults."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Final

from medsentry.yamlload import safe_load

UNKNOWN: Final = "unknown"


@dataclass(frozen=True, slots=True)
class DeviceClass:
    name: str
    description: str
    medical: bool
    safety_impact: str  # SSVC Safety Impact: Negligible | Marginal | Critical | Catastrophic
    # SSVC Mission Impact: Degraded | MEF Support Crippled | MEF Failure | Mission Failure
    mission_impact: str


@cache
def classes() -> dict[str, DeviceClass]:
    doc = safe_load((files("medsentry") / "data" / "taxonomy.yaml").read_text("utf-8"))
    return {
        name: DeviceClass(name, c["description"], c["medical"], c["safety_impact"], c["mission_impact"])
        for name, c in doc["classes"].items()
    }
