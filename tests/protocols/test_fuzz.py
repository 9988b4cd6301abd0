"""Every dissector, fed random bytes and mutated real payloads, returns or raises `Malformed` only.

The entry points are discovered from the registry (`medsentry.protocols.MODULES`): every public function
of a protocol module whose first parameter takes bytes (parse_*, scan_*, read_*, looks_like) or text
from the wire (str helpers of HTTP), and every module's `StreamParser` fed a random conversation (each
side joined mid-way or not).
`Malformed` is what the pipeline counts per protocol and skips; anything else would stop an analysis.
`looks_like` and `mid_stream` must not raise at all. Each example runs under a wall-clock limit, so a
loop that does not end fails the test instead of hanging it.

Seeds are real payloads: UDP/TCP payloads of the small captures of nDPI's and Suricata's suites (by the
module's well-known ports), link-layer frames (ARP, LLDP, CDP) of the same captures, pynetdicom's DICOM
PDUs and python-hl7's messages in MLLP blocks. Without the shared data, only random bytes are used.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import json
import signal
import struct
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry import protocols
from medsentry.protocols.base import Malformed
from tests import pcaputil

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SEED_CAPTURES = [
    DATA / "captures" / "ndpi" / "cfgs" / "default" / "pcap",
    DATA / "captures" / "suricata-verify",
]
MAX_CAPTURE = 300_000  # bytes: the small captures are plenty and keep corpus building under 2 s
SEEDS_PER_MODULE = 40
TIME_LIMIT = 5.0  # seconds for one example: parsers take microseconds, only a runaway loop gets near

FUZZ = settings(
    max_examples=200,
    deadline=None,  # the wall-clock limit below catches hangs; a cold cache must not flake the test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: a failure in CI reproduces locally
)


# --- entry points -----------------------------------------------------------------------------------


@functools.cache
def _source_parameters(mod: ModuleType) -> dict[str, list[tuple[str, str, bool]]]:
    """Positional parameters (name, annotation, has a default) of each of the module's functions, read
    from its source: a function compiled by mypyc (setup.py) keeps its parameters' names, not their
    annotations."""
    path = Path(mod.__file__ or "")
    tree = ast.parse(path.with_name(path.name.split(".", 1)[0] + ".py").read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            args = node.args.posonlyargs + node.args.args
            first_default = len(args) - len(node.args.defaults)
            out[node.name] = [(a.arg, ast.unparse(a.annotation) if a.annotation else "", i >= first_default)
                              for i, a in enumerate(args)]  # fmt: skip
    return out


def _parameters(mod: ModuleType, name: str) -> list[tuple[str, str, bool]]:
    return _source_parameters(mod).get(name, [])


def entry_points() -> list[tuple[str, Callable[..., Any], str]]:
    """(id, function, "bytes" | "str") of every public function of every protocol module."""
    found = []
    for mod in protocols.MODULES:
        for name, fn in vars(mod).items():
            # not `inspect.isfunction`: a module compiled by mypyc (setup.py) has other function types
            if name.startswith("_") or inspect.isclass(fn) or not callable(fn):
                continue
            if getattr(fn, "__module__", None) != mod.__name__:
                continue
            params = _parameters(mod, fn.__name__)  # an alias names its function
            annotation = params[0][1] if params else ""
            if "bytes" in annotation:
                found.append((f"{mod.NAME}.{name}", fn, "bytes"))
            elif annotation == "str":
                found.append((f"{mod.NAME}.{name}", fn, "str"))
    return found


STREAM_MODULES = [m for m in protocols.MODULES if hasattr(m, "StreamParser")]


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise TimeoutError(f"no result after {seconds} s: the parser does not terminate")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- seeds ------------------------------------------------------------------------------------------

_ETHERTYPES = {0x0806: "arp", 0x88CC: "lldp"}
_CDP_SNAP = b"\xaa\xaa\x03\x00\x00\x0c\x20\x00"


def _captures() -> list[Path]:
    return [
        p
        for root in SEED_CAPTURES
        if root.is_dir()
        for p in sorted(root.rglob("*"))
        if p.suffix in (".pcap", ".pcapng", ".cap") and p.stat().st_size <= MAX_CAPTURE
    ]


def _link_layer(frame: bytes) -> tuple[str, bytes] | None:
    if len(frame) < 14:
        return None
    etype = struct.unpack("!H", frame[12:14])[0]
    if etype in _ETHERTYPES:
        return _ETHERTYPES[etype], frame[14:]
    if etype < 1536 and frame[14:22] == _CDP_SNAP:
        return "cdp", frame[22:]
    return None


@functools.cache
def seeds() -> tuple[dict[str, list[bytes]], dict[str, list[list[tuple[bytes, bool]]]]]:
    """Real datagrams by module name, and real conversation heads (payload, from_client) by module name."""
    datagrams: dict[str, list[bytes]] = defaultdict(list)
    conversations: dict[str, dict[Any, list[tuple[bytes, bool]]]] = defaultdict(dict)
    for path in _captures():
        try:
            for _ts, linktype, frame in pcaputil.frames(path):
                if (
                    linktype == 1
                    and (hit := _link_layer(frame))
                    and len(datagrams[hit[0]]) < SEEDS_PER_MODULE
                ):
                    datagrams[hit[0]].append(hit[1])
            for s in pcaputil.segments(path):
                if not s.payload:
                    continue
                table = protocols.BY_UDP_PORT if s.transport == "udp" else protocols.BY_TCP_PORT
                mod = table.get(s.dport) or table.get(s.sport)
                if mod is None:
                    continue
                if s.transport == "udp" and len(datagrams[mod.NAME]) < SEEDS_PER_MODULE:
                    datagrams[mod.NAME].append(s.payload)
                elif s.transport == "tcp":
                    convs = conversations[mod.NAME]
                    key = frozenset({(s.src, s.sport), (s.dst, s.dport)})
                    if key in convs or len(convs) < SEEDS_PER_MODULE:
                        conv = convs.setdefault(key, [])
                        if len(conv) < 8:
                            conv.append((s.payload, s.dport in table and table[s.dport] is mod))
        except (ValueError, struct.error, IndexError):  # a capture pcaputil cannot walk: take the next
            continue
    _add_medical_samples(datagrams, conversations)
    return dict(datagrams), {name: list(c.values()) for name, c in conversations.items()}


def _add_medical_samples(
    datagrams: dict[str, list[bytes]], conversations: dict[str, dict[Any, list[tuple[bytes, bool]]]]
) -> None:
    dicom = DATA / "protocols" / "dicom-pdus" / "dicom-encoded-vectors.json"
    if dicom.is_file():
        vectors = json.loads(dicom.read_text())["vectors"]
        pdus = [bytes.fromhex(v) for v in vectors["encoded_pdu_items"].values()]
        pdus = [
            p for p in pdus if p[:1] in bytes(range(1, 8)) and len(p) == 6 + int.from_bytes(p[2:6], "big")
        ]
        datagrams["dicom"].extend(pdus)
        for i, pdu in enumerate(pdus):
            conversations["dicom"][("vector", i)] = [(pdu, pdu[0] in (1, 4, 5))]
    hl7 = DATA / "protocols" / "hl7-messages" / "hl7-sample-messages.json"
    if hl7.is_file():
        for name, text in json.loads(hl7.read_text())["messages"].items():
            raw = text.encode("latin-1")
            datagrams["hl7"].append(raw)
            conversations["hl7"][name] = [(b"\x0b" + raw + b"\x1c\x0d", True)]


# --- strategies -------------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """A few random edits of a real payload: bit flips, cuts, insertions, deletions, repeats, length
    fields pushed to extremes (a 0xFF / 0x00 run over a random spot)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "repeat", "extreme"]))
        at = draw(st.integers(0, len(data))) if data else 0
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))] * draw(st.integers(1, 4))
        elif op == "extreme":
            data[at : at + 4] = bytes([draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))]) * 4
    return bytes(data)


