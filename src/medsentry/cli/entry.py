"""The `medsentry` command (the console script and `python -m medsentry`): its modules imported with the
cyclic collector held off. Importing them (numpy, click, the analysis path) makes some 50,000 containers
that live as long as the process; at Python's threshold the collector walked them some 80 times on the
way, 35 ms of `analyze`. Frozen once imported, later collections skip them too."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def collector_held() -> Iterator[None]:
    """No collection inside the block; what was made by its end (modules imported) frozen."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def main(*args: Any, **options: Any) -> None:
    with collector_held():
        from medsentry.cli.main import main as command
    command(*args, **options)
