"""Protocol modules and how the pipeline picks one for a datagram, a frame or a TCP connection.

Each module follows `medsentry.protocols.base`. Selection is by well-known port first, confirmed by the
module's `looks_like` where it has one, then by content alone, so services on unusual ports are found,
and last, on a module's own ports, by what the middle of its connections looks like (`mid_stream`: a
capture started while the connection was open). A UDP flow goes by port, else by its first datagram
(`looks_like_datagram`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Final

from medsentry.protocols.base import DEFAULT_INSPECT_BYTES, Message

_MODULES = [
    "arp",
    "lldp",
    "cdp",
    "dhcp",
    "dns",
    "nbns",
    "nbdgm",
    "ssdp",
    "snmp",
    "syslog",
    "tls",
    "http",
    "rtsp",
    "ftp",
    "telnet",
    "smb",
    "dicom",
    "hl7",
    "mqtt",
]


MODULES: Final[list[ModuleType]] = [
    importlib.import_module(f"medsentry.protocols.{name}") for name in _MODULES
]
BY_ETHERTYPE: Final[dict[int, ModuleType]] = {t: m for m in MODULES for t in getattr(m, "ETHERTYPES", ())}
BY_NAME: Final[dict[str, ModuleType]] = {m.NAME: m for m in MODULES}
BY_ETHERTYPE[BY_NAME["cdp"].SNAP_PID] = BY_NAME["cdp"]
BY_UDP_PORT: Final[dict[int, ModuleType]] = {
    p: m for m in MODULES if hasattr(m, "parse_datagram") for p in getattr(m, "UDP_PORTS", ())
}
BY_TCP_PORT: Final[dict[int, ModuleType]] = {
    p: m for m in MODULES if hasattr(m, "StreamParser") for p in getattr(m, "TCP_PORTS", ())
}
CONTENT_TESTS: Final[list[ModuleType]] = [
    m for m in MODULES if hasattr(m, "StreamParser") and hasattr(m, "looks_like")
]
DATAGRAM_TESTS: Final[list[ModuleType]] = [
    m for m in MODULES if hasattr(m, "parse_datagram") and hasattr(m, "looks_like_datagram")
]
MID_STREAM_TESTS: Final[list[ModuleType]] = [
    m for m in MODULES if hasattr(m, "StreamParser") and hasattr(m, "mid_stream")
]
# Optional module names (base.py), by module NAME, looked up once here: asking a module for a name it lacks
# raises and catches an AttributeError each time, which per flow and per datagram added up.
GREETINGS: Final[dict[str, bytes]] = {m.NAME: m.GREETING for m in MODULES if hasattr(m, "GREETING")}
INSPECT_BYTES: Final[dict[str, int]] = {
    m.NAME: getattr(m, "INSPECT_BYTES", DEFAULT_INSPECT_BYTES) for m in MODULES
}
ON_PORTS: Final[dict[str, Callable[[bytes, int, int], list[Message]]]] = {
    m.NAME: m.parse_datagram_on for m in MODULES if hasattr(m, "parse_datagram_on")
}
_CONTENT_TEST: Final[frozenset[str]] = frozenset(m.NAME for m in MODULES if hasattr(m, "looks_like"))


def for_stream(server_port: int, client_port: int, head: bytes, before: bytes | None = None,
               joining: bool = False) -> ModuleType | None:  # fmt: skip
    """The module for a TCP connection whose first payload is `head`; `before`: the start of a payload that
    came first and no module took (a server's greeting). A module that knows its greeting (`GREETING`)
    must find it there; off the module's ports the greeting must have been seen. `joining`: a later try
    at a connection picked up mid-stream (`may_join`): only the ports' own modules are asked, since
    every module's content test over many segments of one connection would find some look-alike."""
    for port in (server_port, client_port):
        mod = BY_TCP_PORT.get(port)
        if mod is None or not _greeted(mod, before):
            continue
        if mod.NAME not in _CONTENT_TEST or _safe(mod, "looks_like", head):
            return mod
    for mod in () if joining else CONTENT_TESTS:
        if _safe(mod, "looks_like", head) and _greeted(mod, before, seen=True):
            return mod
    for mod in MID_STREAM_TESTS:  # last: what a connection's start looks like comes first
        ports = mod.TCP_PORTS
        if (server_port in ports or client_port in ports) and _safe(mod, "mid_stream", head):
            return mod
    return None


def may_join(server_port: int, client_port: int) -> bool:
    """A module on one of these ports can recognise its connections mid-stream (`mid_stream`): the first
    segments seen may hold no point it recognises (an image's pixel data), so more of them are tried."""
    return any(server_port in m.TCP_PORTS or client_port in m.TCP_PORTS for m in MID_STREAM_TESTS)


def for_datagram(head: bytes) -> ModuleType | None:
    """The module for a UDP flow on ports no module claims, whose first datagram is `head`."""
    for mod in DATAGRAM_TESTS:
        if _safe(mod, "looks_like_datagram", head):
            return mod
    return None


def _greeted(mod: ModuleType, before: bytes | None, seen: bool = False) -> bool:
    """`before` is `mod`'s greeting, or (unless it must have been `seen`) the capture began after it."""
    greeting = GREETINGS.get(mod.NAME)
    if greeting is None:
        return True
    return before.startswith(greeting) if before is not None else not seen


def _safe(mod: ModuleType, test: str, head: bytes) -> bool:
    try:
        return bool(getattr(mod, test)(head))
    except Exception:  # a content test must never take the pipeline down
        return False
