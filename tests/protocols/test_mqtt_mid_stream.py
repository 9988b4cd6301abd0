"""MQTT connections captured after their CONNECT (a monitor's session to the broker may stay open for days):
recognised on the MQTT port by a chain of valid fixed headers, and their PUBLISH topics read."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsentry.protocols import mqtt

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
