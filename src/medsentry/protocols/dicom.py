"""DICOM Upper Layer protocol over TCP (DICOM PS3.8 section 9) and the DIMSE command set (PS3.7).

Every PDU is a 6-byte header then `length` bytes:

    byte 0    PDU type: 1 A-ASSOCIATE-RQ, 2 -AC, 3 -RJ, 4 P-DATA-TF, 5 A-RELEASE-RQ, 6 -RP, 7 A-ABORT
    byte 1    reserved
    2..5      PDU length, big-endian uint32

A-ASSOCIATE-RQ/AC: protocol version (2), reserved (2), called AE title (16), calling AE title (16),
reserved (32), then items of type (1), reserved (1), length (2, big-endian): 0x10 application context,
0x20 / 0x21 presentation context (RQ: id, abstract syntax 0x30, transfer syntaxes 0x40; AC: id, result,
one transfer syntax), 0x50 user information (0x51 maximum length, 0x52 implementation class UID,
0x55 implementation version name, 0x58 / 0x59 user identity RQ / AC, ...).
A-ASSOCIATE-RJ: reserved, result, source, reason. A-ABORT: reserved (2), source, reason.

P-DATA-TF carries presentation data value items: length (4, big-endian), presentation context id (1),
message control header (1: bit 0 command / data set, bit 1 last fragment), fragment. A DIMSE command
set is group 0000 in implicit VR little endian: tag (2 + 2), length (4), value. The data set after a
command (images, query keys) is never buffered: only the first bytes of its first fragment are read,
for which patient-module (group 0010) attributes are present and a salted hash of PatientID, and the
equipment attributes that identify the sending device (PS3.3 C.7.5.1 General Equipment: Manufacturer,
Manufacturer's Model Name, Station Name, Software Versions; and Modality); the rest is skipped by length
as it streams past. Patient values and user identity values never leave.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from medsentry.privacy import phi_hash
from medsentry.protocols.base import (
    EVERYTHING,
    WHOLE_CONNECTION,
    Framed,
    FramedParser,
    Malformed,
    Message,
    remembered,
)

NAME: Final = "dicom"
TCP_PORTS: Final = frozenset({104, 11112, 4242, 2761, 2762})

A_ASSOCIATE_RQ: Final = 1
A_ASSOCIATE_AC: Final = 2
A_ASSOCIATE_RJ: Final = 3
P_DATA_TF: Final = 4
A_RELEASE_RQ: Final = 5
A_RELEASE_RP: Final = 6
A_ABORT: Final = 7
_KINDS: Final = {
    A_ASSOCIATE_RQ: "dicom.associate_rq",
    A_ASSOCIATE_AC: "dicom.associate_ac",
    A_ASSOCIATE_RJ: "dicom.associate_rj",
    A_RELEASE_RQ: "dicom.release_rq",
    A_RELEASE_RP: "dicom.release_rp",
    A_ABORT: "dicom.abort",
}

# Association state, as a passive observer needs it (PS3.8 9.2 has Sta1..Sta13 for the endpoints).
AWAITING_ASSOCIATION: Final = "awaiting_association"
ASSOCIATED: Final = "associated"
RELEASED: Final = "released"

COMMANDS: Final = {
    0x0001: "C-STORE-RQ", 0x8001: "C-STORE-RSP", 0x0010: "C-GET-RQ", 0x8010: "C-GET-RSP",
    0x0020: "C-FIND-RQ", 0x8020: "C-FIND-RSP", 0x0021: "C-MOVE-RQ", 0x8021: "C-MOVE-RSP",
    0x0030: "C-ECHO-RQ", 0x8030: "C-ECHO-RSP", 0x0FFF: "C-CANCEL-RQ",
    0x0100: "N-EVENT-REPORT-RQ", 0x8100: "N-EVENT-REPORT-RSP", 0x0110: "N-GET-RQ", 0x8110: "N-GET-RSP",
    0x0120: "N-SET-RQ", 0x8120: "N-SET-RSP", 0x0130: "N-ACTION-RQ", 0x8130: "N-ACTION-RSP",
    0x0140: "N-CREATE-RQ", 0x8140: "N-CREATE-RSP", 0x0150: "N-DELETE-RQ", 0x8150: "N-DELETE-RSP",
}  # fmt: skip

# Patient module and related group 0010 attributes, by DICOM keyword (PS3.6).
PATIENT_KEYWORDS: Final = {
    0x0010: "PatientName", 0x0020: "PatientID", 0x0021: "IssuerOfPatientID",
    0x0030: "PatientBirthDate", 0x0032: "PatientBirthTime", 0x0040: "PatientSex",
    0x1000: "OtherPatientIDs", 0x1001: "OtherPatientNames", 0x1002: "OtherPatientIDsSequence",
    0x1005: "PatientBirthName", 0x1010: "PatientAge", 0x1020: "PatientSize", 0x1030: "PatientWeight",
    0x1040: "PatientAddress", 0x1060: "PatientMotherBirthName", 0x2154: "PatientTelephoneNumbers",
    0x2160: "EthnicGroup", 0x21B0: "AdditionalPatientHistory", 0x4000: "PatientComments",
}  # fmt: skip

# Equipment attributes of a data set, tag -> field: they name the device, never the patient.
EQUIPMENT_ELEMENTS: Final = {  # tag: (group << 16) | element
    0x0008_0060: "modality",
    0x0008_0070: "manufacturer",
    0x0008_1010: "station_name",
    0x0008_1090: "manufacturer_model_name",
    0x0018_1020: "software_versions",
}
_MAX_EQUIPMENT_TEXT: Final = 64

# Command set elements reported (PS3.7 E.1): UI / AE values, then US values.
_TEXT_ELEMENTS: Final = {
    0x0002: "affected_sop_class",
    0x0003: "requested_sop_class",
    0x0600: "move_destination",
    0x1030: "move_originator_ae",
}
_US_ELEMENTS: Final = {0x0110: "message_id", 0x0120: "message_id_being_responded_to", 0x0900: "status"}

IMPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: Final = "1.2.840.10008.1.2.1.99"

# Every command: Python parses commands and the first bytes of each data set (a few KiB an image); the
# rest of the data sets is skipped (`ignores`) or walked in C (`pdata_state`).
INSPECT_BYTES: Final = WHOLE_CONNECTION
_MAX_PDU: Final = 1024 * 1024  # association / release / abort PDUs; P-DATA-TF streams through unbuffered
_MAX_COMMAND: Final = 64 * 1024  # a command set is a few hundred bytes
_SCAN_LIMIT: Final = 16 * 1024  # of a data set's first fragment, read for patient attributes
_NO_DATA_SET: Final = 0x0101  # Command Data Set Type value meaning "no data set follows"
_UNDEFINED: Final = 0xFFFFFFFF

_HEADER: Final = struct.Struct("!BxI")
_ITEM: Final = struct.Struct("!BxH")
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_PDV: Final = struct.Struct("!IBB")
# Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS: Final = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_LONG_VR_CODES: Final = frozenset(vr[0] << 8 | vr[1] for vr in _LONG_VRS)
_VRS: Final = _LONG_VRS | frozenset(b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split())


def looks_like(head: bytes) -> bool:
    """An A-ASSOCIATE-RQ: type 0x01, reserved 0x00, a plausible length, protocol version bit 0 set."""
    if len(head) < 10 or head[0] != A_ASSOCIATE_RQ or head[1] != 0:
        return False
    length = _U32.unpack_from(head, 2)[0]
    return 68 <= length <= _MAX_PDU and _U16.unpack_from(head, 6)[0] & 1 == 1


_PDATA_MAX: Final = 4 * 1024 * 1024  # the longest P-DATA-TF PDU believed when looking for one mid-stream
_RESYNC_MAX: Final = 64 * 1024 * 1024  # bytes of a joined direction searched for a PDU before giving up


def _resync(buf: bytes | bytearray) -> int | None:
    """Where a P-DATA-TF PDU plausibly starts in bytes from the middle of an association: its header
    and first PDV item are consistent (item inside the PDU, odd presentation context id, message control
    header 0-3), and the next PDU's header, where the bytes reach it, is one too. None if nowhere (or
    only where the bytes end too soon to tell)."""
    i = buf.find(b"\x04\x00")
    while 0 <= i <= len(buf) - 12:
        length = _U32.unpack_from(buf, i + 2)[0]
        item, context, control = _PDV.unpack_from(buf, i + 6)
        if 6 <= length <= _PDATA_MAX and 2 <= item <= length - 4 and context & 1 and control <= 3:
            after = i + 6 + length
            if after + 2 > len(buf) or (1 <= buf[after] <= 7 and buf[after + 1] == 0):
                return i
        i = buf.find(b"\x04\x00", i + 1)
    return None


def mid_stream(head: bytes) -> bool:
    """An association picked up after it began (a study of thousands of images takes minutes): a
    P-DATA-TF PDU somewhere in the segment (see `_resync`)."""
    return _resync(head) is not None


def _text(value: bytes) -> str:
    """AE titles, UIDs and names: ASCII padded with spaces (or NUL for UIDs)."""
    return value.strip(b" \x00").decode("ascii", "replace")


def _items(data: bytes, pos: int) -> list[tuple[int, bytes]]:
    """The (type, value) items or sub-items from pos to the end of data."""
    items = []
    while pos < len(data):
        if pos + 4 > len(data):
            raise Malformed("truncated item header")
        itype, length = _ITEM.unpack_from(data, pos)
        pos += 4 + length
        if pos > len(data):
            raise Malformed(f"item 0x{itype:02x} runs past its container")
        items.append((itype, data[pos - length : pos]))
    return items


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def parse_associate(pdu: bytes) -> dict[str, Any]:
    """Fields of an A-ASSOCIATE-RQ or -AC PDU (header included)."""
    if len(pdu) < 74:
        raise Malformed("A-ASSOCIATE shorter than its fixed fields")
    f: dict[str, Any] = {
        "protocol_version": _U16.unpack_from(pdu, 6)[0],
        "called_ae": _text(pdu[10:26]),
        "calling_ae": _text(pdu[26:42]),
    }
    contexts: list[dict[str, Any]] = []
    for itype, value in _items(pdu, 74):
        if itype == 0x10:
            f["application_context"] = _text(value)
        elif itype in (0x20, 0x21):
            contexts.append(_presentation_context(itype, value))
        elif itype == 0x50:
            f.update(_user_information(value))
    f["presentation_contexts"] = contexts
    if pdu[0] == A_ASSOCIATE_RQ:
        f["abstract_syntaxes"] = _unique([c["abstract_syntax"] for c in contexts if c.get("abstract_syntax")])
        f["transfer_syntaxes"] = _unique([t for c in contexts for t in c.get("transfer_syntaxes", ())])
    else:
        f["transfer_syntaxes"] = _unique(
            [c["transfer_syntax"] for c in contexts if c.get("result") == 0 and c.get("transfer_syntax")]
        )
    return f


_ASSOCIATIONS: Final[dict[bytes, dict[str, Any]]] = {}
_ASSOCIATIONS_MAX: Final = 1024  # distinct A-ASSOCIATE PDUs remembered (bounded: cleared when full)


def _parse_associate_remembered(pdu: bytes) -> dict[str, Any]:
    """`parse_associate`, remembered per PDU: a modality opens every association with the same
    A-ASSOCIATE-RQ (AE titles, presentation contexts) and its PACS answers with the same AC, and parsing
    a hundred presentation contexts takes ≈ 90,000 instructions. Each call gets its own fields dict; the
    values in it (the context and syntax lists) are shared between repeats, as facts are never changed."""
    return dict(remembered(_ASSOCIATIONS, _ASSOCIATIONS_MAX, pdu, parse_associate, pdu))


def _presentation_context(itype: int, value: bytes) -> dict[str, Any]:
    """RQ (0x20): id, abstract syntax, proposed transfer syntaxes; AC (0x21): id, result, transfer syntax."""
    if len(value) < 4:
        raise Malformed("presentation context item too short")
    subs = _items(value, 4)
    transfer = [_text(v) for t, v in subs if t == 0x40]
    if itype == 0x21:
        return {"id": value[0], "result": value[2], "transfer_syntax": transfer[0] if transfer else None}
    abstract = [_text(v) for t, v in subs if t == 0x30]
    return {
        "id": value[0],
        "abstract_syntax": abstract[0] if abstract else None,
        "transfer_syntaxes": transfer,
    }


def _user_information(value: bytes) -> dict[str, Any]:
    f: dict[str, Any] = {}
    for stype, sub in _items(value, 0):
        if stype == 0x51:
            if len(sub) != 4:
                raise Malformed("maximum length sub-item is not 4 bytes")
            f["max_pdu"] = _U32.unpack(sub)[0]
        elif stype == 0x52:
            f["implementation_class_uid"] = _text(sub)
        elif stype == 0x55:
            f["implementation_version_name"] = _text(sub)
        elif stype == 0x58:
            # Type 1 username, 2 username + passcode, 3 Kerberos, 4 SAML, 5 JWT: the values are secrets.
            if len(sub) < 2:
                raise Malformed("user identity sub-item too short")
            f["user_identity_present"] = True
            f["user_identity_type"] = sub[0]
        elif stype == 0x59:
            f["user_identity_present"] = True  # the server response (may be a ticket or token)
    return f


def parse_command_set(data: bytes) -> dict[str, Any]:
    """A DIMSE command set (group 0000, implicit VR little endian) -> command fields."""
    elements: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos < end:
        if pos + 8 > end:
            raise Malformed("truncated command element")
        group, element, length = _u16le(data, pos), _u16le(data, pos + 2), _u32le(data, pos + 4)
        pos += 8 + length
        if group != 0 or pos > end:
            raise Malformed("command set element outside group 0000 or past the end")
        elements[element] = data[pos - length : pos]

    field = _us(elements, 0x0100)
    if field is None:
        raise Malformed("command set without Command Field")
    # `or`, not a default argument: the default would be formatted on every call (≈ 3,000 instructions)
    f: dict[str, Any] = {"command": COMMANDS.get(field) or f"0x{field:04X}", "command_field": field}
    for element, name in _TEXT_ELEMENTS.items():
        if element in elements:
            f[name] = _text(elements[element])
    for element, name in _US_ELEMENTS.items():
        if (value := _us(elements, element)) is not None:
            f[name] = value
    f["data_set_present"] = _us(elements, 0x0800) != _NO_DATA_SET
    return f


def _us(elements: dict[int, bytes], element: int) -> int | None:
    """A command element's US value, None if absent."""
    value = elements.get(element)
    if value is None:
        return None
    if len(value) != 2:
        raise Malformed(f"(0000,{element:04X}) is not a US value")
    return _u16le(value, 0)