def payloads(real: list[bytes]) -> st.SearchStrategy[bytes]:
    random = st.binary(max_size=1500)
    if not real:
        return random
    return st.one_of(random, st.sampled_from(real), st.sampled_from(real).flatmap(mutated))


def conversation_chunks(real: list[list[tuple[bytes, bool]]]) -> st.SearchStrategy[list[tuple[bytes, bool]]]:
    random = st.lists(st.tuples(st.binary(max_size=600), st.booleans()), max_size=6)
    if not real:
        return random

    @st.composite
    def edited(draw: st.DrawFn) -> list[tuple[bytes, bool]]:
        conv = list(draw(st.sampled_from(real)))
        for i, (payload, side) in enumerate(conv):
            if draw(st.booleans()):
                conv[i] = (draw(mutated(payload)), side)
        if conv and draw(st.booleans()):  # re-split one chunk where TCP might have cut it
            i = draw(st.integers(0, len(conv) - 1))
            payload, side = conv[i]
            cut = draw(st.integers(0, len(payload)))
            conv[i : i + 1] = [(payload[:cut], side), (payload[cut:], side)]
        return conv

    return st.one_of(random, edited())


# --- tests ------------------------------------------------------------------------------------------


def _extra_arguments(fn: Callable[..., Any], payload_len: int, draw: st.DrawFn) -> list[Any]:
    """Values for the positional parameters after the payload: offsets, ports."""
    out: list[Any] = []
    for name, annotation, has_default in _parameters(sys.modules[fn.__module__], fn.__name__)[1:]:
        if has_default:
            break
        if "port" in name:
            out.append(draw(st.sampled_from([53, 5353, 5355, 1234])))
        elif annotation == "int":
            out.append(draw(st.integers(0, max(0, payload_len + 2))))
        else:
            raise AssertionError(f"no fuzz value for parameter {name} of {fn.__qualname__}")
    return out


