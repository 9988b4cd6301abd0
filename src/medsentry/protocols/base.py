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

from dataclasses import dataclass, field
from typing import Any, Protocol

_NO_FIELDS: Any = object()  # `fields` not given: a new empty dict, as `field(default_factory=dict)`


# INSPECT_BYTES of the medical and device message protocols (DICOM, HL7, MQTT): their connections stay open
# for days, and a command, a patient record or a topic published late matters as much as the first one.
WHOLE_CONNECTION = 1 << 62


class Malformed(ValueError):
    """The payload does not follow the protocol's wire format."""


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

    # Written by hand: the generated frozen __init__ sets each field through object.__setattr__ (by name,
    # after looking it up); storing through the slots' own descriptors is ~40% cheaper per message.
    def __init__(
        self,
        kind: str,
        fields: dict[str, Any] = _NO_FIELDS,  # type: ignore[assignment]
        from_client: bool | None = None,
    ) -> None:
        _set_kind(self, kind)
        _set_fields(self, {} if fields is _NO_FIELDS else fields)
        _set_from_client(self, from_client)


_set_kind = Message.__dict__["kind"].__set__
_set_fields = Message.__dict__["fields"].__set__
_set_from_client = Message.__dict__["from_client"].__set__


class StreamParser(Protocol):
    """Per-connection state for a TCP protocol; gets each direction's bytes in order."""

    def feed(self, data: bytes, from_client: bool) -> list[Message]: ...
