"""NTLMSSP messages (MS-NLMP 2.2), as HTTP (`Authorization` / `WWW-Authenticate: NTLM <base64>`) and SMB
carry them: a Windows host names itself and its exact OS build while authenticating.

    header        Signature "NTLMSSP\\0" (8) MessageType (4 LE: 1 NEGOTIATE, 2 CHALLENGE, 3 AUTHENTICATE)
    fields        (Len 2, MaxLen 2, BufferOffset 4 from the message start) for each variable part
    CHALLENGE     TargetName fields @12, NegotiateFlags @20, ServerChallenge @24, Reserved @32,
                  TargetInfo fields @40, Version @48: AV pairs (AvId 2, AvLen 2, value; UTF-16LE names):
                  1 NetBIOS computer, 2 NetBIOS domain, 3 DNS computer, 4 DNS domain, 0 end
    AUTHENTICATE  LmChallengeResponse @12, NtChallengeResponse @20, DomainName @28, UserName @36,
                  Workstation @44, EncryptedRandomSessionKey @52, NegotiateFlags @60, Version @64
    Version       ProductMajorVersion (1) ProductMinorVersion (1) ProductBuild (2 LE) Reserved (3)
                  NTLMRevisionCurrent (1); present with NTLMSSP_NEGOTIATE_VERSION (flag 0x02000000)

Never kept: the challenge responses (password-derived, crackable offline) and the user name (only a
salted hash of it).
"""

from __future__ import annotations

import struct
from typing import Any, Final

from medsentry.privacy import phi_hash
from medsentry.protocols.base import Malformed

SIGNATURE: Final = b"NTLMSSP\x00"
_NEGOTIATE_VERSION: Final = 0x02000000
_NEGOTIATE_UNICODE: Final = 0x00000001
_FIELDS: Final = struct.Struct("<HHI")
_AV_NAMES: Final = {1: "netbios_computer", 2: "netbios_domain", 3: "dns_computer", 4: "dns_domain"}
_MAX_NAME: Final = 256


def _part(msg: bytes, at: int) -> bytes:
    length, _, offset = _FIELDS.unpack_from(msg, at)
    if offset + length > len(msg):
        raise Malformed("NTLMSSP field runs past the message")
    return msg[offset : offset + length]


def _text(raw: bytes, unicode: bool) -> str:
    return raw[: 2 * _MAX_NAME].decode("utf-16-le" if unicode else "latin-1", "replace")


def _version(msg: bytes, at: int, flags: int, parts: tuple[int, ...], fields: dict[str, Any]) -> None:
    """The Version at `at` where the flag says it is there and no variable part starts before its end (some
    clients set the flag and leave it out: their payload then begins where it would be)."""
    offsets = [_FIELDS.unpack_from(msg, p)[2] for p in parts if _FIELDS.unpack_from(msg, p)[0]]
    if flags & _NEGOTIATE_VERSION and len(msg) >= at + 8 and min(offsets, default=at + 8) >= at + 8:
        major, minor, build = struct.unpack_from("<BBH", msg, at)
        if major:
            fields["os_version"], fields["os_build"] = f"{major}.{minor}", build


def parse(msg: bytes) -> dict[str, Any] | None:
    """The identification-relevant fields of a CHALLENGE or AUTHENTICATE message; None for a NEGOTIATE."""
    if len(msg) < 12 or not msg.startswith(SIGNATURE):
        raise Malformed("not an NTLMSSP message")
    kind = struct.unpack_from("<I", msg, 8)[0]
    if kind == 1:
        return None
    fields: dict[str, Any]
    if kind == 2:
        if len(msg) < 48:
            raise Malformed("truncated NTLMSSP CHALLENGE")
        flags = struct.unpack_from("<I", msg, 20)[0]
        fields = {"ntlm": "challenge"}
        info, off = _part(msg, 40), 0
        while off + 4 <= len(info):
            av_id, av_len = struct.unpack_from("<HH", info, off)
            if av_id == 0:
                break
            if av_id in _AV_NAMES:
                fields[_AV_NAMES[av_id]] = _text(info[off + 4 : off + 4 + av_len], True)
            off += 4 + av_len
        _version(msg, 48, flags, (12, 40), fields)
        return fields
    if kind == 3:
        if len(msg) < 64:
            raise Malformed("truncated NTLMSSP AUTHENTICATE")
        flags = struct.unpack_from("<I", msg, 60)[0]
        unicode = bool(flags & _NEGOTIATE_UNICODE)
        fields = {"ntlm": "authenticate", "domain": _text(_part(msg, 28), unicode),
                  "workstation": _text(_part(msg, 44), unicode)}  # fmt: skip
        user = _part(msg, 36)
        if user:
            fields["user_hash"] = phi_hash(user)
        _version(msg, 64, flags, (12, 20, 28, 36, 44, 52), fields)
        return fields
    raise Malformed(f"unknown NTLMSSP message type {kind}")


def find(blob: bytes) -> dict[str, Any] | None:
    """`parse` of the NTLMSSP message inside `blob` (SPNEGO, an SMB session setup); None where there is
    none, it is a NEGOTIATE, or it cannot be read (the carrier's other fields still count)."""
    at = blob.find(SIGNATURE)
    if at < 0:
        return None
    try:
        return parse(blob[at:])
    except Malformed:
        return None
