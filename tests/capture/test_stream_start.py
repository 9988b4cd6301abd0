"""A TCP side's byte stream starts at its SYN: data that comes out of order or goes missing at the start
of a connection is repaired or counted as a gap, never parsed from the middle."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from medsentry.decode.streams import MAX_PENDING_SEGMENTS
from medsentry.observe import Observation
from medsentry.pipeline import Stats, analyze_files

CLIENT, SERVER = ("10.0.0.5", 40000, 0x1000), ("10.0.0.9", 2575, 0x9000)  # address, port, ISN
SYN, ACK, PSH = 0x02, 0x10, 0x08
HL7 = (
    b"\x0bMSH|^~\\&|SENDAPP|SENDFAC|RECVAPP|RECVFAC|20240101120000||ADT^A01|MSG0001|P|2.5\r"
    b"EVN|A01|20240101120000\r\x1c\r"
)


def _frame(src: tuple[str, int, int], dst: tuple[str, int, int], flags: int, seq: int, data: bytes = b"",
           ack: int = 0) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack, 5 << 4, flags, 65535, 0, 0) + data
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, 6, 0,
                     ipaddress.ip_address(src[0]).packed, ipaddress.ip_address(dst[0]).packed)
    mac = {CLIENT[0]: bytes.fromhex("00095c000001"), SERVER[0]: bytes.fromhex("00095c000002")}
    return mac[dst[0]] + mac[src[0]] + b"\x08\x00" + ip + tcp


def _run(tmp_path: Path, frames: list[bytes]) -> tuple[list[Observation], Stats]:
    path = tmp_path / "c.pcap"
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000, i * 1000, len(f), len(f)) + f)
    path.write_bytes(b"".join(out))
    obs: list[Observation] = []
    return obs, analyze_files([path], obs.append)


def _handshake() -> list[bytes]:
    c, s = CLIENT[2], SERVER[2]
    return [_frame(CLIENT, SERVER, SYN, c), _frame(SERVER, CLIENT, SYN | ACK, s, ack=c + 1),
            _frame(CLIENT, SERVER, ACK, c + 1, ack=s + 1)]


def test_first_data_segment_out_of_order_is_reassembled(tmp_path: Path) -> None:
    c = CLIENT[2] + 1
    a, b = HL7[:40], HL7[40:]
    frames = [*_handshake(), _frame(CLIENT, SERVER, ACK | PSH, c + len(a), b),
              _frame(CLIENT, SERVER, ACK | PSH, c, a)]
    obs, stats = _run(tmp_path, frames)
    msgs = [o for o in obs if o.kind == "hl7.message"]
    assert len(msgs) == 1 and msgs[0].fields.get("message_type") == "ADT"
    assert not stats.malformed_by_protocol and stats.reassembly_gaps == 0


def test_lost_first_data_segment_is_a_gap_not_malformed(tmp_path: Path) -> None:
    c = CLIENT[2] + 1
    # the first 40 bytes never arrive; more of what follows does than the out-of-order store holds
    after = (HL7[40:] * 3)[: MAX_PENDING_SEGMENTS + 4]
    frames = [*_handshake()] + [_frame(CLIENT, SERVER, ACK | PSH, c + 40 + i, after[i : i + 1])
                                for i in range(len(after))]
    obs, stats = _run(tmp_path, frames)
    assert not [o for o in obs if o.protocol == "hl7"]
    assert not stats.malformed_by_protocol
    assert stats.reassembly_gaps == 1


def test_data_on_the_syn_starts_one_after_its_sequence_number(tmp_path: Path) -> None:
    c = CLIENT[2]
    a, b = HL7[:40], HL7[40:]
    frames = [_frame(CLIENT, SERVER, SYN, c, a), _frame(SERVER, CLIENT, SYN | ACK, SERVER[2], ack=c + 41),
              _frame(CLIENT, SERVER, ACK | PSH, c + 1 + len(a), b)]
    obs, stats = _run(tmp_path, frames)
    assert [o.kind for o in obs if o.protocol == "hl7"] == ["hl7.message"]
    assert stats.reassembly_gaps == 0


ACK_MSG = (
    b"\x0bMSH|^~\\&|RECVAPP|RECVFAC|SENDAPP|SENDFAC|20240101120001||ACK^A01|ACK0001|P|2.5\r"
    b"MSA|AA|MSG0001\r\x1c\r"
)


@pytest.mark.parametrize("real", [0, 1])
def test_the_syn_ack_just_before_the_data_starts_the_stream(tmp_path: Path, real: int) -> None:
    # two SYN-ACKs with different numbers (a retry, a middlebox): the data follows one of them
    c, isns = CLIENT[2], (0x9000, 0x7777_0000)
    frames = [_frame(CLIENT, SERVER, SYN, c),
              *(_frame(SERVER, CLIENT, SYN | ACK, s, ack=c + 1) for s in isns),
              _frame(CLIENT, SERVER, ACK | PSH, c + 1, HL7, ack=isns[real] + 1),
              _frame(SERVER, CLIENT, ACK | PSH, isns[real] + 1, ACK_MSG, ack=c + 1 + len(HL7))]
    obs, stats = _run(tmp_path, frames)
    assert sorted(o.kind for o in obs if o.protocol == "hl7") == ["hl7.ack", "hl7.message"]
    assert not stats.malformed_by_protocol and stats.reassembly_gaps == 0


def test_stray_payload_before_the_first_message_does_not_hide_it(tmp_path: Path) -> None:
    # two bytes on the handshake's ACK, then the real message from the same sequence number
    c = CLIENT[2] + 1
    frames = [*_handshake()[:2], _frame(CLIENT, SERVER, ACK, c, b"\r\n"),
              _frame(CLIENT, SERVER, ACK | PSH, c, HL7)]
    obs, stats = _run(tmp_path, frames)
    assert [o.kind for o in obs if o.protocol == "hl7"] == ["hl7.message"]
    assert not stats.malformed_by_protocol
