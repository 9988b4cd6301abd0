from __future__ import annotations

import contextlib
import itertools
import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.privacy import phi_hash
from medsentry.protocols import rtsp
from medsentry.protocols.base import Malformed, Message
from tests.protocols.test_peers_suricata_tls_ftp import conversations

SDP = b"v=0\r\no=- 0 0 IN IP4 10.77.0.140\r\ns=Session streamed with GStreamer\r\nm=video 0 RTP/AVP 96\r\n"
CLIENT = (
    b"OPTIONS rtsp://viewer:viewer123@10.77.0.140/axis-media/media.amp?resolution=640x480 RTSP/1.0\r\n"
    b"CSeq: 1\r\nUser-Agent: LibVLC/3.0.16 (LIVE555 Streaming Media v2016.11.28)\r\n\r\n"
    b"DESCRIBE rtsp://10.77.0.140/axis-media/media.amp RTSP/1.0\r\nCSeq: 2\r\n"
    b"Authorization: Basic dmlld2VyOnZpZXdlcjEyMw==\r\n\r\n"
    b"PLAY rtsp://10.77.0.140/axis-media/media.amp RTSP/1.0\r\nCSeq: 3\r\n\r\n"
    b"$\x01\x00\x08RTCPRTCP"  # an interleaved RTCP receiver report
    b"GET_PARAMETER rtsp://10.77.0.140/axis-media/media.amp RTSP/1.0\r\nCSeq: 4\r\n\r\n"
)
SERVER = (
    b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nServer: GStreamer RTSP Server\r\n"
    b"Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n\r\n"
    b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\nContent-Length: "
    + str(len(SDP)).encode() + b"\r\n\r\n" + SDP +
    b"RTSP/1.0 200 OK\r\nCSeq: 3\r\n\r\n"
    + b"$\x00\x05\xdc" + bytes(1500) + b"$\x00\x00\x10" + b"RTSP/1.0 200 OK\r\n" + b"\r\n" * 3
    + b"ANNOUNCE rtsp://10.77.0.140/axis-media/media.amp RTSP/1.0\r\nCSeq: 9\r\n\r\n"
    b"RTSP/1.0 200 OK\r\nCSeq: 4\r\n\r\n"
)


def run(parser: rtsp.StreamParser, client: bytes, server: bytes) -> list[Message]:
    return parser.feed(client, True) + parser.feed(server, False)


def test_requests_and_responses() -> None:
    messages = run(rtsp.StreamParser(), CLIENT, SERVER)
    assert [(m.kind, m.from_client) for m in messages] == [
        ("rtsp.request", True)] * 4 + [("rtsp.response", False)] * 3 + [
        ("rtsp.request", False), ("rtsp.response", False)]
    options, describe = messages[0].fields, messages[1].fields
    assert options == {"method": "OPTIONS", "url": "rtsp://10.77.0.140/axis-media/media.amp",
                       "version": "RTSP/1.0", "query_keys": ["resolution"],
                       "user_agent": "LibVLC/3.0.16 (LIVE555 Streaming Media v2016.11.28)"}
    assert describe["basic_auth_user_hash"] == phi_hash("viewer")
    assert messages[4].fields["server"] == "GStreamer RTSP Server"
    assert messages[4].fields["public"] == "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN"
    assert messages[5].fields["content_type"] == "application/sdp"
    assert messages[7].fields["method"] == "ANNOUNCE"  # a request from the server
    assert "viewer" not in json.dumps([m.fields for m in messages])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=15))
def test_any_segmentation_gives_the_same_messages(cuts: list[int]) -> None:
    parser, got = rtsp.StreamParser(), []
    for data, from_client in ((CLIENT, True), (SERVER, False)):
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        for a, b in itertools.pairwise(points):
            got += parser.feed(data[a:b], from_client)
    assert got == run(rtsp.StreamParser(), CLIENT, SERVER)


def test_looks_like() -> None:
    assert rtsp.looks_like(CLIENT)
    assert not rtsp.looks_like(b"GET / HTTP/1.1\r\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_fuzz(data: bytes, from_client: bool) -> None:
    for prefix in (b"", b"RTSP/1.0 200 OK\r\n", b"$"):
        with contextlib.suppress(Malformed):
            rtsp.StreamParser().feed(prefix + data, from_client)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated(data: st.DataObject) -> None:
    stream = bytearray(data.draw(st.sampled_from([CLIENT, SERVER])))
    for _ in range(data.draw(st.integers(1, 6))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.sampled_from(b"$\r\n 0:\xff"))
    with contextlib.suppress(Malformed):
        rtsp.StreamParser().feed(bytes(stream), data.draw(st.booleans()))


def test_virtual_hospital_camera(shared_data: Path) -> None:
    """cam1 (labelled rtsp path /axis-media/media.amp) is asked by the workstation's browser."""
    pcap = shared_data / "captures/virtual-hospital/general-hospital-normal-60s.pcap"
    labels = [json.loads(line) for line in Path(f"{pcap}.labels.jsonl").read_text().splitlines()]
    cam = next(d for d in labels if d.get("name") == "cam1")
    convs = conversations(pcap, rtsp.StreamParser, ports=rtsp.TCP_PORTS)
    requests = [m.fields for c in convs for m in c.messages if m.kind == "rtsp.request"]
    assert requests and all(c.malformed == 0 and c.server[0] == cam["ip"] for c in convs)
    assert {r["url"] for r in requests} == {f"rtsp://{cam['ip']}{cam['protocols']['rtsp']['path']}"}
    assert any(m.kind == "rtsp.response" for c in convs for m in c.messages)


def test_user_agent_agrees_with_ndpi(shared_data: Path) -> None:
    root = shared_data / "captures/ndpi/cfgs/default"
    expected = re.findall(r"TCP \S+:(\d+) <-> \S+ \[proto: 50/RTSP\].*?\[User-Agent: ([^\]]*)\]",
                          (root / "result/rtsp.pcap.out").read_text())
    convs = {c.client[1]: c for c in conversations(root / "pcap/rtsp.pcap", rtsp.StreamParser)}
    assert len(expected) >= 5
    for port, user_agent in expected:
        request = convs[int(port)].first("rtsp.request")
        assert request is not None and request["user_agent"] == user_agent
