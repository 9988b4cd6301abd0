"""Build the C fast path and compile the analysis path with mypyc; the rest is in pyproject.toml.

The modules every packet or observation passes through (decoding, dissectors, identification, detection)
are plain, type-annotated Python compiled with mypyc, as mypy and black are: one implementation, whose
annotations become C types (attribute access of its classes, calls between its functions and integer
arithmetic need no Python object protocol). It runs about 1.2x faster than the same modules compiled
by Cython (bench/RESULTS.md). mypyc enforces the annotations at run time (a wrong one is a TypeError, not
a silent slow path) and refuses code that does not type-check: `mypy` must pass on these modules.
`MEDSENTRY_PURE_PYTHON=1` (or no mypy) installs them uncompiled, e.g. to profile them with py-spy. An
editable install compiles into src/: after changing one of these modules, `python setup.py build_ext
--inplace` recompiles (the test suite refuses to run on a stale build, the CLI warns).
"""

import os
from glob import glob
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

FASTPATH = Extension(
    "medsentry.capture._fastpath",
    ["src/medsentry/capture/_fastpath.c"],
    extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

# The analysis path: these run per packet, message or observation. Package __init__ files are only
# registries, except the one defining Observation and the protocols' (which picks a module for every
# TCP connection and unclaimed UDP flow). Not compiled: the orchestration of a run (analysis.py)
# and live capture's loop, which run once a batch and whose tests replace their functions.
COMPILED = [
    "src/medsentry/pipeline.py",
    "src/medsentry/privacy.py",
    "src/medsentry/observe/__init__.py",
    "src/medsentry/protocols/__init__.py",
    *(
        path
        for package in ("capture", "decode", "protocols", "identify", "detect")
        for path in sorted(glob(f"src/medsentry/{package}/*.py"))
        if not path.endswith(("__init__.py", "capture/live.py"))
    ),
]


def compiled() -> list[Extension]:
    if os.environ.get("MEDSENTRY_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    # Imports outside these modules are not followed: what numpy's annotations say does not decide what is
    # compiled, so a build with numpy installed and an isolated one agree.
    options = ["--ignore-missing-imports", "--follow-imports=skip"]
    return mypycify([*options, *COMPILED], opt_level="3", group_name="medsentry")


class BuildExt(build_ext):
    def run(self) -> None:
        super().run()
        # mypyc rewrites, and setuptools relinks, only what changed: after an edit that leaves the C as it
        # was (a comment, a docstring) the libraries would stay older than their sources, and the stale-build
        # check (medsentry.stale_builds) would ask for a rebuild that never comes.
        for ext in self.extensions:
            built = Path(self.get_ext_fullpath(ext.name))
            if built.exists():
                built.touch()


setup(
    ext_modules=[FASTPATH, *compiled()],
    cmdclass={"build_ext": BuildExt},
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
)
