"""RTSP 1.0 (RFC 2326): request and response heads, e.g. an IP camera's OPTIONS/DESCRIBE exchange.

Wire format: HTTP/1.1 message syntax with "RTSP/1.0" as the version (see `medsentry.protocols.http`);
bodies (SDP) framed by Content-Length; between messages, interleaved RTP/RTCP as
"$" channel(u8) length(u16) payload (RFC 2326 section 10.12), which is skipped.

Privacy: URLs lose their user info (rtsp://user:password@host/...) and query values, which cameras use
for credentials and tokens; only the query's parameter names are kept.
"""

from __future__ import annotations

from typing import Any, Final

from medsentry.protocols.base import Message
from medsentry.protocols.http import Head, HeadReader, authorization_fields, message_body_length, split_target

NAME: Final = "rtsp"
TCP_PORTS: Final = frozenset({554, 8554})

METHODS: Final = frozenset(
    {b"DESCRIBE", b"ANNOUNCE", b"GET_PARAMETER", b"OPTIONS", b"PAUSE", b"PLAY", b"RECORD", b"REDIRECT",
     b"SETUP", b"SET_PARAMETER", b"TEARDOWN"}
)


def looks_like(head: bytes) -> bool:
    method, _, rest = head.partition(b" ")
    return method in METHODS and b" RTSP/1." in rest.split(b"\n", 1)[0]


def _url(target: str) -> tuple[str, list[str]]:
    """The URL without user info or query, and the query's parameter names."""
    host, path, query_keys = split_target(target)
    scheme = target.partition("://")[0]
    return (f"{scheme}://{host}{path}" if host else path), query_keys


def request_fields(head: Head) -> dict[str, Any]:
    method, target, version = head.start
    url, query_keys = _url(target)
    fields: dict[str, Any] = {"method": method, "url": url, "version": version}
    if query_keys:
        fields["query_keys"] = query_keys
    if "user-agent" in head.headers:
        fields["user_agent"] = head.headers["user-agent"]
    if "authorization" in head.headers:
        fields.update(authorization_fields(head.headers["authorization"]))
    return fields


def response_fields(head: Head) -> dict[str, Any]:
    version, status, reason = head.start
    fields: dict[str, Any] = {"status": int(status), "reason": reason, "version": version}
    for name in ("server", "public", "content-type", "www-authenticate"):
        if name in head.headers:
            fields[name.replace("-", "_")] = head.headers[name]
    return fields


def _body_length(head: Head) -> int:
    return message_body_length(head.headers, 0)


class StreamParser:
    """One RTSP control connection (possibly carrying interleaved RTP). Either side may send requests
    (a server's ANNOUNCE or GET_PARAMETER keep-alive)."""

    __slots__ = ("_client", "_server")

    def __init__(self) -> None:
        self._client = HeadReader(b"RTSP/", _body_length, interleaved=True)
        self._server = HeadReader(b"RTSP/", _body_length, interleaved=True)

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        heads = (self._client if from_client else self._server).feed(data)
        return [Message("rtsp.response", response_fields(h), from_client) if h.is_response
                else Message("rtsp.request", request_fields(h), from_client) for h in heads]
