"""Telnet (RFC 854/855): the banner a device prints, and whether a login was typed, never what.

Wire format: a byte stream of NVT text with embedded commands:

    IAC(255) WILL|WONT|DO|DONT(251..254) option   option negotiation
    IAC SB(250) option ... IAC SE(240)             subnegotiation (IAC IAC inside stands for 255)
    IAC IAC                                        a data byte 255
    IAC command                                    any other two-byte command (NOP, AYT, ...)

A login is text: the server prints a prompt ("login:", "Username:", "Password:"), the client types a line
(CR LF, CR NUL or LF). The lines typed are only counted, and a telnet.login is emitted when the line
answering a password prompt ends.
"""

from __future__ import annotations

from typing import Final

from medsentry.protocols.base import Message

NAME: Final = "telnet"
TCP_PORTS: Final = frozenset({23})

IAC: Final = 255
SB: Final = 250
SE: Final = 240
WILL: Final = 251
DONT: Final = 254
_DATA: Final = 0
_COMMAND: Final = 1
_OPTION: Final = 2
_SUBNEG: Final = 3
_SUBNEG_IAC: Final = 4
_USER_PROMPTS: Final = (b"login:", b"username:", b"user name:", b"user:")
_PASSWORD_PROMPTS: Final = (b"password:", b"passcode:")
_SCREEN: Final = 512  # server text kept to look for prompts and the banner
_BUDGET: Final = 64 * 1024  # bytes per direction; the login comes first
_MAX_LOGINS: Final = 16


def looks_like(head: bytes) -> bool:
    """Option negotiation is how telnet clients (and servers) open."""
    return len(head) >= 3 and head[0] == IAC and WILL <= head[1] <= DONT


class _Decoder:
    """Removes telnet commands from one direction's bytes, keeping state across segments."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = _DATA

    def text(self, data: bytes) -> bytes:
        if IAC not in data and self.state == _DATA:
            return data
        out = bytearray()
        state = self.state
        for byte in data:
            if state == _DATA:
                if byte == IAC:
                    state = _COMMAND
                else:
                    out.append(byte)
            elif state == _COMMAND:
                if byte == IAC:
                    out.append(IAC)
                    state = _DATA
                elif byte == SB:
                    state = _SUBNEG
                else:
                    state = _OPTION if WILL <= byte <= DONT else _DATA
            elif state == _OPTION:
                state = _DATA
            elif state == _SUBNEG:
                state = _SUBNEG_IAC if byte == IAC else _SUBNEG
            else:  # IAC inside a subnegotiation: SE ends it, IAC IAC is data
                state = _DATA if byte == SE else _SUBNEG
        self.state = state
        return bytes(out)


class StreamParser:
    """One telnet session, up to the login."""

    __slots__ = (
        "_banner_sent",
        "_client",
        "_logins",
        "_prompt",
        "_screen",
        "_seen",
        "_server",
        "_typed",
        "_user",
    )

    def __init__(self) -> None:
        self._client = _Decoder()
        self._server = _Decoder()
        self._screen = b""  # recent server text, since the client last ended a line
        self._prompt = b""  # b"user" or b"password" while the server waits for one
        self._typed = 0  # printable characters in the line being typed
        self._user = False
        self._banner_sent = False
        self._logins = 0
        self._seen = [0, 0]

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        side = int(from_client)
        if self._seen[side] >= _BUDGET or self._logins >= _MAX_LOGINS:
            return []
        self._seen[side] += len(data)
        if from_client:
            return self._typing(self._client.text(data))
        return self._output(self._server.text(data))

    def _output(self, text: bytes) -> list[Message]:
        self._screen = (self._screen + text)[-_SCREEN:]
        tail = self._screen.rstrip().lower()
        out: list[Message] = []
        if tail.endswith(_USER_PROMPTS):
            self._prompt = b"user"
        elif tail.endswith(_PASSWORD_PROMPTS):
            self._prompt = b"password"
        else:
            return out
        if not self._banner_sent:
            self._banner_sent = True
            banner = self._screen.rstrip().rpartition(b"\n")[0].strip()  # the text above the prompt line
            if banner:
                out.append(Message("telnet.banner", {"banner": banner.decode("utf-8", "replace")}, False))
        return out

    def _typing(self, text: bytes) -> list[Message]:
        out: list[Message] = []
        for byte in text:
            if byte not in b"\r\n\0":
                if byte >= 32 and byte != 127:  # not a control character, backspace or delete
                    self._typed += 1
                continue
            if byte == 0:
                continue
            if not self._prompt:  # a line nobody asked for, or the LF after CR
                self._typed = 0
                continue
            self._screen = b""
            if self._prompt == b"user":
                self._user = self._typed > 0
            else:
                out.append(Message("telnet.login", {"user_present": self._user,
                                                    "password_present": self._typed > 0}, True))
                self._logins += 1
                self._user = False
            self._prompt = b""
            self._typed = 0
        return out
