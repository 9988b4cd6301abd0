from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside the repository")
    return SHARED_DATA


def pytest_configure(config: pytest.Config) -> None:
    from medsentry import STALE_HINT, stale_builds

    if "MEDSENTRY_CACHE" not in os.environ:  # parsed YAML is remembered (yamlload): the suite's own cache
        cache = tempfile.mkdtemp(prefix="medsentry-cache-")
        os.environ["MEDSENTRY_CACHE"] = cache
        atexit.register(shutil.rmtree, cache, True)

    if stale := stale_builds():
        pytest.exit(f"{', '.join(stale)}: {STALE_HINT}", 4)
