"""Alert outputs against real local receivers: a UDP and a TCP syslog listener, an HTTP webhook server."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from medsentry.detect.output import post_webhook, send_syslog, to_cef, to_csv, to_jsonl, write_json
from tests.detect.helpers import ATT_IP, BROKER_IP, BROKER_MAC, ob, run


def _alerts() -> list:
    obs = [
        ob("mqtt.connect", 1.0, dst=(BROKER_MAC, BROKER_IP), dport=1883, username_present=False),
        ob("mqtt.subscribe", 2.0, dst=(BROKER_MAC, BROKER_IP), dport=1883, topics=["#"]),
    ]
    alerts = run(obs)[1]
    assert len(alerts) == 2
    return alerts


def test_json_document_jsonl_and_csv(tmp_path: Path) -> None:
    alerts = _alerts()
    write_json(tmp_path / "a.json", alerts)
    doc = json.loads((tmp_path / "a.json").read_text())
    assert [a["rule"] for a in doc["alerts"]] == [a.rule for a in alerts]
    lines = to_jsonl(alerts).splitlines()
    assert [json.loads(x)["id"] for x in lines] == [a.id for a in alerts]
    rows = list(csv.DictReader(io.StringIO(to_csv(alerts))))
    assert rows[1]["attacker_ip"] == ATT_IP and rows[1]["victims"] == BROKER_IP
    assert rows[1]["technique"].startswith("T0801")


def test_cef_escaping_and_fields() -> None:
    alert = _alerts()[0].to_dict()
    alert["explanation"] = "a=b | c\\d\nnext"
    line = to_cef(alert)
    assert line.startswith("CEF:0|medsentry|medsentry|")
    assert "|abuse.mqtt_anonymous|abuse.mqtt_anonymous|3|" in line
    assert "msg=a\\=b | c\\\\d\\nnext" in line and "\n" not in line
    assert f"src={ATT_IP}" in line and f"dst={BROKER_IP}" in line and "cs2=" + alert["id"] in line


def test_syslog_udp_to_local_listener() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.settimeout(5)
        assert send_syslog(_alerts(), "127.0.0.1", srv.getsockname()[1]) == 2
        got = [srv.recv(65535).decode() for _ in range(2)]
    assert all(m.startswith("<16") and " medsentry - " in m and "CEF:0|medsentry" in m for m in got)
    assert {m.split(" - ")[1].split(" ")[0] for m in got} == {"abuse.mqtt_anonymous", "abuse.mqtt_wildcard"}


def test_syslog_tcp_octet_counting() -> None:
    received = bytearray()
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def serve() -> None:
            conn, _ = srv.accept()
            with conn:
                while chunk := conn.recv(65535):
                    received.extend(chunk)

        t = threading.Thread(target=serve)
        t.start()
        send_syslog(_alerts(), "127.0.0.1", srv.getsockname()[1], proto="tcp")
        t.join(5)
    data, msgs = bytes(received), []
    while data:
        n, _, rest = data.partition(b" ")
        msgs.append(rest[: int(n)])
        data = rest[int(n) :]
    assert len(msgs) == 2 and all(m.startswith(b"<") and b"CEF:0" in m for m in msgs)
    with pytest.raises(ValueError):
        send_syslog(_alerts(), "127.0.0.1", 1, proto="sctp")


def test_webhook_to_local_http_server() -> None:
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.handle_request)
    t.start()
    status = post_webhook(_alerts(), f"http://127.0.0.1:{server.server_address[1]}/hook")
    t.join(5)
    server.server_close()
    assert status == 204
    assert [a["rule"] for a in bodies[0]["alerts"]] == ["abuse.mqtt_anonymous", "abuse.mqtt_wildcard"]
