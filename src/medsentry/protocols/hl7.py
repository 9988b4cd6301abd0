"""HL7 version 2 messages over MLLP (HL7 v2.x Minimal Lower Layer Protocol, Appendix C of 2.5+).

MLLP block: 0x0B (VT), the message bytes, 0x1C (FS), 0x0D (CR). One block usually holds one message;
a batch (BHS ... BTS) or file (FHS ... FTS) holds several, each starting at its MSH segment.

A message is segments separated by CR (LF and CRLF are tolerated). A segment is a 3-character id then
fields separated by the field separator that MSH declares as the character right after "MSH" (MSH-1);
MSH-2 declares the component, repetition, escape and subcomponent separators (usually ^~\\&). Because
MSH-1 is the separator itself, MSH-n is the (n-1)th item of the split MSH; in other segments, field n
is the nth. Text is decoded as Latin-1 so every byte maps to one character (MSH-18 is not interpreted).

Patient data never leaves: only which PHI segments and which identifying fields are non-empty, and a
salted hash of the patient identifier (PID-3, first component of the first repetition). Of results, only
the coding systems of the observation identifiers (OBX-3, e.g. LN = LOINC, MDC = IEEE 11073) are reported.
"""

from __future__ import annotations

import re
from typing import Any, Final

from medsentry.privacy import phi_hash
from medsentry.protocols.base import WHOLE_CONNECTION, Malformed, Message

NAME: Final = "hl7"
TCP_PORTS: Final = frozenset({2575, 2100, 6661})
INSPECT_BYTES: Final = WHOLE_CONNECTION  # an interface engine's connection carries every message for days

START_BLOCK: Final = b"\x0b"
END_BLOCK: Final = b"\x1c\x0d"
_MAX_MESSAGE: Final = 1024 * 1024  # a block longer than this is dropped up to the next start byte

# OBX-3 coding systems reported per message
_MAX_CODING_SYSTEMS: Final = 8
_MAX_CODING_SYSTEM_NAME: Final = 20
_MAX_MSH_FIELD: Final = 227  # the longest MSH field (HD, v2.5); longer ones are cut when reported

_ENVELOPES: Final = frozenset({"FHS", "BHS", "BTS", "FTS"})  # file and batch header / trailer segments
# Segments about the patient, their visit, next of kin, guarantor and insurance (HL7 v2 chapters 3, 6).
PHI_SEGMENTS: Final = frozenset(
    {"PID", "PD1", "NK1", "PV1", "PV2", "MRG", "GT1", "IN1", "IN2", "IN3", "AL1", "DG1"}
)
# Fields of those segments that identify a person: identifiers, names, dates of birth, addresses, phones.
_PHI_FIELDS: Final = {
    "PID": (2, 3, 4, 5, 6, 7, 9, 11, 13, 14, 18, 19, 20, 21),
    "NK1": (2, 4, 5, 6, 16, 33, 37),
    "GT1": (2, 3, 5, 6, 7, 8, 12),
    "IN1": (16, 18, 19, 36, 49),
    "MRG": (1, 2, 3, 4, 5, 6, 7),
    "PV1": (19, 50),
}
INVALID_SEGMENT: Final = "?"  # stands for a segment whose id is not three capitals / digits
# Injection attempts seen in interface-engine attacks; only the reason is reported, never the text.
_SUSPICIOUS: Final = re.compile(
    r"(?P<script_tag><\s*/?\s*script|javascript:)"
    r"|(?P<sql_injection>'\s*or\s+'?\d+'?\s*=\s*'?\d|\bunion\s+(?:all\s+)?select\b|\bdrop\s+table\b"
    r"|;\s*(?:delete\s+from|insert\s+into|update\s+\w+\s+set)\b|\bexec(?:ute)?\s+xp_\w+)"
    r"|(?P<shell_metacharacters>\$\(|`|;\s*(?:rm\s+-|wget\s|curl\s|bash\s|chmod\s|/bin/)|\|\s*(?:sh|bash)\b)"
    r"|(?P<path_traversal>\.\./\.\./|\.\.\\\.\.\\)"
    r"|(?P<nul_byte>\x00)",
    re.IGNORECASE,
)


# Every _SUSPICIOUS branch needs one of these (lower case; the text is latin-1, where str.lower and the
# regex's case folding agree) or a pipe before sh/bash: most messages have none and skip the big regex.
_TRIGGERS: Final = (
    "<", "javascript:", "'", "union", "drop", ";", "exec", "$(", "`", "../../", "..\\..\\", "\x00"
)
_PIPE_SHELL: Final = re.compile(r"\|\s*(?:sh|bash)", re.IGNORECASE)


def _suspicious(text: str) -> list[str]:
    low = text.lower()
    if not any(t in low for t in _TRIGGERS) and not (_may_pipe_to_shell(low) and _PIPE_SHELL.search(text)):
        return []
    return sorted({m.lastgroup for m in _SUSPICIOUS.finditer(text) if m.lastgroup})


