"""C's walk over DICOM data sets (`_fastpath.walk_run`, `FlowTable.arm_pdata`) against the Python parser:
what C consumes is exactly what `feed` would only have skipped, and the parser goes on where C left it,
so an association gives the same commands however its segments and batches fall."""

from __future__ import annotations

import copy
import random
import struct
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.capture import _fastpath
from medsentry.capture.records import Batch
from medsentry.decode.flows import ACK, SYN
from medsentry.pipeline import Analyzer
from medsentry.protocols import dicom
from medsentry.protocols.base import Malformed, Message
from tests.decode.test_flows import pcap_records, records, tcp, write_pcap

PSH = 0x08

CT_IMAGE_STORAGE = b"1.2.840.10008.5.1.4.1.1.2\x00"


def _row(length: int, seq: int) -> np.ndarray:
    """One segment at the start of the buffer, as the flow table gives rows to `walk_run`."""
    return np.array([[0, 0, length, seq, 0]], dtype=np.int64)


def element(group: int, elem: int, value: bytes) -> bytes:
    """Implicit VR little endian (PS3.5 7.1.3), padded to even length."""
    value += b"\x00" * (len(value) % 2)
    return struct.pack("<HHI", group, elem, len(value)) + value


def command(field: int, message_id: int) -> bytes:
    body = (element(0, 0x0002, CT_IMAGE_STORAGE) + element(0, 0x0100, struct.pack("<H", field))
            + element(0, 0x0110, struct.pack("<H", message_id)) + element(0, 0x0800, b"\x00\x00")
            + element(0, 0x1000, b"1.2.3.%d" % message_id))  # fmt: skip
    return element(0, 0x0000, struct.pack("<I", len(body))) + body


def data_set(pixels: int, unit: int) -> bytes:
    return (element(0x0008, 0x0060, b"CT") + element(0x0008, 0x0070, b"ACME Medical")
            + element(0x0010, 0x0010, b"DOE^JANE") + element(0x0010, 0x0020, b"ID-%d" % unit)
            + element(0x0018, 0x1020, b"V4.2") + element(0x0020, 0x000D, b"1.2.3")
            + element(0x7FE0, 0x0010, bytes(range(256)) * (pixels // 256)))  # fmt: skip


def p_data(value: bytes, is_command: bool, max_pdv: int) -> bytes:
    """`value` as P-DATA-TF PDUs of one PDV each, fragments of at most max_pdv bytes (PS3.8 9.3.5.1)."""
    out = b""
    for i in range(0, max(len(value), 1), max_pdv):
        part = value[i : i + max_pdv]
        control = int(is_command) | (2 if i + max_pdv >= len(value) else 0)
        item = struct.pack("!IBB", len(part) + 2, 1, control) + part
        out += struct.pack("!BxI", dicom.P_DATA_TF, len(item)) + item
    return out


def stores(images: list[int], max_pdv: int) -> bytes:
    """A client's C-STOREs: each a command, then an image of that many pixel bytes."""
    return b"".join(p_data(command(0x0001, n + 1), True, max_pdv) + p_data(data_set(px, n), False, max_pdv)
                    for n, px in enumerate(images))  # fmt: skip


def associate_rq() -> bytes:
    """A-ASSOCIATE-RQ (PS3.8 9.3.2): one presentation context, CT Image Storage in implicit VR LE."""

    def item(kind: int, value: bytes) -> bytes:
        return struct.pack("!BxH", kind, len(value)) + value

    syntaxes = item(0x30, CT_IMAGE_STORAGE[:-1]) + item(0x40, b"1.2.840.10008.1.2")
    context = item(0x20, b"\x01\x00\x00\x00" + syntaxes)
    body = (struct.pack("!HH", 1, 0) + b"PACS".ljust(16) + b"CT01".ljust(16) + bytes(32)
            + item(0x10, b"1.2.840.10008.3.1.1.1") + context
            + item(0x50, item(0x51, struct.pack("!I", 16_384))))
    return struct.pack("!BxI", dicom.A_ASSOCIATE_RQ, len(body)) + body


def fed_whole(stream: bytes) -> list[Message]:
    parser = dicom.StreamParser()
    return parser.feed(stream, True) + parser.flush()


def fed_walking(stream: bytes, cuts: list[int]) -> tuple[list[Message], int]:
    """As the pipeline does: a segment goes to C when the parser allows a walk and C can take it whole,
    else to `feed`. Returns the messages and the bytes C took."""
    parser, out, walked, seq = dicom.StreamParser(), [], 0, 1000
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        segment = stream[a:b]
        if not segment:
            continue
        state = parser.pdata_state(True)
        if state is not None:
            walk = (seq, *state)
            side, _, _, stop = _fastpath.walk_run(segment, _row(len(segment), seq), 0, walk, None)
            if stop == 1:
                parser.pdata_resume(True, side[1], side[2])
                walked += len(segment)
                seq += len(segment)
                continue
        out += parser.feed(segment, True)
        seq += len(segment)
    return out + parser.flush(), walked


def commands(msgs: list[Message]) -> list[tuple[str, dict]]:
    return [(m.kind, m.fields) for m in msgs]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30_000), min_size=1, max_size=4), st.integers(200, 20_000), st.randoms())
