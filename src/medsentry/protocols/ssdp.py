"""SSDP, the UPnP discovery protocol: HTTP-formatted messages over UDP 1900 (UPnP Device Architecture 2.0).

    NOTIFY * HTTP/1.1         a device announces itself (NTS ssdp:alive / ssdp:byebye)
    M-SEARCH * HTTP/1.1       a control point searches (ST: what it looks for)
    HTTP/1.1 200 OK           a device answers an M-SEARCH, unicast

then header lines "Name: value" (names case-insensitive), CRLF line ends (LF alone is accepted), an
empty line and no body. SERVER ("OS/version UPnP/1.0 product/version") and LOCATION (the device
description URL) identify a device; USER-AGENT identifies a control point.
"""

from __future__ import annotations

from typing import Any, Final

from medsentry.protocols.base import Malformed, Message

NAME: Final = "ssdp"
UDP_PORTS: Final = frozenset({1900})

_KINDS: Final = {b"NOTIFY * HTTP/1.1": "ssdp.notify", b"M-SEARCH * HTTP/1.1": "ssdp.msearch"}
_HEADERS: Final = {
    b"server": "server", b"location": "location", b"nt": "nt", b"nts": "nts", b"st": "st", b"usn": "usn",
    b"user-agent": "user_agent", b"x-user-agent": "user_agent",
}  # fmt: skip
_MAX_LINES: Final = 64


def looks_like(head: bytes) -> bool:
    return head.startswith((b"NOTIFY * ", b"M-SEARCH * ", b"HTTP/1.1 200"))


# Over UDP nothing else speaks HTTP: a device may answer an M-SEARCH from an ephemeral port, and some
# discovery schemes (Plex GDM) send M-SEARCH to ports of their own.
looks_like_datagram = looks_like


def parse_datagram(payload: bytes) -> list[Message]:
    lines = payload.split(b"\n", _MAX_LINES)
    start = lines[0].rstrip(b"\r")
    kind = _KINDS.get(start)
    if kind is None:
        if not start.startswith(b"HTTP/1.") or start[9:12] != b"200":
            raise Malformed("not an SSDP start line")
        kind = "ssdp.response"
    fields: dict[str, Any] = {}
    for line in lines[1:_MAX_LINES]:
        name, colon, value = line.partition(b":")
        if not colon:
            if line.strip(b"\r\x00"):
                raise Malformed("SSDP header line without a colon")
            break  # the empty line ends the headers
        key = _HEADERS.get(name.strip().lower())
        if key is not None and key not in fields:
            fields[key] = value.strip().decode("utf-8", "backslashreplace")
    return [Message(kind, fields)]
