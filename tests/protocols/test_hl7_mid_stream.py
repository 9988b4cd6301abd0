"""HL7 connections picked up inside a message: an interface engine's connection stays open for days, and
a result with an embedded report (base64 in OBX-5) spans many segments, so a sensor that starts (or
restarts) usually joins one mid-way. The end of that message is passed over; what follows is read."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from medsentry.decode.flows import ACK
from medsentry.protocols import hl7
from medsentry.protocols.base import Malformed
from tests.decode.test_flows import tcp, write_pcap

PSH = 0x08
REPORT = base64.b64encode(bytes(range(256)) * 200)  # a 51 KB "PDF"


def oru(n: int) -> bytes:
    return (b"\x0bMSH|^~\\&|LAB|GEN|EHR|GEN|20261206||ORU^R01|%d|P|2.5\rPID|1||%d^^^GEN||DOE^J\r"
            b"OBR|1|||11502-2^Lab report^LN\rOBX|1|ED|11502-2^Lab report^LN||^application^pdf^Base64^"
            % (n, n) + REPORT + b"||||||F\r\x1c\r")


ACK_MSG = b"\x0bMSH|^~\\&|EHR|GEN|LAB|GEN|20261206||ACK|1|P|2.5\rMSA|AA|1\r\x1c\r"


@pytest.mark.parametrize("head", [
    oru(1)[3000:4448],  # base64 of the embedded report
    oru(1)[20:1468],  # segments of the header
    oru(1)[-600:] + oru(2)[:800],  # the end of one block and the start of the next
    b"OBX|2|NM|8867-4^Heart rate^LN||72|/min\r",
])  # fmt: skip
def test_inside_a_message(head: bytes) -> None:
    assert hl7.mid_stream(head)


@pytest.mark.parametrize("head", [
    b"\x17\x03\x03\x01\x00" + bytes(range(256)),  # TLS application data
    b"GET /fhir/Patient HTTP/1.1\r\nHost: ehr\r\n\r\n",
    b'{"resourceType": "Observation", "status": "final"}',
    b"QUJD" * 10,  # too short to tell base64 from anything
])  # fmt: skip
def test_not_hl7(head: bytes) -> None:
    assert not hl7.mid_stream(head)


def test_a_joined_direction_passes_over_the_end_of_the_block() -> None:
    stream = oru(1)[5000:] + oru(2) + oru(3)
    strict = hl7.StreamParser()
    with pytest.raises(Malformed):  # not told it joined: bytes outside blocks
        strict.feed(stream[:1448], True)
    parser = hl7.StreamParser()
    parser.join(True)
    got = [m for i in range(0, len(stream), 1448) for m in parser.feed(stream[i : i + 1448], True)]
    assert [m.fields["control_id"] for m in got] == ["2", "3"] and not any(m.fields["malformed"] for m in got)


def test_a_capture_begun_inside_a_report_reads_the_connection_on(tmp_path: Path) -> None:
    lab, ehr = ("10.7.0.30", 45000), ("10.7.0.11", 2575)
    stream = oru(1)[9000:] + oru(2) + oru(3)
    frames, seq, rseq = [], 77_000, 5000
    for i in range(0, len(stream), 1448):
        part = stream[i : i + 1448]
        frames.append(tcp(lab, ehr, PSH | ACK, seq, part))
        seq += len(part)
        for _ in range(part.count(b"\x1c\r")):  # the engine acknowledges each message it received
            frames.append(tcp(ehr, lab, PSH | ACK, rseq, ACK_MSG))
            rseq += len(ACK_MSG)
    from medsentry.pipeline import observe_files

    observations, stats = observe_files([write_pcap(tmp_path / "joined.pcap", frames)])
    ids = [o.fields["control_id"] for o in observations if o.kind == "hl7.message"]
    assert ids == ["2", "3"] and len([o for o in observations if o.kind == "hl7.ack"]) == 3
    assert not stats.malformed_by_protocol
    [flow] = [o for o in observations if o.kind == "flow"]
    assert flow.fields["app"] == "hl7" and flow.src_ip == "10.7.0.30"
