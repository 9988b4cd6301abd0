"""Device-identifying fields the dissectors report for identification: DICOM General Equipment attributes
of a data set, HL7 OBX-3 coding systems; patient values never among them."""

from __future__ import annotations

import struct

from medsentry.protocols import dicom, hl7


def _explicit(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b" "
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def test_dicom_data_set_equipment_attributes() -> None:
    data = b"".join([
        _explicit(0x0008, 0x0060, b"CS", b"CT"),
        _explicit(0x0008, 0x0070, b"LO", b"GE MEDICAL SYSTEMS"),
        _explicit(0x0008, 0x1010, b"SH", b"CT-SCANNER-01"),
        _explicit(0x0008, 0x1090, b"LO", b"Revolution CT"),
        _explicit(0x0010, 0x0010, b"PN", b"DOE^JANE"),
        _explicit(0x0010, 0x0020, b"LO", b"MRN123"),
        _explicit(0x0018, 0x1020, b"LO", b"REV_CT\\24.1.0"),
        _explicit(0x0020, 0x000D, b"UI", b"1.2.3"),
    ])  # fmt: skip
    f = dicom.scan_data_set(data, explicit_vr=True)
    assert f["modality"] == "CT"
    assert f["manufacturer"] == "GE MEDICAL SYSTEMS"
    assert f["station_name"] == "CT-SCANNER-01"
    assert f["manufacturer_model_name"] == "Revolution CT"
    assert f["software_versions"] == "REV_CT 24.1.0"  # multi-valued: backslash-separated values
    assert f["patient_attributes_present"] == ["PatientName", "PatientID"]
    text = repr(f)
    assert "DOE" not in text and "MRN123" not in text


def test_dicom_equipment_text_is_bounded_and_implicit_vr_works() -> None:
    long = b"X" * 200
    data = struct.pack("<HHI", 0x0008, 0x0070, len(long)) + long
    f = dicom.scan_data_set(data, explicit_vr=False)
    assert f["manufacturer"] == "X" * 64


def test_hl7_obx_coding_systems() -> None:
    msg = (
        b"MSH|^~\\&|IVUE_MX450|ICU|HIS|VGH|20260101||ORU^R01|1|P|2.6\r"
        b"PID|1||MRN9^^^VGH||DOE^JANE\r"
        b"OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||72|bpm\r"
        b"OBX|2|NM|8867-4^Heart rate^LN||72|bpm\r"
        b"OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||98|%\r"
        b"OBX|4|NM|local-code\r"
    )
    (m,) = hl7.parse_message(msg)
    assert m.fields["obx_coding_systems"] == ["MDC", "LN"]
    assert "72" not in repr(m.fields["obx_coding_systems"])
    (plain,) = hl7.parse_message(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\r")
    assert "obx_coding_systems" not in plain.fields