def scan_data_set(data: bytes, explicit_vr: bool | None = None) -> dict[str, Any]:
    """Which patient attributes (group 0010) a data set fragment carries, a hash of PatientID, and the
    equipment attributes (EQUIPMENT_ELEMENTS) as text.

    Little endian only; `explicit_vr` None guesses from the first element (a VR after the tag).
    Stops at the first top-level group above 0018 (elements come in tag order) or where the fragment ends.
    """
    return _scan(data, explicit_vr)[0]


def _scan(data: bytes, explicit_vr: bool | None) -> tuple[dict[str, Any], bool]:
    """`scan_data_set`, and whether it got to its end (a top-level group above 0018) inside `data`: then
    more bytes of the fragment would not change the answer."""
    if explicit_vr is None:
        explicit_vr = data[4:6] in _VRS
    present: list[str] = []
    f: dict[str, Any] = {"patient_attributes_present": present}
    pos, depth, end = 0, 0, len(data)
    while pos + 8 <= end:
        group, element, length = _u16le(data, pos), _u16le(data, pos + 2), _u32le(data, pos + 4)
        if group == 0xFFFE:  # item and delimiters: tag + 4-byte length in every transfer syntax
            pos += 8
            if element == 0xE000 and length != _UNDEFINED:
                pos += length
            elif element == 0xE000:
                depth += 1
            else:
                depth = max(0, depth - 1)
            continue
        if depth == 0 and group > 0x0018:
            return f, True
        if explicit_vr:
            length = _u16le(data, pos + 6)
            if (data[pos + 4] << 8 | data[pos + 5]) in _LONG_VR_CODES:
                if pos + 12 > end:
                    break
                length = _u32le(data, pos + 8)
                pos += 4
        pos += 8
        if length == _UNDEFINED:  # a sequence (or encapsulated data) of undefined length: walk into it
            depth += 1
            continue
        if group == 0x0010 and length:
            keyword = PATIENT_KEYWORDS.get(element) or f"(0010,{element:04X})"  # formatted only if unnamed
            if keyword not in present:
                present.append(keyword)
            if element == 0x0020 and depth == 0 and pos + length <= end:
                f["patient_id_hash"] = phi_hash(data[pos : pos + length].strip(b" \x00"))
        elif depth == 0 and (name := EQUIPMENT_ELEMENTS.get(group << 16 | element)) and pos + length <= end:
            # Multi-valued strings separate values with a backslash (PS3.5 6.4).
            text = " ".join(data[pos : pos + length].decode("latin-1").replace("\\", " ").split())
            if text:
                f[name] = text[:_MAX_EQUIPMENT_TEXT]
        pos += length
    return f, False


