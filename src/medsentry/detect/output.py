"""Alert outputs: the `--alerts` JSON document, JSON lines, CSV, CEF over syslog (RFC 5424, UDP or TCP
with octet counting) and a JSON webhook. Alerts carry no secrets or PHI values (see engine.py), so every
output may leave the machine as is."""

from __future__ import annotations

import csv
import io
import json
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from medsentry import __version__
from medsentry.detect.engine import Alert, to_json_doc

_CEF_SEVERITY: Final = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
CSV_COLUMNS: Final = (
    "id",
    "rule",
    "severity",
    "technique",
    "attacker_mac",
    "attacker_ip",
    "victims",
    "first_seen",
    "last_seen",
    "count",
    "explanation",
)


def _dicts(alerts: Iterable[Alert | dict[str, Any]]) -> list[dict[str, Any]]:
    return [a.to_dict() if isinstance(a, Alert) else a for a in alerts]


def write_json(path: str | Path, alerts: Iterable[Alert]) -> None:
    """The `analyze --alerts FILE` / `alerts --json FILE` document: {"alerts": [...]}; '-' is stdout."""
    text = json.dumps(to_json_doc(list(alerts)), indent=1, sort_keys=False) + "\n"
    if str(path) == "-":
        print(text, end="")
    else:
        Path(path).write_text(text, "utf-8")


def to_jsonl(alerts: Iterable[Alert | dict[str, Any]]) -> str:
    return "".join(json.dumps(a, sort_keys=True) + "\n" for a in _dicts(alerts))


def to_csv(alerts: Iterable[Alert | dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for a in _dicts(alerts):
        victims = " ".join(v.get("ip") or v.get("mac") or "" for v in a["victims"])
        t = a["technique"]
        w.writerow(
            [
                a["id"],
                a["rule"],
                a["severity"],
                f"{t['id']} {t['name']}",
                a["attacker"].get("mac") or "",
                a["attacker"].get("ip") or "",
                victims,
                a["first_seen"],
                a["last_seen"],
                a.get("count", 1),
                a["explanation"],
            ]
        )
    return out.getvalue()


def _cef_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _cef_ext(value: Any) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def to_cef(alert: Alert | dict[str, Any]) -> str:
    """One ArcSight CEF:0 line. Extension keys: standard src/smac/dst/dmac/start/end/cnt/msg, and
    cs1 = ATT&CK technique, cs2 = alert id, cs3 = all victims."""
    a = _dicts([alert])[0]
    t = a["technique"]
    victims = a["victims"]
    first_victim = victims[0] if victims else {}
    ext: list[tuple[str, Any]] = [
        ("rt", int(a["last_seen"] * 1000)),
        ("start", int(a["first_seen"] * 1000)),
        ("end", int(a["last_seen"] * 1000)),
        ("cnt", a.get("count", 1)),
        ("src", a["attacker"].get("ip")),
        ("smac", a["attacker"].get("mac")),
        ("dst", first_victim.get("ip")),
        ("dmac", first_victim.get("mac")),
        ("cs1Label", "mitreTechnique"),
        ("cs1", f"{t['id']} {t['name']}"),
        ("cs2Label", "alertId"),
        ("cs2", a["id"]),
        ("cs3Label", "victims"),
        ("cs3", " ".join(v.get("ip") or v.get("mac") or "" for v in victims)),
        ("msg", a["explanation"]),
    ]
    header = "|".join(
        _cef_header(x) for x in ("CEF:0", "medsentry", "medsentry", __version__, a["rule"], a["rule"])
    )
    sev = _CEF_SEVERITY.get(a["severity"], 5)
    return f"{header}|{sev}|" + " ".join(f"{k}={_cef_ext(v)}" for k, v in ext if v not in (None, ""))


def syslog_message(alert: Alert | dict[str, Any], hostname: str | None = None) -> bytes:
    """RFC 5424 message (facility local4; severity from the alert) carrying the CEF line."""
    a = _dicts([alert])[0]
    sev = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}.get(a["severity"], 4)
    pri = 20 * 8 + sev
    ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a["last_seen"]))
    host = (hostname or socket.gethostname() or "-").replace(" ", "_")[:255]
    return f"<{pri}>1 {ts} {host} medsentry - {a['rule']} - {to_cef(a)}".encode()


def send_syslog(
    alerts: Iterable[Alert | dict[str, Any]],
    host: str,
    port: int = 514,
    proto: str = "udp",
    timeout: float = 5.0,
) -> int:
    """Send each alert as one syslog message; returns how many were sent. TCP uses RFC 6587 octet
    counting so messages with newlines in them stay whole."""
    messages = [syslog_message(a) for a in _dicts(alerts)]
    if proto == "udp":
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
            for m in messages:
                s.sendto(m, (host, port))
    elif proto == "tcp":
        with socket.create_connection((host, port), timeout=timeout) as s:
            for m in messages:
                s.sendall(f"{len(m)} ".encode() + m)
    else:
        raise ValueError(f"syslog protocol must be udp or tcp, not {proto!r}")
    return len(messages)


def post_webhook(
    alerts: Iterable[Alert | dict[str, Any]],
    url: str,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> int:
    """POST {"alerts": [...]} as JSON; returns the HTTP status (raises on connection errors and 4xx/5xx)."""
    import urllib.request  # here: http.client and ssl cost every CLI command 0.15 s at start-up

    body = json.dumps({"alerts": _dicts(alerts)}).encode()
    req = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "medsentry", **(headers or {})},
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return int(resp.status)
