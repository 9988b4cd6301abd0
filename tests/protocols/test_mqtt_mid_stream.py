"""MQTT connections captured after their CONNECT (a monitor's session to the broker may stay open for days):
recognised on the MQTT port by a chain of valid fixed headers, and their PUBLISH topics read."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from medsentry.protocols import mqtt
from medsentry.protocols.base import Malformed

PUBLISH = bytes([0x30, 12, 0, 6]) + b"icu/hr" + b"72bp"  # QoS 0, topic "icu/hr", payload "72bp"
PUBACK = bytes([0x40, 2, 0, 7])
PINGREQ = bytes([0xC0, 0])


@pytest.mark.parametrize("head", [PUBLISH, PUBLISH + PUBACK + PINGREQ, PINGREQ, PUBACK + PUBLISH[:3],
                                  bytes([0x82, 8, 0, 1, 0, 3]) + b"a/#" + b"\x00"])  # fmt: skip
def test_packets_after_the_connect(head: bytes) -> None:
    assert mqtt.mid_stream(head)


@pytest.mark.parametrize(
    "head",
    [
        bytes([0x10, 12, 0, 4]) + b"MQTT",  # a CONNECT: the start, for looks_like
        b"GET / HTTP/1.1\r\n",
        bytes([0x36, 2, 0, 0]),  # PUBLISH with QoS 3
        bytes([0x80, 2, 0, 1]),  # SUBSCRIBE without its required flags
        bytes([0xC0, 1, 0]),  # PINGREQ with a body
        PUBLISH + b"\x00",  # followed by something that is no packet
        b"\x30",  # not even one fixed header
        b"\x30\xff\xff\xff\xff\x01",  # a remaining length of 5 bytes
    ],
)
def test_not_mqtt_in_the_middle(head: bytes) -> None:
    assert not mqtt.mid_stream(head)


def test_a_session_picked_up_mid_way_is_read(tmp_path: Path) -> None:
    from medsentry.pipeline import observe_files
    from tests.decode.test_flows import tcp, write_pcap

    monitor, broker = ("10.77.0.111", 50123), ("10.77.0.20", 1883)
    other = ("10.77.0.112", 50124)
    frames = [tcp(monitor, broker, 0x18, 1000, PUBLISH), tcp(broker, monitor, 0x10, 5000),
              tcp(other, broker, 0x18, 2000, b"\x00\x01\x02 not MQTT")]  # fmt: skip
    observations, _ = observe_files([write_pcap(tmp_path / "mid.pcap", frames, step=1.0)])
    [publish] = [o for o in observations if o.kind == "mqtt.publish"]
    assert publish.fields["topic"] == "icu/hr" and publish.src_ip == "10.77.0.111"
    apps = {o.src_ip: o.fields["app"] for o in observations if o.kind == "flow"}
    assert apps == {"10.77.0.111": "mqtt", "10.77.0.112": None}


def _publish(topic: bytes, payload: bytes) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + payload
    length, n = b"", len(body)
    while True:  # the remaining length: 7 bits a byte, low first (MQTT 3.1.1 2.2.3)
        n, digit = n >> 7, n & 0x7F
        length += bytes([digit | (0x80 if n else 0)])
        if not n:
            return b"\x30" + length + body


def test_a_direction_joined_inside_a_publish_reads_the_packets_after_it() -> None:
    """A dashboard's subscription: the broker forwards waveforms bigger than a segment. Joined inside
    one, the rest of its payload is passed over (before, it was read as headers: Malformed, and the
    whole connection was no longer inspected)."""
    wave = _publish(b"icu/bed3/ecg", b'{"lead": "II", "mV": [' + b"0.12, " * 700 + b"0.1]}")
    stream = wave + wave + _publish(b"icu/bed3/alarm", b"asystole") + PINGREQ
    joined = stream[2000:]  # inside the first waveform
    parser = mqtt.StreamParser()
    parser.join(False)
    got = [m for i in range(0, len(joined), 1448) for m in parser.feed(joined[i : i + 1448], False)]
    assert [m.fields.get("topic") for m in got] == ["icu/bed3/ecg", "icu/bed3/alarm", None]
    strict = mqtt.StreamParser()
    with pytest.raises(Malformed):  # not told: the payload's text taken for packets
        for i in range(0, len(joined), 1448):
            strict.feed(joined[i : i + 1448], False)


def test_a_joined_direction_that_never_finds_a_packet_is_given_up() -> None:
    parser = mqtt.StreamParser()
    parser.join(True)
    noise = bytes([0xFF]) * 1448  # packet type 15 (AUTH) with flags 0xF: never a valid header
    for _ in range(60):
        assert parser.feed(noise, True) == []
    assert parser.ignores(True) > 1 << 60  # dead: the pipeline skips it from now on


def test_a_joined_direction_that_starts_with_its_connect_is_read() -> None:
    """A capture without the handshake (it began a moment after the SYN): the first bytes are the
    CONNECT itself, which `mid_stream` leaves to `looks_like` but the resync must take."""
    connect = bytes([0x10, 16, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 4]) + b"mon1"
    parser = mqtt.StreamParser()
    parser.join(True)
    got = parser.feed(connect + PUBLISH, True)
    assert [m.kind for m in got] == ["mqtt.connect", "mqtt.publish"]
    assert not mqtt.mid_stream(connect)
