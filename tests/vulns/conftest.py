"""A feed store built once from the shared NVD records, and the medical-device SBOM it is matched with."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from medsentry.vulns.feeds import import_path
from medsentry.vulns.sbom import Sbom, read_sbom
from medsentry.vulns.store import VulnStore


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, Sbom]:
    sbom_path = shared_data / "sbom" / "medical-device-narrow.cdx.json"
    if not sbom_path.is_file():
        pytest.skip("medical-device SBOM not in ../shared/data")
    path = tmp_path_factory.mktemp("narrow") / "vulns.db"
    with VulnStore(path) as store:
        import_path(store, shared_data / "vulns" / "nvd")
    return path, read_sbom(sbom_path)


@pytest.fixture()
def store(built: tuple[Path, Sbom], tmp_path: Path) -> Iterator[VulnStore]:
    """A private copy of the built store (tests write decisions and modified records into it)."""
    path = tmp_path / "vulns.db"
    shutil.copy(built[0], path)
    with VulnStore(path) as s:
        yield s
