from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import syslog
from medsentry.protocols.base import Malformed
from tests.pcaputil import segments


def fields(payload: bytes) -> dict:
    [message] = syslog.parse_datagram(payload)
    assert message.kind == "syslog.message" and message.from_client is None
    return message.fields


@pytest.mark.parametrize(("payload", "expected"), [
    # RFC 5424 section 6.5, examples 1 and 3
    (b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed",
     {"facility": 4, "severity": 2, "format": "rfc5424", "version": 1, "hostname": "mymachine.example.com",
      "app_name": "su", "procid": None, "msgid": "ID47"}),
    (b'<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"] x',
     {"facility": 20, "severity": 5, "format": "rfc5424", "version": 1, "hostname": "mymachine.example.com",
      "app_name": "evntslog", "procid": None, "msgid": "ID47"}),
    # RFC 3164 section 5.4
    (b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
     {"facility": 4, "severity": 2, "format": "rfc3164", "hostname": "mymachine", "app_name": "su"}),
    (b"<30>snmpd[6956]: Connection from UDP: [127.0.0.1]:21311",
     {"facility": 3, "severity": 6, "format": "rfc3164", "app_name": "snmpd", "procid": "6956"}),
    (b"<189>72: Mar  3 19:57:17.371: %LINK-5-CHANGED: Interface GigabitEthernet0/2, changed state",
     {"facility": 23, "severity": 5, "format": "rfc3164", "app_name": "%LINK-5-CHANGED"}),
    (b"<13>", {"facility": 1, "severity": 5, "format": "rfc3164"}),
])
def test_headers(payload: bytes, expected: dict) -> None:
    assert fields(payload) == expected


def test_message_text_is_never_kept() -> None:
    text = repr(syslog.parse_datagram(b"<134>1 2026-11-30T20:14:32Z ICU-BED12-MON ivmon - - - "
                                      b"alarm HR high patient DOE^JANE MRN3111"))
    assert "DOE" not in text and "MRN3111" not in text and "alarm" not in text


@pytest.mark.parametrize("payload", [b"", b"hello", b"<192>1 x", b"<1234>x", b"<>x", b"13>x"])
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        syslog.parse_datagram(payload)


def test_looks_like() -> None:
    assert syslog.looks_like(b"<13>hello")
    assert not syslog.looks_like(b"GET / HTTP/1.1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz(data: bytes) -> None:
    for payload in (data, b"<13>" + data, b"<13>1 " + data, b"<13>Oct 11 22:14:15 " + data):
        with contextlib.suppress(Malformed):
            syslog.parse_datagram(payload)


def test_virtual_hospital_labels(shared_data: Path) -> None:
    """Every device labelled with a syslog application logs under that APP-NAME."""
    pcap = shared_data / "captures/virtual-hospital/general-hospital-normal-60s.pcap"
    labels = [json.loads(line) for line in Path(f"{pcap}.labels.jsonl").read_text().splitlines()]
    apps: dict[str, set[str]] = {}
    for s in segments(pcap):
        if s.transport == "udp" and s.dport in syslog.UDP_PORTS:
            apps.setdefault(s.src, set()).add(fields(s.payload)["app_name"])
    expected = {d["ip"]: {d["protocols"]["syslog"]["app"]}
                for d in labels if "syslog" in d.get("protocols", {})}
    assert len(expected) == 9 and apps == expected


def test_ndpi_syslog_capture(shared_data: Path) -> None:
    """nDPI's syslog.pcap: NetScreen, Cisco IOS, Linux kernel, snmpd, FortiGate... all parse."""
    parsed = []
    for s in segments(shared_data / "captures/ndpi/cfgs/default/pcap/syslog.pcap"):
        if s.transport == "udp" and syslog.UDP_PORTS & {s.sport, s.dport}:
            parsed.append(fields(s.payload))
    assert len(parsed) >= 50
    assert {"kernel", "snmpd", "chillispot", "%SYS-5-CONFIG_I"} <= {f.get("app_name") for f in parsed}