def test_walking_gives_the_commands_feeding_gives(
    images: list[int], max_pdv: int, rng: random.Random
) -> None:
    stream = stores(images, max_pdv)
    cuts = sorted(rng.sample(range(1, len(stream)), min(len(stream) - 1, len(stream) // 700 + 1)))
    whole = fed_whole(stream)
    walked_msgs, _ = fed_walking(stream, cuts)
    assert commands(walked_msgs) == commands(whole)
    assert [f["command"] for k, f in commands(whole) if k == "dicom.command"] == ["C-STORE-RQ"] * len(images)
    assert all(f["manufacturer"] == "ACME Medical" and f["patient_attributes_present"] == ["PatientName",
               "PatientID"] for _, f in commands(whole))  # fmt: skip


def test_most_of_an_image_transfer_is_walked_in_c() -> None:
    stream = stores([200_000, 150_000], 16_372)  # pynetdicom's default maximum PDU length
    cuts = list(range(1448, len(stream), 1448))
    msgs, walked = fed_walking(stream, cuts)
    assert commands(msgs) == commands(fed_whole(stream)) and len(msgs) == 2
    assert walked > 0.9 * len(stream)


_HEADERS = st.one_of(
    st.builds(lambda n, c: struct.pack("!IBB", n, 1, c), st.integers(0, 70_000), st.integers(0, 3)),
    st.builds(lambda t, n: struct.pack("!BxI", t, n), st.sampled_from([4, 4, 4, 5, 7]),
              st.integers(0, 70_000)),
    st.binary(min_size=1, max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 3000), st.integers(0, 3000), st.lists(_HEADERS, max_size=6), st.integers(0, 200))
def test_what_c_takes_feed_would_only_skip(skip: int, pdu_left: int, parts: list[bytes], tail: int) -> None:
    """From any state a walk may start at, a segment C consumes leaves the parser nothing to say and in
    the state C reports; a segment C refuses is left to `feed` (state untouched)."""
    parser = dicom.StreamParser()
    parser.feed(struct.pack("!BxI", dicom.P_DATA_TF, 0), True)  # associated, between PDUs
    parser.pdata_resume(True, skip, pdu_left)
    assert parser.pdata_state(True) == (skip, pdu_left)
    segment = bytes(skip % 500) + b"".join(parts) + bytes(tail)
    if not segment:
        return
    walk = (7, skip, pdu_left)
    side, _, _, stop = _fastpath.walk_run(segment, _row(len(segment), 7), 0, walk, None)
    fed = copy.deepcopy(parser)
    try:
        msgs = fed.feed(segment, True)
    except Malformed:
        msgs = None
    if stop == 1:
        assert msgs == [] and fed.pdata_state(True) == (side[1], side[2]) and side[0] == 7 + len(segment)
    else:
        assert side == (7, skip, pdu_left)  # refused: nothing moved


def test_a_pdata_side_is_walked_across_batches() -> None:
    """The flow table walks an armed DICOM side in later batches; results equal one batch's."""
    client, server = ("10.9.0.5", 40100), ("10.9.0.10", 11112)
    stream = associate_rq() + stores([120_000, 90_000, 60_000], 16_372)
    frames = [(1.0, tcp(client, server, SYN, 999)), (1.0, tcp(server, client, SYN | ACK, 4999))]
    seq = 1000
    for i in range(0, len(stream), 1448):
        part = stream[i : i + 1448]
        frames.append((1.0 + i / 1e6, tcp(client, server, PSH | ACK, seq, part)))
        seq += len(part)
    recs, buf = records(frames), memoryview(pcap_records(frames))

    def observe(batch_sizes: random.Random | None) -> tuple[list[dict], int]:
        out: list = []
        analyzer = Analyzer(out.append)
        fed = 0
        original = dicom.StreamParser.feed

        def counting(self: dicom.StreamParser, data: bytes, from_client: bool) -> list[Message]:
            nonlocal fed
            fed += 1
            return original(self, data, from_client)

        dicom.StreamParser.feed = counting  # type: ignore[method-assign]
        try:
            pos = 0
            while pos < len(recs):
                n = batch_sizes.randrange(1, 40) if batch_sizes else len(recs)
                analyzer.feed(Batch(buf, recs[pos : pos + n], "walk"))
                pos += n
            analyzer.finish()
        finally:
            dicom.StreamParser.feed = original  # type: ignore[method-assign]
        return [o.fields for o in out if o.kind == "dicom.command"], fed

    one_batch, fed_one = observe(None)
    many, fed_many = observe(random.Random(5))
    assert [f["message_id"] for f in one_batch] == [1, 2, 3] and many == one_batch
    segments = len(frames) - 2
    assert fed_one < segments / 5 and fed_many < segments / 5  # the rest walked in C


def test_an_association_picked_up_mid_image_is_read_on(tmp_path: Path) -> None:
    """A sensor started during a long C-STORE series: the segments first seen are pixel data; the next
    P-DATA-TF header is found (`dicom.mid_stream`, `StreamParser.join`) and the following commands read,
    as many as the whole association has after that point."""
    from medsentry.pipeline import observe_files

    modality, pacs = ("10.9.0.7", 40300), ("10.9.0.10", 11112)
    stream = stores([300_000, 200_000, 100_000, 50_000], 16_372)
    joined_at = 100_000  # inside the first image
    rsp = p_data(command(0x8001, 1), True, 16_372)
    frames, seq, rseq = [], 50_000, 9000
    for i in range(joined_at, len(stream), 1448):
        part = stream[i : i + 1448]
        frames.append(tcp(modality, pacs, PSH | ACK, seq, part))
        seq += len(part)
        if len(frames) % 100 == 0:  # the PACS answers now and then
            frames.append(tcp(pacs, modality, PSH | ACK, rseq, rsp))
            rseq += len(rsp)
    observations, stats = observe_files([write_pcap(tmp_path / "joined.pcap", frames, step=0.001)])
    stores_seen = [o.fields["message_id"] for o in observations
                   if o.kind == "dicom.command" and o.fields["command"] == "C-STORE-RQ"]  # fmt: skip
    assert stores_seen == [2, 3, 4] and not stats.malformed_by_protocol
    assert all(o.fields["manufacturer"] == "ACME Medical" for o in observations
               if o.kind == "dicom.command" and o.src_ip == "10.9.0.7")  # fmt: skip
    [flow] = [o for o in observations if o.kind == "flow"]
    assert flow.fields["app"] == "dicom"


def test_pixel_data_is_not_taken_for_a_pdu() -> None:
    """Segments of CT-like pixel data (12-bit values, little endian: full of 04 00 and small bytes) each
    alone: `_resync` points only at real PDU starts. (On the virtual hospital's ~19,000 client segments
    per capture: 1,850 real PDU starts found, none false.)"""
    from medsentry.protocols.dicom import _resync

    rng = random.Random(3)
    pixels = b"".join(struct.pack("<H", min(4095, max(0, int(rng.gauss(1024, 300))))) for _ in range(300_000))
    stream = p_data(command(0x0001, 1), True, 16_372) + p_data(data_set(0, 1) + pixels, False, 16_372)
    assert stream.count(b"\x04\x00") > 400
    starts, pos = set(), 0
    while pos < len(stream):
        starts.add(pos)
        pos += 6 + struct.unpack_from("!I", stream, pos + 2)[0]
    found = 0
    for i in range(0, len(stream), 1448):
        at = _resync(stream[i : i + 1448])
        assert at is None or i + at in starts
        found += at is not None
    assert found >= 30  # one segment in about eleven holds a PDU start


def test_a_command_whose_data_set_never_came_is_reported_when_the_connection_ends(tmp_path: Path) -> None:
    """An association aborted (or the capture ended) between a C-STORE-RQ and its image: the parser held
    the command for its data set; the flow's end releases it (before, it was lost)."""
    from medsentry.decode.flows import RST
    from medsentry.pipeline import observe_files

    modality, pacs = ("10.9.0.8", 40400), ("10.9.0.10", 11112)
    stream = associate_rq() + p_data(command(0x0001, 7), True, 16_372)
    frames = [tcp(modality, pacs, SYN, 99), tcp(pacs, modality, SYN | ACK, 499),
              tcp(modality, pacs, ACK, 100), tcp(modality, pacs, PSH | ACK, 100, stream),
              tcp(modality, pacs, RST | ACK, 100 + len(stream))]  # fmt: skip
    observations, _ = observe_files([write_pcap(tmp_path / "aborted.pcap", frames)])
    [store] = [o for o in observations if o.kind == "dicom.command"]
    assert store.fields["command"] == "C-STORE-RQ" and store.fields["message_id"] == 7
    assert store.src_ip == "10.9.0.8" and store.dst_ip == "10.9.0.10" and store.dport == 11112
    kinds = [o.kind for o in observations if o.protocol in ("dicom", "flow")]
    assert kinds.index("dicom.command") < kinds.index("flow")  # released before the flow's own record
