"""Build the C fast path and compile the analysis path with Cython; the rest is in pyproject.toml.

The modules every packet or observation passes through (decoding, dissectors, identification, detection)
are plain Python compiled as they are, as pydantic 1 and aiohttp do: the code and its tracebacks stay
Python's, and it runs about 1.2x faster (bench/RESULTS.md). `MEDSENTRY_PURE_PYTHON=1` (or no Cython)
installs them uncompiled, e.g. to profile them with py-spy. An editable install compiles into src/: after
changing one of these modules, `python setup.py build_ext --inplace` recompiles what changed (the test
suite refuses to run on a stale build, the CLI warns).
"""

import os
from glob import glob

from setuptools import Extension, setup

FASTPATH = Extension(
    "medsentry.capture._fastpath",
    ["src/medsentry/capture/_fastpath.c"],
    extra_compile_args=["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

# The analysis path: these run per packet, message or observation. Package __init__ files are only
# registries, except the one defining Observation.
COMPILED = [
    "src/medsentry/pipeline.py",
    "src/medsentry/analysis.py",
    "src/medsentry/privacy.py",
    "src/medsentry/observe/__init__.py",
    *(
        path
        for package in ("capture", "decode", "protocols", "identify", "detect")
        for path in sorted(glob(f"src/medsentry/{package}/*.py"))
        if not path.endswith("__init__.py")
    ),
]


def compiled() -> list[Extension]:
    if os.environ.get("MEDSENTRY_PURE_PYTHON"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        return []
    extensions = cythonize(
        COMPILED,
        build_dir="build/cython",  # the generated C stays out of src/
        nthreads=os.cpu_count() or 1,
        quiet=True,
        compiler_directives={
            "language_level": 3,
            # Annotations stay hints: typed as C values they would change behaviour (a `float` would
            # turn an int into a double, an `int` refuse a numpy integer).
            "annotation_typing": False,
        },
    )
    for extension in extensions:
        extension.optional = True  # a module that does not compile stays Python: slower, not broken
    return extensions


setup(ext_modules=[FASTPATH, *compiled()], options={"build_ext": {"parallel": os.cpu_count() or 1}})
