"""DICOM upper layer and DIMSE parsing on real encodings: pynetdicom 3.0.4's test vectors (some made by
DCMTK), from ../shared/data/protocols/dicom-pdus. Patient data in them must never come out as a value."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from medsentry.privacy import phi_hash
from medsentry.protocols import dicom
from medsentry.protocols.base import Malformed, Message

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
# Values inside the vectors that are patient data or credentials
SECRETS = ("Tube", "HeNe", "Test1101", "ANON^A", "pynetdicom", "p4ssw0rd")


@pytest.fixture(scope="module")
def vectors(shared_data: Path) -> dict[str, dict[str, bytes]]:
    path = shared_data / "protocols" / "dicom-pdus" / "dicom-encoded-vectors.json"
    if not path.is_file():
        pytest.skip("pynetdicom's encoded vectors are not in the shared data")
    raw = json.loads(path.read_text())["vectors"]
    return {group: {k: bytes.fromhex(v) for k, v in items.items()} for group, items in raw.items()}


@pytest.fixture(scope="module")
def pdus(vectors: dict[str, dict[str, bytes]]) -> dict[str, bytes]:
    return vectors["encoded_pdu_items"]


def one(pdu: bytes) -> Message:
    msgs = dicom.parse_pdu(pdu)
    assert len(msgs) == 1
    return msgs[0]


def p_data(context: int, *fragments: bytes) -> bytes:
    """A P-DATA-TF PDU with one PDV item per fragment (fragment = message control header + bytes)."""
    items = b"".join(struct.pack("!IB", len(f) + 1, context) + f for f in fragments)
    return struct.pack("!BxI", dicom.P_DATA_TF, len(items)) + items


def no_secrets(msgs: list[Message]) -> None:
    text = repr([(m.kind, m.fields) for m in msgs])
    for secret in SECRETS:
        assert secret not in text


# --- association ------------------------------------------------------------------------------------


def test_associate_rq(pdus: dict[str, bytes]) -> None:
    msg = one(pdus["a_associate_rq"])
    f = msg.fields
    assert msg.kind == "dicom.associate_rq" and msg.from_client
    assert (f["called_ae"], f["calling_ae"], f["protocol_version"]) == ("ANY-SCP", "ECHOSCU", 1)
    assert f["application_context"] == "1.2.840.10008.3.1.1.1"
    assert f["presentation_contexts"] == [
        {"id": 1, "abstract_syntax": VERIFICATION, "transfer_syntaxes": [IMPLICIT_LE]}
    ]
    assert f["abstract_syntaxes"] == [VERIFICATION] and f["transfer_syntaxes"] == [IMPLICIT_LE]
    assert f["max_pdu"] == 16382
    assert f["implementation_class_uid"] == "1.2.826.0.1.3680043.9.3811.0.9.0"
    assert f["implementation_version_name"] == "PYNETDICOM_090"
    assert "user_identity_present" not in f


def test_blank_ae_titles(pdus: dict[str, bytes]) -> None:
    assert one(pdus["a_associate_rq_called"]).fields["called_ae"] == ""
    assert one(pdus["a_associate_rq_calling"]).fields["calling_ae"] == ""


def test_several_presentation_contexts(pdus: dict[str, bytes]) -> None:
    f = one(pdus["a_associate_rq_user_id_ext_neg"]).fields
    assert [c["id"] for c in f["presentation_contexts"]] == [1, 3, 5]
    assert f["abstract_syntaxes"] == [VERIFICATION, "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"]


def test_dcmtk_rq_with_username_and_passcode(pdus: dict[str, bytes]) -> None:
    msg = one(pdus["a_associate_rq_user_id_user_pass"])
    f = msg.fields
    assert f["implementation_version_name"] == "OFFIS_DCMTK_360"
    assert f["user_identity_present"] is True and f["user_identity_type"] == 2  # username and passcode
    assert f["transfer_syntaxes"] == ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", IMPLICIT_LE]
    no_secrets([msg, one(pdus["a_associate_rq_user_async"])])


def test_associate_ac(pdus: dict[str, bytes]) -> None:
    msg = one(pdus["a_associate_ac"])
    f = msg.fields
    assert msg.kind == "dicom.associate_ac"
    assert f["presentation_contexts"] == [{"id": 1, "result": 0, "transfer_syntax": IMPLICIT_LE}]
    assert f["transfer_syntaxes"] == [IMPLICIT_LE] and f["implementation_version_name"] == "OFFIS_DCMTK_360"


def test_associate_ac_rejecting_contexts(pdus: dict[str, bytes]) -> None:
    # context 3 refused (result 3) with an empty transfer syntax item; a refusal without any item
    f = one(pdus["a_associate_ac_zero_ts"]).fields
    assert [(c["id"], c["result"]) for c in f["presentation_contexts"]] == [(1, 0), (3, 3)]
    assert (
        f["transfer_syntaxes"] == ["1.2.840.10008.1.2.1"]
        and f["implementation_version_name"] == "MergeCOM3_390IB2"
    )
    f = one(pdus["a_associate_ac_no_ts"]).fields
    assert f["presentation_contexts"] == [{"id": 1, "result": 3, "transfer_syntax": None}]
    assert f["transfer_syntaxes"] == []


def test_associate_rj(pdus: dict[str, bytes]) -> None:
    msg = one(pdus["a_associate_rj"])
    assert msg.kind == "dicom.associate_rj"
    assert msg.fields == {"result": 1, "source": 1, "reason": 1}  # rejected-permanent, by the service user


@pytest.mark.parametrize(
    ("name", "kind", "fields"),
    [
        ("a_release_rq", "dicom.release_rq", {}),
        ("a_release_rp", "dicom.release_rp", {}),
        ("a_abort", "dicom.abort", {"source": 0, "reason": 0}),
        ("a_p_abort", "dicom.abort", {"source": 2, "reason": 4}),  # provider: invalid PDU parameter
    ],
)
def test_release_and_abort(pdus: dict[str, bytes], name: str, kind: str, fields: dict[str, Any]) -> None:
    msg = one(pdus[name])
    assert (msg.kind, msg.fields) == (kind, fields)


def test_control_pdu_of_wrong_length_is_malformed(pdus: dict[str, bytes]) -> None:
    longer = b"\x05\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00"
    with pytest.raises(Malformed):
        dicom.parse_pdu(longer)
    with pytest.raises(Malformed):
        dicom.StreamParser().feed(b"\x09" + pdus["a_release_rq"][1:], True)  # no PDU type 9


# --- P-DATA-TF and DIMSE -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "command", "fields"),
    [
        ("p_data_tf_rq", "C-ECHO-RQ", {"message_id": 1, "affected_sop_class": VERIFICATION}),
        ("p_data_tf", "C-ECHO-RSP", {"message_id_being_responded_to": 1, "status": 0}),
        ("p_data_tf_n_event_report", "N-EVENT-REPORT-RQ", {"affected_sop_class": "1.2.840.10008.5.1.1.14"}),
    ],
)
def test_p_data_tf_vectors(pdus: dict[str, bytes], name: str, command: str, fields: dict[str, Any]) -> None:
    msg = one(pdus[name])
    assert msg.kind == "dicom.command" and msg.fields["command"] == command
    assert msg.fields.items() >= fields.items()


def _command_vectors(vectors: dict[str, dict[str, bytes]]) -> list[tuple[str, bytes]]:
    return [
        (name, value)
        for group in ("encoded_dimse_msg", "encoded_dimse_n_msg")
        for name, value in vectors[group].items()
        if value[0] & 0x01  # message control header: command set
    ]


_PREFIXES = {"c_": "C-", "n_": "N-"}


def _expected_command(name: str) -> str:
    """c_store_rq_cmd -> C-STORE-RQ, n_er_rsp_cmd -> N-EVENT-REPORT-RSP."""
    base = name.split("_cmd")[0]
    prefix, rest = base[:2], base[2:]
    rest = rest.replace("er_", "event_report_")
    return _PREFIXES[prefix] + rest.upper().replace("_", "-")


def test_every_dimse_command_vector(vectors: dict[str, dict[str, bytes]]) -> None:
    commands = _command_vectors(vectors)
    assert len(commands) >= 25
    for name, value in commands:
        f = dicom.parse_command_set(value[1:])
        assert f["command"] == _expected_command(name), name
        if f["command"].endswith("-RQ"):
            assert f["message_id"] == 7
        else:
            assert f["message_id_being_responded_to"] in (5, 8)
    seen = {dicom.parse_command_set(v[1:])["command"] for _, v in commands}
    assert {"C-STORE-RQ", "C-FIND-RQ", "C-MOVE-RQ", "C-GET-RQ", "C-ECHO-RQ", "N-ACTION-RQ"} <= seen


def test_command_details(vectors: dict[str, dict[str, bytes]]) -> None:
    dimse = vectors["encoded_dimse_msg"]
    store = dicom.parse_command_set(dimse["c_store_rq_cmd"][1:])
    assert store["affected_sop_class"] == "1.1.1" and store["move_originator_ae"] == "UNITTEST"
    assert store["data_set_present"] is True
    move = dicom.parse_command_set(dimse["c_move_rq_cmd"][1:])
    assert move["move_destination"] == "MOVE_SCP"
    pending = dicom.parse_command_set(dimse["c_find_rsp_cmd"][1:])
    assert pending["status"] == 0xFF00  # pending: a match follows
    delete = dicom.parse_command_set(vectors["encoded_dimse_n_msg"]["n_delete_rsp_cmd"][1:])
    assert delete["status"] == 0xC201 and delete["data_set_present"] is False


def test_command_set_without_command_field_is_malformed() -> None:
    with pytest.raises(Malformed):
        dicom.parse_command_set(struct.pack("<HHIH", 0, 0x0110, 2, 7))  # only a Message ID


# --- one association, start to end --------------------------------------------------------------------


def _store_association(pdus: dict[str, bytes], dimse: dict[str, bytes]) -> list[tuple[bytes, bool]]:
    return [
        (pdus["a_associate_rq"], True),
        (pdus["a_associate_ac"], False),
        (p_data(1, dimse["c_store_rq_cmd"]) + p_data(1, dimse["c_store_ds"]), True),
        (p_data(1, dimse["c_store_rsp_cmd"]), False),
        (p_data(1, dimse["c_find_rq_cmd"], dimse["c_find_rq_ds"]), True),
        (p_data(1, dimse["c_find_rsp_cmd"], dimse["c_find_rsp_ds"]), False),
        (pdus["a_release_rq"], True),
        (pdus["a_release_rp"], False),
    ]


def _run(
    units: list[tuple[bytes, bool]], chunk: int | None = None
) -> tuple[list[Message], dicom.StreamParser]:
    parser = dicom.StreamParser()
    out: list[Message] = []
    for data, from_client in units:
        step = chunk or len(data)
        for i in range(0, len(data), step):
            out += parser.feed(data[i : i + step], from_client)
    return out + parser.flush(), parser


def test_association_state_commands_and_patient_flags(
    pdus: dict[str, bytes], vectors: dict[str, dict[str, bytes]]
) -> None:
    msgs, parser = _run(_store_association(pdus, vectors["encoded_dimse_msg"]))
    kinds = [m.kind for m in msgs]
    assert kinds == ["dicom.associate_rq", "dicom.associate_ac"] + ["dicom.command"] * 4 + [
        "dicom.release_rq", "dicom.release_rp"]  # fmt: skip
    assert msgs[1].fields["abstract_syntaxes"] == [VERIFICATION]  # named by the RQ context it accepted
    store, store_rsp, find, find_rsp = (m.fields for m in msgs[2:6])
    assert store["command"] == "C-STORE-RQ" and msgs[2].from_client
    assert store["patient_attributes_present"] == ["PatientName", "PatientID"]
    assert store["patient_id_hash"] == phi_hash(b"Test1101")
    assert store_rsp["command"] == "C-STORE-RSP" and not msgs[3].from_client
    assert "patient_attributes_present" not in store_rsp  # no data set follows a C-STORE-RSP
    assert find["command"] == "C-FIND-RQ" and find["patient_attributes_present"] == ["PatientID"]
    assert find["patient_id_hash"] == phi_hash(b"*")  # a wildcard query key
    assert find_rsp["status"] == 0xFF00 and find_rsp["patient_attributes_present"] == ["PatientName"]
    assert parser.state == dicom.RELEASED
    no_secrets(msgs)


def test_byte_by_byte_delivery_gives_the_same_messages(
    pdus: dict[str, bytes], vectors: dict[str, dict[str, bytes]]
) -> None:
    units = _store_association(pdus, vectors["encoded_dimse_msg"])
    whole, _ = _run(units)
    assert _run(units, chunk=1)[0] == whole
    assert _run(units, chunk=7)[0] == whole


def test_skipping_what_the_parser_ignores_gives_the_same_messages(
    pdus: dict[str, bytes], vectors: dict[str, dict[str, bytes]]
) -> None:
    """The pipeline moves bytes a direction `ignores` on with `skip` instead of feeding them."""
    big = vectors["encoded_dimse_msg"]["c_store_ds"] + bytes(40_000)  # longer than the scan limit
    units = _store_association(pdus, dict(vectors["encoded_dimse_msg"], c_store_ds=big))
    whole, _ = _run(units, chunk=100)
    parser = dicom.StreamParser()
    out: list[Message] = []
    skipped = 0
    for data, from_client in units:
        for i in range(0, len(data), 100):
            chunk = data[i : i + 100]
            if len(chunk) <= parser.ignores(from_client):
                parser.skip(from_client, len(chunk))
                skipped += 1
            else:
                out += parser.feed(chunk, from_client)
    assert skipped >= 40 and out + parser.flush() == whole


def test_explicit_vr_data_set_after_negotiation(
    pdus: dict[str, bytes], vectors: dict[str, dict[str, bytes]]
) -> None:
    """An association accepting Explicit VR Little Endian: the data set is read with that syntax."""
    explicit = b"".join(  # (0010,0010) PN "DOE^JANE", (0010,0020) LO "ID-42", (0008,0070) LO "ACME"
        struct.pack("<HH2sH", g, e, vr, len(v)) + v
        for g, e, vr, v in [(0x0008, 0x0070, b"LO", b"ACME"), (0x0010, 0x0010, b"PN", b"DOE^JANE"),
                            (0x0010, 0x0020, b"LO", b"ID-42 ")]
    )  # fmt: skip
    units = [
        (pdus["a_associate_rq_role"], True),
        (pdus["a_associate_ac_zero_ts"], False),  # context 1 accepted with Explicit VR Little Endian
        (p_data(1, vectors["encoded_dimse_msg"]["c_store_rq_cmd"], b"\x02" + explicit), True),
    ]
    msgs, _ = _run(units)
    store = msgs[-1].fields
    assert store["manufacturer"] == "ACME"
    assert store["patient_attributes_present"] == ["PatientName", "PatientID"]
    assert store["patient_id_hash"] == phi_hash(b"ID-42")
    assert "DOE" not in repr(msgs) and "ID-42" not in repr(msgs)


def test_command_waiting_for_its_data_set_is_released_at_the_end(
    vectors: dict[str, dict[str, bytes]],
) -> None:
    parser = dicom.StreamParser()
    assert parser.feed(p_data(1, vectors["encoded_dimse_msg"]["c_store_rq_cmd"]), True) == []
    (msg,) = parser.flush()
    assert msg.fields["command"] == "C-STORE-RQ" and "patient_attributes_present" not in msg.fields
    assert parser.state == dicom.ASSOCIATED  # picked up after the association: P-DATA implies it


def test_looks_like(pdus: dict[str, bytes]) -> None:
    assert dicom.looks_like(pdus["a_associate_rq"])
    assert not dicom.looks_like(pdus["a_associate_ac"])
    assert not dicom.looks_like(pdus["a_release_rq"])
    assert not dicom.looks_like(b"GET / HTTP/1.1\r\n")


# --- against Wireshark on the virtual hospital ------------------------------------------------------------


@pytest.mark.parametrize("capture", ["general-hospital-normal-60s.pcap", "general-hospital-60s.pcap"])
def test_every_dimse_command_of_every_association_as_wireshark_reads_them(
    shared_data: Path, capture: str
) -> None:
    """Associations carry images of megabytes: every command in them is read (the bytes of data sets are
    walked past, not budgeted), as many per connection as Wireshark's DICOM dissector finds. (Before:
    227 of 302 in the normal capture, the rest past a 64 KiB budget or lost to reordering.)"""
    import shutil
    import subprocess
    from collections import Counter

    from medsentry.pipeline import observe_files

    path = shared_data / "captures" / "virtual-hospital" / capture
    if not path.is_file() or shutil.which("tshark") is None:
        pytest.skip("virtual-hospital capture or tshark missing")
    # The capture reorders segments up to ~20 KiB (two queues interleaved): Wireshark must reassemble
    # out of order too, or it loses commands (5 of 302 here) that medsentry reads.
    out = subprocess.run(["tshark", "-r", str(path), "-o", "tcp.reassemble_out_of_order:TRUE",
                          "-d", "tcp.port==11112,dicom", "-Y", "dicom", "-T", "fields",
                          "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "dicom.pdv.flags"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    theirs: Counter[int] = Counter()
    for line in out.splitlines():
        sport, dport, flags = line.split("\t")
        client = int(dport) if int(sport) == 11112 else int(sport)
        # a PDV whose message control header says: command, last fragment
        theirs[client] += sum(int(f, 16) & 0x03 == 0x03 for f in flags.split(",") if f)
    observations, _ = observe_files([path])
    commands = [o for o in observations if o.kind == "dicom.command"]
    ours = Counter(o.sport if o.dport == 11112 else o.dport for o in commands)
    assert +theirs == ours and sum(ours.values()) > 250
    stores = [o for o in observations if o.kind == "dicom.command" and o.fields["command"] == "C-STORE-RQ"]
    assert all(o.fields.get("patient_attributes_present") for o in stores)  # each image's data set scanned


def _item(itype: int, value: bytes) -> bytes:
    return struct.pack("!BxH", itype, len(value)) + value


def _associate(ptype: int, context: bytes) -> bytes:
    body = struct.pack("!H2x16s16s32x", 1, b"PACS".ljust(16), b"MODALITY".ljust(16))
    user_information = _item(0x50, _item(0x51, struct.pack("!I", 16384)))
    body += _item(0x10, b"1.2.840.10008.3.1.1.1") + context + user_information
    return struct.pack("!BxI", ptype, len(body)) + body


def test_repeated_associate_pdus_keep_each_associations_own_fields() -> None:
    """The AC is the same bytes in both associations (remembered after the first): what it accepted comes
    from each association's own RQ, and the first association's message is not changed by the second."""
    implicit_le = _item(0x40, b"1.2.840.10008.1.2")
    ac = _associate(0x02, _item(0x21, bytes([1, 0, 0, 0]) + implicit_le))
    accepted = []
    for abstract in (b"1.2.840.10008.5.1.4.1.1.2", b"1.2.840.10008.5.1.4.1.1.4"):  # CT, then MR storage
        rq = _associate(0x01, _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, abstract) + implicit_le))
        parser = dicom.StreamParser()
        (rq_msg,) = parser.feed(rq, True)
        (ac_msg,) = parser.feed(ac, False)
        assert rq_msg.kind == "dicom.associate_rq" and ac_msg.kind == "dicom.associate_ac"
        assert ac_msg.fields["calling_ae"] == "MODALITY" and ac_msg.fields["max_pdu"] == 16384
        accepted.append(ac_msg)
    assert [m.fields["abstract_syntaxes"] for m in accepted] == [
        ["1.2.840.10008.5.1.4.1.1.2"],
        ["1.2.840.10008.5.1.4.1.1.4"],
    ]
