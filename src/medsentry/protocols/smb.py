"""SMB over TCP 445 / 139 (MS-SMB, MS-SMB2): what a session's start says of its hosts. SMB1 itself is a
finding (WannaCry and NotPetya spread through it, and old imaging consoles still speak it).

    session     NetBIOS session message: type (1: 0x00 message; 0x81.. session service on 139) length (3)
    SMB1        "\\xffSMB" command(1) status(4) flags(1: 0x80 reply) flags2(2: 0x8000 Unicode) ... (32);
                WordCount(1) Words(2 x WordCount) ByteCount(2) Bytes. SESSION_SETUP_ANDX (0x73) without
                extended security ends its Bytes with NativeOS and NativeLanMan strings ("Windows 7
                Ultimate 7601 Service Pack 1"); with it, a security blob (SPNEGO, NTLMSSP) comes first.
    SMB2        "\\xfeSMB" StructureSize(2) ... Command(2 @12) ... Flags(4 @16: 0x1 response) (64 bytes);
                NEGOTIATE response: StructureSize(2) SecurityMode(2) DialectRevision(2 @4)
    NTLMSSP     anywhere in a session setup: see `ntlmssp`

Messages: `smb.negotiate` (smb1, dialect) from the server, `smb.session_setup` (native_os,
native_lanman) from either side, `smb.ntlm` (`ntlmssp` fields). Only the first 64 KiB of each direction are
looked at: a session's setup is far shorter.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from medsentry.protocols import ntlmssp
from medsentry.protocols.base import Malformed, Message

NAME: Final = "smb"
TCP_PORTS: Final = frozenset({139, 445})

_SMB1: Final = b"\xffSMB"
_SMB2: Final = b"\xfeSMB"
_SESSION_SETUP_ANDX: Final = 0x73
_DIALECTS: Final = {
    0x0202: "2.0.2", 0x0210: "2.1", 0x0300: "3.0", 0x0302: "3.0.2", 0x0311: "3.1.1", 0x02FF: "2.x"
}
_BUDGET: Final = 64 * 1024
_MAX_TEXT: Final = 128


def looks_like(head: bytes) -> bool:
    return len(head) >= 8 and head[0] == 0 and head[4:8] in (_SMB1, _SMB2)


def _strings(raw: bytes, unicode: bool, count: int) -> list[str]:
    text = raw[: len(raw) // 2 * 2].decode("utf-16-le", "replace") if unicode else raw.decode("latin-1")
    return [p.strip()[:_MAX_TEXT] for p in text.split("\x00")[:count]]


class _Direction:
    __slots__ = ("buf", "done", "seen")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.seen = 0
        self.done = False


class StreamParser:
    __slots__ = ("_dirs", "_negotiated")

    def __init__(self) -> None:
        self._dirs = [_Direction(), _Direction()]  # index: from_client
        self._negotiated = False

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        d = self._dirs[from_client]
        if d.done:
            return []
        data = data[: _BUDGET - d.seen]
        d.seen += len(data)
        d.buf += data
        out: list[Message] = []
        while len(d.buf) >= 4:
            length = int.from_bytes(d.buf[1:4], "big")
            if len(d.buf) < 4 + length:
                break
            kind, msg = d.buf[0], bytes(d.buf[4 : 4 + length])
            del d.buf[: 4 + length]
            if kind == 0x00:
                out += self._message(msg, from_client)
            elif kind not in (0x81, 0x82, 0x83, 0x84, 0x85):  # 139's session service
                d.done = True
                raise Malformed(f"NetBIOS session message type {kind:#x}")
        if d.seen >= _BUDGET:
            d.done = True
        return out

    def _message(self, msg: bytes, from_client: bool) -> list[Message]:
        out: list[Message] = []
        if msg[:4] == _SMB1 and len(msg) >= 33:
            if not from_client and not self._negotiated:
                self._negotiated = True
                out.append(Message("smb.negotiate", {"smb1": True, "dialect": "1"}, from_client))
            if msg[4] == _SESSION_SETUP_ANDX:
                fields = self._session_setup(msg)
                if fields:
                    out.append(Message("smb.session_setup", fields, from_client))
        elif msg[:4] == _SMB2 and len(msg) >= 70:
            command, flags = struct.unpack_from("<H", msg, 12)[0], struct.unpack_from("<I", msg, 16)[0]
            if command == 0 and flags & 1 and not self._negotiated:
                self._negotiated = True
                revision = struct.unpack_from("<H", msg, 68)[0]
                dialect = _DIALECTS.get(revision) or f"{revision:#06x}"
                out.append(Message("smb.negotiate", {"smb1": False, "dialect": dialect}, from_client))
        elif msg[:4] not in (_SMB1, _SMB2):
            raise Malformed("not an SMB message")
        ntlm = ntlmssp.find(msg)
        if ntlm:
            out.append(Message("smb.ntlm", ntlm, from_client))
        return out

    @staticmethod
    def _session_setup(msg: bytes) -> dict[str, Any]:
        """NativeOS and NativeLanMan, the last strings of a SESSION_SETUP_ANDX request or reply."""
        unicode = bool(struct.unpack_from("<H", msg, 10)[0] & 0x8000)
        words = msg[32]
        at = 33 + 2 * words
        if at + 2 > len(msg):
            raise Malformed("SMB1 words run past the message")
        count = struct.unpack_from("<H", msg, at)[0]
        data = msg[at + 2 : at + 2 + count]
        reply = bool(msg[9] & 0x80)
        # before the strings: passwords (request, 13 words), or a security blob (request 12 / reply 4 words)
        skip = 0
        if not reply and words == 13:
            skip = sum(struct.unpack_from("<HH", msg, 33 + 14))
        elif (not reply and words == 12) or (reply and words == 4):
            skip = struct.unpack_from("<H", msg, 33 + (14 if not reply else 6))[0]
        data = data[skip:]
        if unicode and (at + 2 + skip) % 2:
            data = data[1:]  # Unicode strings are 2-byte aligned from the SMB header
        strings = _strings(data, unicode, 3 if reply else 4)
        if not reply and words == 13:
            strings = strings[2:]  # account name and primary domain come before NativeOS
        return {k: v for k, v in zip(("native_os", "native_lanman"), strings[:2], strict=False) if v}