# Element headers read byte by byte: compiled, an index is a native read, where `struct.unpack_from` builds
# a tuple and three ints for every element of every data set scanned.
def _u16le(data: bytes, pos: int) -> int:
    return data[pos] | data[pos + 1] << 8


def _u32le(data: bytes, pos: int) -> int:
    return data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16 | data[pos + 3] << 24


def _pdu_header(buf: bytearray) -> tuple[int, int]:
    """(PDU type, length) at the start of `buf`. Typed: compiled, the fields of an unpacked struct are Any,
    and every test and sum on them a generic call."""
    ptype, length = _HEADER.unpack_from(buf)
    return ptype, length


def _pdv_header(buf: bytearray) -> tuple[int, int, int]:
    """(item length, presentation context id, message control header) of the PDV item at `buf`'s start."""
    item_length, context, control = _PDV.unpack_from(buf)
    return item_length, context, control


class _Direction(Framed):
    __slots__ = ("command", "pdu_left", "pending", "pending_context", "scan_tried")

    def __init__(self) -> None:
        super().__init__()  # `skip`: bytes of a data set fragment still to discard
        self.pdu_left = 0  # bytes left in the current P-DATA-TF PDU; 0 = a PDU header comes next
        self.command = bytearray()  # command fragments until the last one
        self.pending: dict[str, Any] | None = None  # a command waiting for its data set's first fragment
        self.pending_context = 0
        self.scan_tried = 0  # bytes of the pending data set the last scan that did not get to its end had