def _may_pipe_to_shell(low: str) -> bool:
    """Whether `_PIPE_SHELL` can match the lower-cased text: an "sh" with only whitespace between it (or
    the "ba" before it) and a "|". Looked for from each "sh" (every message has one: "msh"), where the
    regex is tried at every field separator of the message."""
    i = low.find("sh")
    while i >= 0:
        for j in (i - 1, i - 3 if low[i - 2 : i] == "ba" else -1):
            while j >= 0 and low[j].isspace():
                j -= 1
            if j >= 0 and low[j] == "|":
                return True
        i = low.find("sh", i + 1)
    return False


def looks_like(head: bytes) -> bool:
    return head[:4] == b"\x0bMSH"


# A connection picked up inside a message (an interface engine's connection stays open for days, and a
# result with an embedded report spans many segments): HL7 text, with a segment start, a field separator
# or a block's end in it, or base64 of an embedded document (OBX-5, type ED).
_TEXT: Final = re.compile(rb"[\x20-\x7e\x80-\xff\r\n\t\x0b\x1c]+\Z")
_INSIDE: Final = re.compile(rb"\r[A-Z][A-Z0-9]{2}\||\x1c\r|\|[^|\r]*\^|\^[^|\r]*\|")
_BASE64: Final = re.compile(rb"[A-Za-z0-9+/=\r\n]{256,}\Z")


def mid_stream(head: bytes) -> bool:
    head = head[:4096]
    if _TEXT.match(head) is None:
        return False
    return _INSIDE.search(head) is not None or _BASE64.match(head) is not None


def parse_message(data: bytes) -> list[Message]:
    """The HL7 messages of one block (without MLLP framing): one per MSH, batch and file envelopes dropped.

    Segments before the first MSH (a missing or damaged header) make one message flagged malformed.
    """
    return _messages(data, None)


def _messages(data: bytes | bytearray, from_client: bool | None) -> list[Message]:
    text = bytes(data).decode("latin-1")
    groups: list[list[str]] = []
    interrupted: set[int] = set()  # messages a batch or file header cut into (python-hl7 rejects them)
    after_header = False
    separators = "|^~\\&"
    # as re.split(r"\r\n?|\n", text), without the regex engine
    for segment in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
        if not segment.strip():
            continue
        sid = segment[:3]
        if sid in _ENVELOPES:
            if sid in ("FHS", "BHS"):
                after_header = True
                if len(segment) >= 8:
                    separators = segment[3:8]  # a headless message after the envelope uses its separators
            continue
        if sid == "MSH" or not groups:
            groups.append([])
        elif after_header:
            interrupted.add(len(groups) - 1)
        after_header = False
        groups[-1].append(segment)
    return [Message(*_message(g, separators, i in interrupted), from_client) for i, g in enumerate(groups)]


def _field(msh: list[str], n: int) -> str:
    """MSH-n (cut to _MAX_MSH_FIELD), "" past the segment's end. A function of the module, not a closure
    in `_message`: compiled, a closure is an object built for every message."""
    return msh[n][:_MAX_MSH_FIELD] if n < len(msh) else ""


def _message(segments: list[str], separators: str, interrupted: bool) -> tuple[str, dict[str, Any]]:
    """(kind, fields) of one message: segments from its MSH (if any) to the next."""
    f: dict[str, Any] = {"malformed": False}
    if interrupted:
        f["malformed"], f["malformed_reason"] = True, "batch or file header inside the message"
    msh = segments[0] if segments[0].startswith("MSH") else None
    if msh is None:
        f["malformed"], f["malformed_reason"] = True, "no MSH segment"
    elif len(msh) >= 8:
        separators = msh[3:8]
    fs, cs, rs = separators[0], separators[1], separators[2]
    if fs.isalnum() or fs.isspace() or len(set(separators[:4])) < 4 or cs.isalnum() or rs.isalnum():
        f["malformed"], f["malformed_reason"] = True, "invalid separators in MSH-1 / MSH-2"
        fs, cs, rs = "|", "^", "~"
    blank = separators[1:] + ' "'  # an identifying field of only these is empty

    ids: list[str] = []
    phi_fields: list[str] = []
    coding: dict[str, None] = {}
    pid3 = None
    for segment in segments:
        end = segment.find(fs)
        sid = segment if end < 0 else segment[:end]
        if _segment_id(sid):
            ids.append(sid)
        else:
            # Not an id: often the rest of a field cut by a stray line break, i.e. patient text.
            ids.append(INVALID_SEGMENT)
            f["malformed"], f["malformed_reason"] = True, "invalid segment id"
        phi = _PHI_FIELDS.get(sid)
        if phi is None and sid != "OBX":
            continue  # only the id of the other segments is read
        fields = segment.split(fs)
        for n in phi or ():
            if n < len(fields) and fields[n].strip(blank):
                phi_fields.append(f"{sid}-{n}")
        if sid == "PID" and pid3 is None and len(fields) > 3:
            pid3 = _first(fields[3], rs, cs).strip()
        elif sid == "OBX" and len(fields) > 3 and len(coding) < _MAX_CODING_SYSTEMS:
            # OBX-3 is a CE/CWE code: identifier ^ text ^ coding system ("LN" LOINC, "MDC" IEEE 11073).
            system = fields[3].split(rs, 1)[0].split(cs)[2:3]
            if system and system[0].strip():
                coding.setdefault(system[0].strip()[:_MAX_CODING_SYSTEM_NAME], None)
    f["segments"] = list(dict.fromkeys(ids))
    f["segment_count"] = len(ids)
    f["phi_segments"] = [s for s in f["segments"] if s in PHI_SEGMENTS]
    f["phi_fields_present"] = list(dict.fromkeys(phi_fields))
    if coding:
        f["obx_coding_systems"] = list(coding)
    if pid3:
        f["patient_id_hash"] = phi_hash(pid3)
    f["suspicious"] = _suspicious("\r".join(segments))

    if msh is not None:
        m = ["", *msh.split(fs)]  # m[n] is MSH-n: MSH-1 is the field separator itself
        if any(len(value) > _MAX_MSH_FIELD for value in m):
            f["suspicious"].append("oversized_msh_field")  # a header overflow attempt; values are cut

        f["sending_application"] = _first(_field(m, 3), rs, cs)
        f["sending_facility"] = _first(_field(m, 4), rs, cs)
        f["receiving_application"] = _first(_field(m, 5), rs, cs)
        f["receiving_facility"] = _first(_field(m, 6), rs, cs)
        message_type = _field(m, 9).split(rs, 1)[0].split(cs)
        f["message_type"] = message_type[0]
        f["trigger_event"] = message_type[1] if len(message_type) > 1 else ""
        f["control_id"] = _field(m, 10)
        f["processing_id"], f["version"] = _first(_field(m, 11), rs, cs), _first(_field(m, 12), rs, cs)
        if not f["message_type"]:
            f["malformed"], f["malformed_reason"] = True, "MSH-9 message type is empty"
    msa = next((s.split(fs) for s in segments if s.startswith("MSA")), None)
    if msa is None:
        return "hl7.message", f
    f["ack_code"] = msa[1] if len(msa) > 1 else ""
    if f.get("message_type") not in ("ACK", "MCF"):
        return "hl7.message", f
    f["control_id"] = msa[2] if len(msa) > 2 else ""  # the control id of the message acknowledged
    return "hl7.ack", f


