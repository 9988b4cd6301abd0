"""The contract every protocol module follows: bytes in, messages out.

A protocol module knows nothing about packets, flows, MAC or IP addresses: the pipeline hands it a
payload (one datagram, or the bytes of one TCP direction in order) and gets back `Message`s. The pipeline
adds who sent it and when (see `medsentry.observe`).

Module-level names a protocol module exposes (all optional except NAME):

    NAME: str                       short protocol label, e.g. "dhcp" (also the flow's app label)
    UDP_PORTS / TCP_PORTS: frozenset[int]   well-known ports that select this module
    ETHERTYPES: frozenset[int]      for link-layer protocols (ARP, LLDP, CDP via SNAP)
    def looks_like(head: bytes) -> bool        content test on the first client payload of a flow
    GREETING: bytes                 how the server's first payload starts where the server speaks first
                                    (FTP "220"): the client's payload only counts after such a greeting
    def mid_stream(head: bytes) -> bool        on the module's own ports: bytes of a connection captured
                                               after it began (its first message never seen)
    def parse_datagram(payload: bytes) -> list[Message]          UDP / link-layer protocols
    def looks_like_datagram(payload: bytes) -> bool   content test on the first datagram of a UDP flow
                                               that no module's port claims (answers from ephemeral ports)
    class StreamParser: feed(data: bytes, from_client: bool) -> list[Message]   TCP protocols
        optional: ignores(from_client) -> int: how many of the direction's next bytes feed() would
        discard without any effect but counting them down (e.g. DICOM pixel data), and
        skip(from_client, n): count n of them down (n <= ignores). The pipeline then moves those
        bytes on without copying or feeding them, and they do not count against INSPECT_BYTES.
        optional: flush() -> list[Message]: what the parser still holds when the connection ends.
        optional: done: bool (an attribute or property): nothing more can come out of the connection,
        so the pipeline stops looking at it (TLS once both handshakes are over).
        optional: join(from_client): this direction's bytes start somewhere inside the connection (the
        capture began after it opened): its first bytes may be the end of a message.
        optional (DICOM): pdata_state(from_client) / pdata_resume(from_client, skip, pdu_left): where
        the C flow table may walk the direction's framing itself (see protocols.dicom).
    INSPECT_BYTES: int              bytes of each direction the pipeline feeds (default 64 KiB: the head
                                    of the connection); WHOLE_CONNECTION where every message matters

Parsers raise `Malformed` (never anything else) on bytes that do not follow the wire format; the
pipeline counts it per protocol and moves on.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

_NO_FIELDS: Final[Any] = object()  # `fields` not given: a new empty dict, as `field(default_factory=dict)`

# a module's INSPECT_BYTES where it names none: the connection's head
DEFAULT_INSPECT_BYTES: Final = 64 * 1024
# INSPECT_BYTES of the medical and device message protocols (DICOM, HL7, MQTT): their connections stay open
# for days, and a command, a patient record or a topic published late matters as much as the first one.
WHOLE_CONNECTION: Final = 1 << 62


class Malformed(ValueError):
    """The payload does not follow the protocol's wire format."""


def remembered(
    cache: dict[bytes, dict[str, Any]], limit: int, key: bytes, parse: Callable[[bytes], dict[str, Any]],
    data: bytes,
) -> dict[str, Any]:
    """`parse(data)`, kept in `cache` under `key` for the next time: a dissector's memo of units devices
    send again and again. Emptied when it holds `limit` entries (bounded, and no bookkeeping on a hit).
    The caller copies what its callers may change."""
    fields = cache.get(key)
    if fields is None:
        fields = parse(data)
        if len(cache) >= limit:
            cache.clear()
        cache[key] = fields
    return fields


_IPV4_TEXTS: Final[dict[bytes, str]] = {}
_MAX_IPV4_TEXTS: Final = 4096