class StreamParser(FramedParser["_Direction"]):
    """One DICOM association: both directions' PDUs, presentation contexts and the association state."""

    def __init__(self) -> None:
        self.state = AWAITING_ASSOCIATION
        self._abstract: dict[int, str | None] = {}  # presentation context id -> abstract syntax (from the RQ)
        self._transfer: dict[int, str] = {}  # presentation context id -> accepted transfer syntax (AC)
        self._dirs = [_Direction(), _Direction()]

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        d = self._dirs[from_client]
        if d.dead:
            return []
        d.take(data)
        if d.joined is not None and not self._found_pdu(d):
            return []
        out: list[Message] = []
        try:
            while self._step(d, from_client, out):
                pass
        except Malformed:
            # The bad unit is consumed (or the direction is dead): keep what came before it.
            if not out:
                raise
        return out

    @staticmethod
    def _found_pdu(d: _Direction) -> bool:
        if d.found(_resync(d.buf), 11):  # a PDU header and PDV item may begin in the last 11 bytes
            return True
        if d.joined is not None and d.joined > _RESYNC_MAX:
            d.dead, d.joined = True, None
            raise Malformed("no P-DATA-TF PDU found in the joined association")
        return False

    def pdata_state(self, from_client: bool) -> tuple[int, int] | None:
        """(bytes of the current data-set fragment still to skip, bytes left in the P-DATA-TF PDU) when
        the direction's next bytes matter only for their framing until a command or another PDU comes:
        the C flow table may walk them (`FlowTable.arm_pdata`) and hand the state back (`pdata_resume`).
        None while anything is half-read or a data set waits to be scanned."""
        d = self._dirs[from_client]
        if d.dead:
            return EVERYTHING, 0
        if d.buf or d.command or d.pending is not None or d.joined is not None:
            return None
        if self.state == AWAITING_ASSOCIATION:
            return None
        return d.skip, d.pdu_left

    def pdata_resume(self, from_client: bool, skip: int, pdu_left: int) -> None:
        """Where a walk begun at `pdata_state` left the direction."""
        d = self._dirs[from_client]
        if not d.dead:
            d.skip, d.pdu_left = skip, pdu_left

    def flush(self) -> list[Message]:
        """Commands still waiting for a data set that never came (end of the connection)."""
        return [m for from_client in (False, True) if (m := self._release_pending(from_client))]

    def _release_pending(self, from_client: bool) -> Message | None:
        d = self._dirs[from_client]
        if d.pending is None:
            return None
        msg, d.pending = Message("dicom.command", d.pending, from_client), None
        return msg

    def _step(self, d: _Direction, from_client: bool, out: list[Message]) -> bool:
        """Consume one PDU header, control PDU or PDV item; False when more bytes are needed."""
        buf = d.buf
        if len(buf) < 6:
            return False
        if d.pdu_left == 0:
            ptype, length = _pdu_header(buf)
            if ptype == P_DATA_TF:
                del buf[:6]
                d.pdu_left = length
                if self.state == AWAITING_ASSOCIATION:
                    self.state = ASSOCIATED  # picked up after the association was negotiated
                return True
            if ptype not in _KINDS:
                d.dead = True
                raise Malformed(f"unknown PDU type 0x{ptype:02x}")
            if length > _MAX_PDU:
                d.drop(6 + length)
                raise Malformed(f"PDU of {length} bytes exceeds the bound")
            if len(buf) < 6 + length:
                return False
            pdu = bytes(buf[: 6 + length])
            del buf[: 6 + length]
            if pending := self._release_pending(from_client):
                out.append(pending)
            out.append(Message(_KINDS[ptype], self._control(pdu), from_client))
            return True
        if d.pdu_left < 6:
            d.dead = True
            raise Malformed("P-DATA-TF length does not cover its items")
        item_length, context, control = _pdv_header(buf)
        if item_length < 2 or item_length + 4 > d.pdu_left:
            d.dead = True
            raise Malformed("PDV item length outside its P-DATA-TF")
        size = item_length - 2
        if control & 0x01:
            if len(d.command) + size > _MAX_COMMAND:
                d.command.clear()
                d.pdu_left -= 4 + item_length
                d.drop(6 + size)
                raise Malformed("command set exceeds the bound")
            if len(buf) < 6 + size:
                return False
            d.command += buf[6 : 6 + size]
            del buf[: 6 + size]
            d.pdu_left -= 4 + item_length
            if control & 0x02:
                command, d.command = bytes(d.command), bytearray()
                if pending := self._release_pending(from_client):
                    out.append(pending)
                fields = parse_command_set(command)
                if fields["data_set_present"]:
                    d.pending, d.pending_context = fields, context
                else:
                    out.append(Message("dicom.command", fields, from_client))
            return True
        if d.pending is not None:
            head, have = min(size, _SCAN_LIMIT), len(buf) - 6
            transfer = self._transfer.get(d.pending_context)
            if transfer != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
                # The scan usually gets to its end (group 0018) in the first segment of the data set:
                # try it on what has come, again each time that doubles, not only after `head` bytes.
                if have < head and have < 2 * d.scan_tried:
                    return False
                explicit = None if transfer is None else transfer != IMPLICIT_VR_LITTLE_ENDIAN
                fields, complete = _scan(bytes(buf[6 : 6 + min(have, head)]), explicit)
                if have < head and not complete:
                    d.scan_tried = max(have, 1)
                    return False
                d.pending.update(fields)
            out.append(Message("dicom.command", d.pending, from_client))
            d.pending, d.scan_tried = None, 0
        d.pdu_left -= 4 + item_length
        d.drop(6 + size)
        return True

    def _control(self, pdu: bytes) -> dict[str, Any]:
        ptype = pdu[0]
        if ptype == A_ASSOCIATE_RQ:
            f = _parse_associate_remembered(pdu)
            self._abstract = {c["id"]: c["abstract_syntax"] for c in f["presentation_contexts"]}
            self._transfer = {}
            self.state = AWAITING_ASSOCIATION
        elif ptype == A_ASSOCIATE_AC:
            f = _parse_associate_remembered(pdu)
            accepted = [c for c in f["presentation_contexts"] if c["result"] == 0 and c["transfer_syntax"]]
            self._transfer = {c["id"]: c["transfer_syntax"] for c in accepted}
            # The AC names no abstract syntaxes: they are those of the RQ's contexts it accepted.
            f["abstract_syntaxes"] = _unique([a for c in accepted if (a := self._abstract.get(c["id"]))])
            self.state = ASSOCIATED
        elif len(pdu) != 10:
            raise Malformed(f"{_KINDS[ptype]} PDU is not 10 bytes")
        elif ptype == A_ASSOCIATE_RJ:
            f = {"result": pdu[7], "source": pdu[8], "reason": pdu[9]}
            self.state = RELEASED
        elif ptype == A_ABORT:
            f = {"source": pdu[8], "reason": pdu[9]}
            self.state = RELEASED
        else:
            f = {}
            if ptype == A_RELEASE_RP:
                self.state = RELEASED
        return f


def parse_pdu(pdu: bytes) -> list[Message]:
    """Decode one complete PDU on its own, as sent by the association requestor (e.g. a test vector)."""
    if len(pdu) < 6 or len(pdu) != 6 + _HEADER.unpack_from(pdu)[1]:
        raise Malformed("not one complete PDU")
    parser = StreamParser()
    return parser.feed(pdu, True) + parser.flush()
