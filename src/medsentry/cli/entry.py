"""The `medsentry` command (the console script and `python -m medsentry`), and how its commands keep the
cyclic collector out of their way. Importing the command's modules (numpy, click, the analysis path)
makes some 50,000 containers that live as long as the process: at Python's threshold the collector walked
them some 80 times on the way (35 ms of `analyze`). A run then makes hundreds of thousands more that live
until it ends, without cycles (tests/test_reference_cycles.py)."""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Command = TypeVar("Command", bound=Callable[..., Any])


@contextmanager
def collector_held() -> Iterator[None]:
    """No collection inside the block; what was made by its end (modules imported) frozen: later
    collections skip it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was:
            gc.enable()


def one_collection_regime(command: Command) -> Command:
    """`command` with the analysis's raised threshold (`pipeline.fewer_collections`) from start to end,
    and what it leaves frozen: back at Python's threshold after the analysis, the next allocation walked
    all the analysis left (15-36 ms after the bench capture), the store's writing walked the devices'
    evidence (0.32 -> 0.2 s on big-1of4 when it got its own raised threshold), and the interpreter's exit
    would walk it all again only to end the process. Frozen objects are still freed by reference counting."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with collector_held():
            from medsentry.pipeline import fewer_collections
        with fewer_collections():
            try:
                return command(*args, **kwargs)
            finally:
                gc.freeze()  # before the threshold is back at Python's

    return run  # type: ignore[return-value]


def main(*args: Any, **options: Any) -> None:
    with collector_held():
        from medsentry.cli.main import main as command
    command(*args, **options)
