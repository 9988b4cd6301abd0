"""Message protocols are read for the whole connection, not only its head: a monitor's MQTT session or an
interface engine's HL7 connection stays open for days, and what comes late counts as much as the first
message (detection of a spoofed topic or an injected segment depends on it). Other protocols keep a
64 KiB head."""

from __future__ import annotations

import struct
from pathlib import Path

from medsentry.decode.flows import ACK, SYN
from medsentry.observe import Observation
from medsentry.pipeline import observe_files
from medsentry.protocols.base import DEFAULT_INSPECT_BYTES
from tests.decode.test_flows import tcp, write_pcap
from tests.protocols.test_tls import record, tls12_session

PSH = 0x08


def session(tmp_path: Path, port: int, messages: list[bytes], reply: bytes = b"") -> list[Observation]:
    client, server = ("10.7.0.21", 40200), ("10.7.0.2", port)
    frames = [tcp(client, server, SYN, 999), tcp(server, client, SYN | ACK, 4999),
              tcp(client, server, ACK, 1000)]  # fmt: skip
    seq, rseq = 1000, 5000
    for m in messages:
        frames.append(tcp(client, server, PSH | ACK, seq, m))
        seq += len(m)
        if reply:
            frames.append(tcp(server, client, PSH | ACK, rseq, reply))
            rseq += len(reply)
    observations, _ = observe_files([write_pcap(tmp_path / f"{port}.pcap", frames)])
    return observations


def publish(topic: bytes, payload: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + payload
    return bytes([0x30, len(body)]) + body  # QoS 0, one-byte remaining length (< 128)


def test_an_mqtt_topic_published_days_in_is_seen(tmp_path: Path) -> None:
    connect = bytes([0x10, 16, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 4]) + b"mon1"
    vitals = [publish(b"icu/bed7/hr", b"%03d" % (60 + i % 40) + b" " * 80) for i in range(1500)]
    late = publish(b"icu/bed7/alarm", b"asystole")
    obs = session(tmp_path, 1883, [connect, *vitals, late], reply=b"")
    sent = sum(map(len, vitals))
    assert sent > 2 * DEFAULT_INSPECT_BYTES
    topics = [o.fields["topic"] for o in obs if o.kind == "mqtt.publish"]
    assert len(topics) == 1501 and topics[-1] == "icu/bed7/alarm"


def test_an_hl7_message_after_megabytes_is_seen(tmp_path: Path) -> None:
    def adt(n: int, event: str) -> bytes:
        return (b"\x0bMSH|^~\\&|ADT|GEN|LIS|LAB|20261206||ADT^%s|%d|P|2.5\rEVN|%s\rPID|1||%d^^^GEN||DOE^J\r"
                % (event.encode(), n, event.encode(), n) + b"NTE|1||" + b"x" * 900 + b"\r\x1c\r")
    messages = [adt(n, "A08") for n in range(200)] + [adt(999, "A40")]
    ack = b"\x0bMSH|^~\\&|LIS|LAB|ADT|GEN|20261206||ACK|1|P|2.5\rMSA|AA|1\r\x1c\r"
    obs = session(tmp_path, 2575, messages, reply=ack)
    assert sum(map(len, messages)) > 2 * DEFAULT_INSPECT_BYTES
    events = [o.fields["trigger_event"] for o in obs if o.kind == "hl7.message"]
    assert len(events) == 201 and events[-1] == "A40"
    assert len([o for o in obs if o.kind == "hl7.ack"]) == 201


def test_other_protocols_keep_a_head(tmp_path: Path) -> None:
    requests = [b"GET /fhir/Patient/%d HTTP/1.1\r\nHost: ehr\r\n\r\n" % n for n in range(3000)]
    obs = session(tmp_path, 80, requests)
    paths = [o for o in obs if o.kind == "http.request"]
    assert 0 < len(paths) < 3000 and sum(map(len, requests)) > 2 * DEFAULT_INSPECT_BYTES



def test_a_tls_connection_is_left_once_both_handshakes_are_over(tmp_path: Path) -> None:
    """TLS is `done` after both sides' handshakes (protocols.base): what follows is encrypted, so the
    pipeline stops looking at the connection. Segments lost after that point then make no reassembly
    gap, where they made one while the server still had a handshake to send."""
    from medsentry.protocols import tls

    def gaps(server_done: bool) -> int:
        hello, server_bytes = tls12_session(b"\x30\x03\x02\x01\x00")
        if not server_done:
            server_bytes = server_bytes[:9]  # the ServerHello's record, cut short
        client, server = ("10.7.0.21", 40300), ("10.7.0.2", 443)
        frames = [tcp(client, server, SYN, 999), tcp(server, client, SYN | ACK, 4999),
                  tcp(client, server, PSH | ACK, 1000, hello),
                  tcp(server, client, PSH | ACK, 5000, server_bytes)]  # fmt: skip
        data = record(tls.APPLICATION_DATA, bytes(100))
        seq = 1000 + len(hello) + 1400  # a segment lost, then more than the out-of-order store holds
        for _ in range(80):
            frames.append(tcp(client, server, PSH | ACK, seq, data))
            seq += len(data)
        observations, stats = observe_files([write_pcap(tmp_path / f"tls-{server_done}.pcap", frames)])
        assert [o.kind for o in observations if o.protocol == "tls"][:1] == ["tls.client_hello"]
        return stats.reassembly_gaps

    assert gaps(server_done=True) == 0
    assert gaps(server_done=False) == 1
