"""medsentry: passive discovery, vulnerability intelligence and threat monitoring
for medical device networks."""

import os
from pathlib import Path

# numpy starts a BLAS thread pool that spins for a while after import (60 ms of CPU in every process, a
# worker's too); medsentry does no linear algebra. Set before numpy is imported; a user's setting stands.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
STALE_HINT = (
    "changed since ./setup.sh compiled them; run ./setup.sh again, or just recompile what changed: "
    ".venv/bin/python setup.py -q build_ext --inplace"
)


def stale_builds() -> list[str]:
    """Modules of a source checkout changed after ./setup.sh compiled them (setup.py): Python imports
    the compiled, older code until setup runs again. Empty for an installed package."""
    package = Path(__file__).parent
    if not (package.parent.parent / "setup.py").is_file():
        return []
    # mypyc compiles every module into one library beside the package; a module's own .so only loads it
    # and is rewritten only when it changes itself.
    library = max((p.stat().st_mtime for p in package.parent.glob("medsentry__mypyc.*.so")), default=0.0)
    stale = []
    for built in package.rglob("*.so"):
        stem = built.name.split(".", 1)[0]
        for source in (built.with_name(stem + ".py"), built.with_name(stem + ".c")):
            at = built.stat().st_mtime if source.suffix == ".c" else max(built.stat().st_mtime, library)
            if source.is_file() and source.stat().st_mtime > at:
                stale.append(str(source.relative_to(package.parent)))
    return sorted(stale)