def _first(field: str, rs: str, cs: str) -> str:
    """The first component of the first repetition."""
    return field.split(rs, 1)[0].split(cs, 1)[0]


_ID_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _segment_id(sid: str) -> bool:
    """A segment id: three characters, a capital then capitals or digits (ASCII); checked per segment,
    where a regex match cost more than the rest of the segment's reading."""
    return len(sid) == 3 and "A" <= sid[0] <= "Z" and sid[1] in _ID_CHARS and sid[2] in _ID_CHARS


class _Direction:
    __slots__ = ("buf", "joined", "scanned", "skipping")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.scanned = 0  # bytes of buf already searched for the end of the block
        self.skipping = False  # dropping an oversized block until the next start byte
        self.joined = False  # picked up inside the connection: no block boundary seen yet


class StreamParser:
    """MLLP blocks of both directions of one connection, reassembled and bounded."""

    def __init__(self) -> None:
        self._dirs = [_Direction(), _Direction()]

    def join(self, from_client: bool) -> None:
        """The direction's bytes start inside the connection: what comes before the first block
        boundary is the end of a block whose start the capture missed, not bytes outside blocks."""
        self._dirs[from_client].joined = True

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        d = self._dirs[from_client]
        d.buf += data
        if d.joined and not self._tail_passed(d):
            return []
        out: list[Message] = []
        garbage = False
        while True:
            buf = d.buf
            start = buf.find(START_BLOCK)
            if start != 0:
                # Bytes outside a block: allowed whitespace, or the tail of a block being dropped.
                prefix = buf if start < 0 else buf[:start]
                garbage |= not d.skipping and bool(bytes(prefix).strip())
                del buf[: len(prefix)]
                d.scanned = 0
                if start < 0:
                    break
            d.skipping = False
            end = buf.find(END_BLOCK, max(1, d.scanned))
            if end < 0:
                if len(buf) <= _MAX_MESSAGE:
                    d.scanned = max(1, len(buf) - 1)  # FS may be the last byte, CR still to come
                    break
                del buf[:1]  # resynchronise on the next start byte
                d.skipping, garbage = True, True
                continue
            # A start byte inside the block means the one before was cut short: keep the last one.
            begin = buf.rfind(START_BLOCK, 0, end) + 1
            out.extend(_messages(buf[begin:end], from_client))
            del buf[: end + 2]
            d.scanned = 0
        if garbage and not out:
            raise Malformed("bytes outside MLLP blocks or a block over the size bound")
        return out

    @staticmethod
    def _tail_passed(d: _Direction) -> bool:
        """Drop the end of the block a joined direction began inside; False while it has not ended."""
        buf = d.buf
        start, end = buf.find(START_BLOCK), buf.find(END_BLOCK)
        if end >= 0 and (start < 0 or end < start):
            del buf[: end + 2]
        elif start < 0:
            del buf[:-1]  # only FS of the block's end may be here, its CR still to come
            return False
        d.joined = False
        return True
