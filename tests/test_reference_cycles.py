"""The analysis path makes no reference cycles: what a connection's parser or a flow leaves behind is freed
by reference counting as soon as it ends. The run raises the collector's threshold to a million
allocations (`pipeline.GC_THRESHOLD`), so cyclic garbage would pile up until then: an HTTP parser whose
readers held its own bound method left five objects a connection for the collector (9,270 on the bench
capture) before they were given their own small object."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from medsentry import protocols
from medsentry.identify.inventory import Identifier
from medsentry.observe import Observation
from medsentry.pipeline import analyze_files

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hospital-ward.pcap"
OURS = ("medsentry.protocols", "medsentry.decode", "medsentry.identify", "medsentry.observe",
        "medsentry.pipeline", "medsentry.detect")  # fmt: skip


@contextmanager
def _garbage() -> Iterator[list[object]]:
    """Cyclic garbage made inside the block (the collector kept out of it, then run once)."""
    found: list[object] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _ours(objects: list[object]) -> list[str]:
    """Our types among `objects`, but the read-ahead thread's closures and generator: one cycle a run."""
    names = {f"{type(o).__module__}.{type(o).__qualname__}" for o in objects}
    return sorted(n for n in names
                  if n.startswith(OURS) and "read_ahead" not in n and "_read_captures" not in n)  # fmt: skip


def test_stream_parsers_leave_no_cycles() -> None:
    request = b"GET /fhir/Patient HTTP/1.1\r\nHost: ehr\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    parsers = [m for m in protocols.MODULES if hasattr(m, "StreamParser")]
    assert any(m.NAME == "http" for m in parsers)
    with _garbage() as garbage:
        for module in parsers:
            parser = module.StreamParser()
            for data, from_client in ((request, True), (response, False)):
                with suppress(Exception):  # not this protocol's bytes: only the cycles matter here
                    parser.feed(data, from_client)
            del parser
    assert _ours(garbage) == []
    assert len(garbage) == 0


def test_analysing_a_capture_leaves_no_cycles() -> None:
    ident = Identifier()
    http: list[str] = []

    def sink(o: Observation) -> None:
        ident.add(o)
        if o.protocol == "http":
            http.append(o.kind)

    with _garbage() as garbage:
        stats = analyze_files([EXAMPLE], sink)
        ident.devices()
    assert stats.observations > 1000 and http  # many connections, some of them HTTP
    assert _ours(garbage) == []
