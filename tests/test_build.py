"""The build: the analysis path compiled (setup.py), and a stale compiled module noticed."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

import medsentry


@pytest.mark.skipif(bool(os.environ.get("MEDSENTRY_PURE_PYTHON")), reason="installed uncompiled on purpose")
@pytest.mark.parametrize(
    "module", ["medsentry.pipeline", "medsentry.decode.flows", "medsentry.protocols.dicom",
               "medsentry.identify.inventory", "medsentry.detect.engine", "medsentry.observe"],
)  # fmt: skip
def test_the_analysis_path_runs_compiled(module: str) -> None:
    """A module that fails to compile is installed as Python (`optional`): the figures in the README would
    no longer hold, so the suite says so."""
    assert Path(importlib.import_module(module).__file__ or "").suffix == ".so"


SO = "mqtt.cpython-311-x86_64-linux-gnu.so"


def _checkout(tmp: Path) -> Path:
    """A source checkout's layout: setup.py beside src/medsentry, one compiled module and its source."""
    (tmp / "setup.py").write_text("")
    package = tmp / "src" / "medsentry"
    (package / "protocols").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "protocols" / "mqtt.py").write_text("")
    (package / "protocols" / SO).write_bytes(b"")
    return package


def test_a_module_changed_after_it_was_compiled_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:  # fmt: skip
    package = _checkout(tmp_path)
    monkeypatch.setattr(medsentry, "__file__", str(package / "__init__.py"))
    source, built = package / "protocols" / "mqtt.py", package / "protocols" / SO
    os.utime(source, (1_000, 1_000))
    os.utime(built, (2_000, 2_000))
    assert medsentry.stale_builds() == []
    os.utime(source, (3_000, 3_000))
    assert medsentry.stale_builds() == ["medsentry/protocols/mqtt.py"]


def test_an_installed_package_is_never_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = _checkout(tmp_path)
    (tmp_path / "setup.py").unlink()  # site-packages: no setup.py two levels up
    monkeypatch.setattr(medsentry, "__file__", str(package / "__init__.py"))
    os.utime(package / "protocols" / SO, (1_000, 1_000))
    os.utime(package / "protocols" / "mqtt.py", (3_000, 3_000))  # newer: would be stale in a checkout
    assert medsentry.stale_builds() == []


def test_a_module_is_as_new_as_the_library_mypyc_compiled_it_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = _checkout(tmp_path)
    monkeypatch.setattr(medsentry, "__file__", str(package / "__init__.py"))
    source, shim = package / "protocols" / "mqtt.py", package / "protocols" / SO
    library = package.parent / SO.replace("mqtt", "medsentry__mypyc")
    library.write_bytes(b"")
    os.utime(shim, (1_000, 1_000))  # mypyc leaves a module's own .so alone when only its code changed
    os.utime(source, (2_000, 2_000))
    os.utime(library, (3_000, 3_000))
    assert medsentry.stale_builds() == []
    os.utime(source, (4_000, 4_000))
    assert medsentry.stale_builds() == ["medsentry/protocols/mqtt.py"]