ENTRY_POINTS = entry_points()


def test_registry_exposes_the_entry_points() -> None:
    names = {name for name, _, _ in ENTRY_POINTS}
    datagram_modules = {m.NAME for m in protocols.MODULES if hasattr(m, "parse_datagram")}
    assert {f"{n}.parse_datagram" for n in datagram_modules} <= names
    assert {"dicom.parse_pdu", "hl7.parse_message", "tls.parse_client_hello", "mqtt.looks_like",
            "tls.mid_stream"} <= names  # fmt: skip
    assert {m.NAME for m in STREAM_MODULES} >= {
        "tls",
        "http",
        "dicom",
        "hl7",
        "mqtt",
        "ftp",
        "telnet",
        "rtsp",
    }


@pytest.mark.parametrize(("name", "fn", "kind"), ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
@FUZZ
@given(data=st.data())
def test_function_returns_or_raises_malformed(
    name: str, fn: Callable[..., Any], kind: str, data: st.DataObject
) -> None:
    module = name.split(".")[0]
    if kind == "str":
        arg: bytes | str = data.draw(st.text(max_size=300))
    else:
        arg = data.draw(payloads(seeds()[0].get(module, [])))
    extra = _extra_arguments(fn, len(arg), data.draw)
    with time_limit(TIME_LIMIT):
        try:
            result = fn(arg, *extra)
        except Malformed:
            assert not name.endswith((".looks_like", ".mid_stream")), "a content test must answer, not raise"
            return
    if name.endswith((".looks_like", ".mid_stream")):
        assert isinstance(result, bool)


@pytest.mark.parametrize("mod", STREAM_MODULES, ids=[m.NAME for m in STREAM_MODULES])
@FUZZ
@given(data=st.data())
def test_stream_parser_returns_or_raises_malformed(mod: ModuleType, data: st.DataObject) -> None:
    chunks = data.draw(conversation_chunks(seeds()[1].get(mod.NAME, [])))
    parser = mod.StreamParser()
    if hasattr(parser, "join"):  # a connection picked up mid-way: either side may start anywhere
        for from_client in (True, False):
            if data.draw(st.booleans()):
                parser.join(from_client)
    with time_limit(TIME_LIMIT):
        for payload, from_client in chunks:
            try:
                msgs = parser.feed(payload, from_client)
            except Malformed:
                return  # the pipeline stops inspecting the connection here
            assert all(isinstance(m.fields, dict) for m in msgs)
        if hasattr(parser, "flush"):
            parser.flush()


def test_seed_corpus_covers_the_dissectors() -> None:
    if not DATA.is_dir():
        pytest.skip("../shared/data is not beside the repository")
    datagrams, conversations = seeds()
    assert {"dhcp", "dns", "nbns", "ssdp", "snmp", "syslog", "arp", "dicom", "hl7"} <= set(datagrams)
    assert {"tls", "http", "rtsp", "ftp", "telnet", "mqtt", "hl7", "dicom"} <= set(conversations)


def test_time_limit_stops_a_runaway_loop() -> None:
    with pytest.raises(TimeoutError), time_limit(0.05):
        while True:
            pass
