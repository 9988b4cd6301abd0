"""A dissector that fails other than with `Malformed` (a bug: an unexpected type, an index out of range)
costs its flow's inspection, never the run: the failure is counted per protocol and exception type, with
no text of the exception (it may quote the payload), and everything else is analysed as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medsentry import protocols
from medsentry.pipeline import observe_files
from medsentry.protocols import http, syslog
from tests.decode.test_flows import tcp, udp, write_pcap

ACK, PSH, SYN = 0x10, 0x08, 0x02


def _boom(*_: Any) -> Any:
    raise TypeError("payload PATIENT^JOHN")  # what a bug's message might quote


def _capture(tmp_path: Path) -> Path:
    client, server = ("10.7.0.21", 40200), ("10.7.0.2", 80)
    dns = ("10.7.0.21", 53000), ("10.7.0.1", 53)
    query = bytes.fromhex("abcd01000001000000000000") + b"\x04pacs\x08hospital\x00\x00\x01\x00\x01"
    frames = [
        udp(("10.7.0.30", 40000), ("10.7.0.1", 514), b"<134>Dec  7 05:00:00 pump7 app: started"),
        tcp(client, server, SYN, 999),
        tcp(server, client, SYN | ACK, 4999),
        tcp(client, server, PSH | ACK, 1000, b"GET / HTTP/1.1\r\nHost: ehr\r\n\r\n"),
        tcp(client, server, PSH | ACK, 1029, b"GET /two HTTP/1.1\r\nHost: ehr\r\n\r\n"),
        udp(*dns, query),
    ]
    return write_pcap(tmp_path / "mixed.pcap", frames)


def test_a_failing_dissector_is_counted_and_the_run_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:  # fmt: skip
    capture = _capture(tmp_path)
    before, _ = observe_files([capture])
    assert {o.protocol for o in before} >= {"syslog", "http", "dns"}

    class Broken:
        def feed(self, data: bytes, from_client: bool) -> list[Any]:
            return _boom()

    monkeypatch.setattr(syslog, "parse_datagram", _boom)
    monkeypatch.setattr(http, "StreamParser", Broken)
    observations, stats = observe_files([capture])
    assert stats.dissector_errors == {"syslog: TypeError": 1, "http: TypeError": 1}  # the flow is left
    assert "PATIENT" not in repr(stats.to_dict())
    assert not [o for o in observations if o.protocol in ("syslog", "http")]
    assert [o.kind for o in observations if o.protocol == "dns"] == [
        o.kind for o in before if o.protocol == "dns"
    ]
    assert len([o for o in observations if o.kind == "flow"]) == len([o for o in before if o.kind == "flow"])


def test_a_failing_dissector_on_ports_is_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(protocols.ON_PORTS, "dns", _boom)
    _, stats = observe_files([_capture(tmp_path)])
    assert stats.dissector_errors == {"dns: TypeError": 1}
