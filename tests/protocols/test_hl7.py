"""HL7 v2 / MLLP parsing on real messages: python-hl7's samples (../shared/data/protocols/hl7-messages) and
nDPI's hl7.pcap (an ADT^A01 with PID / NK1 / AL1 over MLLP, and its ACK) through the whole pipeline.
Patient values must never come out: only segment and field names, flags and salted hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.pipeline import observe_files
from medsentry.privacy import phi_hash
from medsentry.protocols import hl7
from medsentry.protocols.base import Malformed, Message

# Patient values of the samples and of hl7.pcap
SAMPLE_PHI = ("EVERYWOMAN", "555-44-4444", "FERNWOOD", "196203520", "3345232", "AC555444444", "JONES")
PCAP_PHI = ("MOUSE", "MICKEY", "MINNIE", "135769", "19281118", "Main St", "939-5555", "ohtoodles",
            "Lake Buena", "999999999", "Penicillin", "Cat dander", "WIFE")  # fmt: skip


@pytest.fixture(scope="module")
def samples(shared_data: Path) -> dict[str, bytes]:
    path = shared_data / "protocols" / "hl7-messages" / "hl7-sample-messages.json"
    if not path.is_file():
        pytest.skip("python-hl7's samples are not in the shared data")
    return {k: v.encode("latin-1") for k, v in json.loads(path.read_text())["messages"].items()}


def mllp(message: bytes) -> bytes:
    return hl7.START_BLOCK + message + hl7.END_BLOCK


def assert_no_phi(msgs: list[Message] | list[object], values: tuple[str, ...]) -> None:
    text = repr(msgs)
    leaked = [v for v in values if v in text]
    assert not leaked, leaked


def test_oru_header_segments_and_patient_flags(samples: dict[str, bytes]) -> None:
    (msg,) = hl7.parse_message(samples["sample_hl7"])
    f = msg.fields
    assert msg.kind == "hl7.message" and f["malformed"] is False
    assert (f["sending_application"], f["sending_facility"]) == ("GHH LAB", "ELAB-3")
    assert (f["receiving_application"], f["receiving_facility"]) == ("GHH OE", "BLDG4")
    assert (f["message_type"], f["trigger_event"], f["control_id"]) == ("ORU", "R01", "CNTRL-3456")
    assert (f["processing_id"], f["version"]) == ("P", "2.4")
    assert f["segments"] == ["MSH", "PID", "OBR", "OBX"] and f["segment_count"] == 5
    assert f["phi_segments"] == ["PID"]
    assert {"PID-3", "PID-5", "PID-7", "PID-11", "PID-13"} <= set(f["phi_fields_present"])
    assert f["patient_id_hash"] == phi_hash("555-44-4444")
    assert_no_phi([msg], SAMPLE_PHI)


def test_patient_id_is_first_component_of_first_repetition(samples: dict[str, bytes]) -> None:
    (msg,) = hl7.parse_message(samples["sample_msh"])
    f = msg.fields
    assert f["patient_id_hash"] == phi_hash("2148790")  # PID-3 = 2148790^^^MSH_MRN^MR~162840^^^...
    assert f["phi_segments"] == ["PID", "PV1", "DG1", "IN1", "IN2"]
    assert (f["message_type"], f["trigger_event"], f["version"]) == ("ADT", "A01", "2.3")


def test_batch_and_file_envelopes(samples: dict[str, bytes]) -> None:
    batch = hl7.parse_message(samples["sample_batch1"])
    assert [m.fields["control_id"] for m in batch] == ["12334456778890", "12334456778891"]
    assert all(m.fields["segments"] == ["MSH", "EVN", "PID", "PD1", "NK1", "PV1"] for m in batch)
    assert all(m.fields["phi_segments"] == ["PID", "PD1", "NK1", "PV1"] for m in batch)
    assert len(hl7.parse_message(samples["sample_file1"])) == 3
    assert not any(m.fields["malformed"] for name in ("sample_batch", "sample_file", "sample_file6")
                   for m in hl7.parse_message(samples[name]))  # fmt: skip


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("sample_bad_batch", "no MSH segment"),
        ("sample_bad_file", "no MSH segment"),
        ("sample_bad_file3", "no MSH segment"),
        ("sample_bad_batch1", "batch or file header inside the message"),
        ("sample_bad_file1", "batch or file header inside the message"),
    ],
)
def test_deliberately_malformed_samples(samples: dict[str, bytes], name: str, reason: str) -> None:
    msgs = hl7.parse_message(samples[name])
    assert any(m.fields["malformed"] and m.fields["malformed_reason"] == reason for m in msgs)


def test_every_sample_parses_without_leaking(samples: dict[str, bytes]) -> None:
    msgs = [m for raw in samples.values() for m in hl7.parse_message(raw)]
    assert len(msgs) >= len(samples)
    assert_no_phi(msgs, (*SAMPLE_PHI, "XXXXXXXXXX", "0000112234", "10131113", "RICHMOND"))


@pytest.mark.parametrize("code", ["AA", "AE", "AR", "CA", "CE", "CR"])
def test_ack_codes(code: str) -> None:
    raw = f"MSH|^~\\&|LIS|LAB|HIS|WARD|20240101||ACK^A01|ACK-9|P|2.5\rMSA|{code}|MSG-1|text\r".encode()
    (msg,) = hl7.parse_message(raw)
    assert msg.kind == "hl7.ack"
    assert (msg.fields["ack_code"], msg.fields["control_id"]) == (code, "MSG-1")  # the id acknowledged


def test_msa_in_a_non_ack_message_is_not_an_ack() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|2024||RSP^K22|Q-1|P|2.5\rMSA|AA|Q-0\rQAK|1|OK\r"
    (msg,) = hl7.parse_message(raw)
    assert msg.kind == "hl7.message" and msg.fields["ack_code"] == "AA" and msg.fields["control_id"] == "Q-1"


def test_text_cut_by_a_line_break_is_not_reported_as_a_segment_id() -> None:
    # A stray LF inside PID-11 starts a "segment" made of the rest of the address.
    raw = (
        b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.3\r"
        b"PID|1||77||DOE^JOHN||19600101|M|||12 Elm\nSt Springfield|\r"
    )
    (msg,) = hl7.parse_message(raw)
    assert msg.fields["malformed"] and msg.fields["malformed_reason"] == "invalid segment id"
    assert msg.fields["segments"] == ["MSH", "PID", hl7.INVALID_SEGMENT]
    assert_no_phi([msg], ("Springfield", "DOE", "JOHN", "Elm", "19600101"))


def test_mllp_stream_split_anywhere(samples: dict[str, bytes]) -> None:
    stream = mllp(samples["sample_hl7"]) + mllp(samples["sample_msh"])
    whole = hl7.StreamParser().feed(stream, True)
    assert [m.fields["control_id"] for m in whole] == ["CNTRL-3456", "Q150084616T145947960"]
    for step in (1, 5, 64):
        parser = hl7.StreamParser()
        got = [m for i in range(0, len(stream), step) for m in parser.feed(stream[i : i + step], True)]
        assert got == whole


def test_bytes_outside_mllp_blocks_are_malformed() -> None:
    with pytest.raises(Malformed):
        hl7.StreamParser().feed(b"MSH|^~\\&|no framing\r", True)


# --- nDPI's hl7.pcap through the pipeline --------------------------------------------------------------


@pytest.fixture(scope="module")
def pcap_observations(shared_data: Path) -> list[object]:
    pcap = shared_data / "captures" / "ndpi" / "cfgs" / "default" / "pcap" / "hl7.pcap"
    if not pcap.is_file():
        pytest.skip("nDPI's hl7.pcap is not in the shared data")
    observations, stats = observe_files([pcap])
    assert not stats.malformed_by_protocol
    return observations


def test_adt_and_its_ack_from_the_capture(pcap_observations: list) -> None:
    hl7_obs = [o for o in pcap_observations if o.protocol == "hl7"]
    assert [o.kind for o in hl7_obs] == ["hl7.message", "hl7.ack"]
    adt, ack = hl7_obs
    assert (adt.src_ip, adt.dport, ack.sport) == ("10.0.0.155", 6661, 6661)
    f = adt.fields
    assert (f["message_type"], f["trigger_event"], f["version"]) == ("ADT", "A01", "2.3")
    assert (f["sending_application"], f["receiving_facility"]) == (
        "SENDING_APPLICATION",
        "RECEIVING_FACILITY",
    )
    assert f["segments"] == ["MSH", "EVN", "PID", "NK1", "PV1", "AL1"] and f["segment_count"] == 7
    assert f["phi_segments"] == ["PID", "NK1", "PV1", "AL1"]
    assert {"PID-3", "PID-5", "PID-7", "PID-11", "PID-13", "PID-19", "NK1-2"} <= set(f["phi_fields_present"])
    assert f["patient_id_hash"] == phi_hash("135769")
    assert (
        ack.fields["ack_code"] == "AA"
        and ack.fields["control_id"] == f["control_id"] == "934576120110613083617"
    )
    flow = next(o for o in pcap_observations if o.kind == "flow" and o.fields["server_port"] == 6661)
    assert flow.fields["app"] == "hl7"


def test_no_patient_value_in_any_observation(pcap_observations: list) -> None:
    assert pcap_observations
    assert_no_phi(pcap_observations, PCAP_PHI)


@settings(max_examples=3000, deadline=None)
@given(st.text(st.sampled_from(list("|shbaSHBAxm \t\r\n\x0b\x1c\x85\xa0")), max_size=16))
def test_the_pipe_to_shell_prefilter_never_hides_a_match(text: str) -> None:
    """The regex runs only where `_may_pipe_to_shell` says it can match: it must never say no to a match."""
    if hl7._PIPE_SHELL.search(text):
        assert hl7._may_pipe_to_shell(text.lower())
    assert ("shell_metacharacters" in hl7._suspicious(text)) == bool(hl7._SUSPICIOUS.search(text) and any(
        m.lastgroup == "shell_metacharacters" for m in hl7._SUSPICIOUS.finditer(text)))