def ipv4_text(packed: bytes) -> str:
    """Four bytes as a dotted quad (OSError on any other length, as `socket.inet_ntoa`).

    Remembered because glibc's inet_ntoa formats through snprintf, ≈ 2,800 instructions a call, and the
    addresses in DHCP, ARP and DNS answers repeat (0.0.0.0 most of all)."""
    text = _IPV4_TEXTS.get(packed)
    if text is None:
        if len(_IPV4_TEXTS) >= _MAX_IPV4_TEXTS:
            _IPV4_TEXTS.clear()
        text = _IPV4_TEXTS[packed] = socket.inet_ntoa(packed)
    return text


@dataclass(frozen=True, slots=True)
class Message:
    """One protocol message, reduced to the fields medsentry uses.

    `fields` holds JSON-serialisable values only. It never holds a secret (password, token) or
    patient data: those become `"<name>_present": True` flags or salted hashes (`medsentry.privacy`).
    `from_client` is None for datagrams, else which side of the TCP connection sent it.
    """

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    from_client: bool | None = None

    # Written by hand: see `Observation.__init__`.
    def __init__(self, kind: str, fields: Any = _NO_FIELDS, from_client: bool | None = None) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "fields", {} if fields is _NO_FIELDS else fields)
        object.__setattr__(self, "from_client", from_client)

    # By value: see `Observation.__reduce__`.
    def __reduce__(self) -> tuple[Any, ...]:
        return Message, (self.kind, self.fields, self.from_client)


class StreamParser(Protocol):
    """Per-connection state for a TCP protocol; gets each direction's bytes in order."""

    def feed(self, data: bytes, from_client: bool) -> list[Message]: ...


EVERYTHING: Final = 1 << 62  # what a direction whose framing is lost ignores: all that follows


class Framed:
    """One direction of a length-framed TCP protocol (DICOM PDUs, MQTT packets): bytes buffered until a
    unit is whole, payloads the parser does not read skipped by count, framing that may be lost (`dead`)
    or not found yet (`joined`: picked up inside the connection; the bytes searched so far)."""

    __slots__ = ("buf", "dead", "joined", "skip")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.skip = 0  # bytes still to discard before the next unit
        self.dead = False  # framing lost: nothing more is parsed in this direction
        self.joined: int | None = None

    def take(self, data: bytes | memoryview) -> None:
        """Buffer `data`, less what is still to be skipped."""
        if self.skip:
            n = min(self.skip, len(data))
            self.skip -= n
            data = memoryview(data)[n:]
        self.buf += data

    def drop(self, n: int) -> None:
        """Discard the next n bytes of the direction: what is buffered now, then the rest as it comes."""
        self.skip = max(0, n - len(self.buf))
        del self.buf[:n]

    def found(self, at: int | None, keep: int) -> bool:
        """A joined direction's search: its first unit starts at `at` (what is before it goes), or, None,
        only the last `keep` bytes stay (a unit may begin in them) and the rest counts as searched."""
        if at is not None:
            del self.buf[:at]
            self.joined = None
            return True
        gone = max(0, len(self.buf) - keep)
        del self.buf[:gone]
        self.joined = (self.joined or 0) + gone
        return False


_D = TypeVar("_D", bound="Framed")


class FramedParser(Generic[_D]):
    """`ignores`, `skip` and `join` (module docstring) of a stream parser whose `_dirs` are `Framed`."""

    # by from_client; a list, not a pair: compiled, a tuple indexed by a variable is built as an object on
    # every read (several a segment)
    _dirs: list[_D]

    def ignores(self, from_client: bool) -> int:
        """How many of the direction's next bytes `feed` would only count down."""
        d = self._dirs[from_client]
        return EVERYTHING if d.dead else d.skip

    def skip(self, from_client: bool, n: int) -> None:
        """What `feed` does with n bytes the direction `ignores`."""
        d = self._dirs[from_client]
        if not d.dead:
            d.skip -= n

    def join(self, from_client: bool) -> None:
        """The direction's bytes start inside the connection, maybe inside a unit: its parser looks for
        a unit's start first instead of reading a payload as headers."""
        self._dirs[from_client].joined = 0
