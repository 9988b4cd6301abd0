"""FTP control connection (RFC 959): the server banner and the outcome of a login, never the credentials.

Wire format: lines ending in CRLF (bare LF tolerated).

    command   verb [SP argument] CRLF              e.g. "USER alice", "PASS secret"
    reply     code(3 digits) SP text CRLF          e.g. "220 JetDirect FTP Server ready"
              code "-" text CRLF ... code SP text CRLF   (multi-line reply, RFC 959 section 4.2)

Login: USER -> 230 (logged in, no password needed) | 331/332 (need password/account) -> PASS -> 230/202
(success) or 5xx (failure). After "234" (AUTH TLS accepted, RFC 4217) the connection is TLS: parsing stops.
"""

from __future__ import annotations

from typing import Any, Final

from medsentry.privacy import phi_hash
from medsentry.protocols.base import Malformed, Message

NAME: Final = "ftp"
TCP_PORTS: Final = frozenset({21})
# The server speaks first; POP3 ("+OK") and IRC clients send USER and PASS too.
GREETING: Final = b"220"

_MAX_LINE: Final = 4096  # longer lines are cut (Suricata's default limit too)
_MAX_BANNER: Final = 512
_MAX_LINES: Final = 256  # per direction
_MAX_REPLY_LINES: Final = 32
_COMMANDS: Final = frozenset(
    {b"USER", b"PASS", b"ACCT", b"AUTH", b"FEAT", b"SYST", b"OPTS", b"HOST", b"QUIT", b"PBSZ", b"PROT",
     b"CWD", b"PWD", b"TYPE", b"PASV", b"EPSV", b"PORT", b"EPRT", b"LIST", b"NLST", b"RETR", b"STOR"}
)


def looks_like(head: bytes) -> bool:
    """The first client payload of an FTP session (which the server opened with its banner) is a command."""
    return head.split(b"\n", 1)[0].split(b" ", 1)[0].strip().upper() in _COMMANDS


class _Lines:
    """Splits one direction into lines; an over-long line is cut, not buffered."""

    __slots__ = ("_buf", "_skipping", "count")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False  # dropping the rest of an over-long line
        self.count = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines = []
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                if not self._skipping:
                    self._buf += data[pos : pos + _MAX_LINE - len(self._buf)]
                    self._skipping = len(self._buf) >= _MAX_LINE
                break
            if not self._skipping:
                self._buf += data[pos : min(nl, pos + _MAX_LINE - len(self._buf))]
            lines.append(bytes(self._buf).rstrip(b"\r"))
            self._buf.clear()
            self._skipping = False
            pos = nl + 1
        self.count += len(lines)
        return lines


class StreamParser:
    """One FTP control connection."""

    __slots__ = ("_banner_done", "_client", "_command", "_done", "_password", "_reply", "_reply_code",
                 "_server", "_user")

    def __init__(self) -> None:
        self._client = _Lines()
        self._server = _Lines()
        self._reply_code = b""  # code of the multi-line reply being read
        self._reply: list[str] = []  # its lines so far
        self._banner_done = False
        self._command = b""  # verb of the last command awaiting its reply
        self._user: str | None = None
        self._password = False
        self._done = False

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        if self._done:
            return []
        out: list[Message] = []
        if from_client:
            for line in self._client.feed(data):
                self._on_command(line)
        else:
            try:
                for line in self._server.feed(data):
                    self._on_reply_line(line, out)
            except Malformed:
                self._done = True
                if not out:
                    raise
        # The login happens within the first lines; what follows is file transfer chatter.
        if self._client.count > _MAX_LINES or self._server.count > _MAX_LINES:
            self._done = True
        return out

    def _on_command(self, line: bytes) -> None:
        verb, _, argument = line.partition(b" ")
        self._command = verb.upper()
        if self._command == b"USER":
            self._user = phi_hash(argument.strip())
            self._password = False
        elif self._command == b"PASS":
            self._password = True

    def _on_reply_line(self, line: bytes, out: list[Message]) -> None:
        if self._reply_code:  # inside a multi-line reply: it ends at "<same code> SP text"
            if line[:3] == self._reply_code and line[3:4] == b" ":
                code, text = int(self._reply_code), "\n".join([*self._reply, _text(line[4:])])
                self._reply_code, self._reply = b"", []
                self._on_reply(code, text, out)
            elif len(self._reply) < _MAX_REPLY_LINES:
                self._reply.append(_text(line[4:] if line[:4] == self._reply_code + b"-" else line))
            return
        if not line:
            return
        digits = line[:3]
        if not (len(digits) == 3 and digits.isdigit() and line[3:4] in (b" ", b"-", b"")):
            raise Malformed("not an FTP reply")
        if line[3:4] == b"-":
            self._reply_code, self._reply = digits, [_text(line[4:])]
        else:
            self._on_reply(int(digits), _text(line[4:]), out)

    def _on_reply(self, code: int, text: str, out: list[Message]) -> None:
        if not self._banner_done:
            self._banner_done = True
            if code == 220:
                out.append(Message("ftp.banner", {"banner": text[:_MAX_BANNER]}, False))
                return
        if code == 234:  # AUTH TLS accepted: the rest is a TLS stream
            self._done = True
        elif self._command in (b"USER", b"PASS", b"ACCT") and code >= 200 and code not in (331, 332):
            fields: dict[str, Any] = {
                "user_present": self._user is not None,
                "password_present": self._password,
                "success": code in (230, 202),
                "reply_code": code,
            }
            if self._user is not None:
                fields["user_hash"] = self._user
            out.append(Message("ftp.login", fields, True))
            self._command = b""


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()
