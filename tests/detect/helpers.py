"""Synthetic observations for detection tests."""

from __future__ import annotations

from typing import Any

from medsentry.detect import Detector, load_config
from medsentry.observe import Observation

ATT_MAC, ATT_IP = "de:ad:be:ef:00:01", "10.0.0.66"
PACS_MAC, PACS_IP = "44:4b:5d:00:00:10", "10.0.0.10"
CT_MAC, CT_IP = "a0:f2:17:00:00:65", "10.0.0.101"
BROKER_MAC, BROKER_IP = "4c:ae:a3:00:00:12", "10.0.0.12"


def ob(
    kind: str,
    ts: float,
    src: tuple[str | None, str | None] = (ATT_MAC, ATT_IP),
    dst: tuple[str | None, str | None] = (PACS_MAC, PACS_IP),
    sport: int | None = 40000,
    dport: int | None = 104,
    transport: str | None = "tcp",
    **fields: Any,
) -> Observation:
    return Observation(
        ts, kind.split(".")[0], kind, src[0], src[1], dst[0], dst[1], sport, dport, transport, fields
    )


def flow(
    ts: float,
    client: tuple[str, str],
    server: tuple[str | None, str],
    port: int,
    transport: str = "tcp",
    state: str | None = "reset",
    c2s: int = 1,
    s2c: int = 1,
    nbytes: int = 120,
    duration: float = 0.0,
) -> Observation:
    fields = {
        "transport": transport,
        "app": None,
        "tcp_state": state if transport == "tcp" else None,
        "client_ip": client[1],
        "client_port": 50000,
        "server_ip": server[1],
        "server_port": port,
        "packets_c2s": c2s,
        "packets_s2c": s2c,
        "bytes_c2s": nbytes // 2,
        "bytes_s2c": nbytes - nbytes // 2,
        "first_seen": ts,
        "last_seen": ts + duration,
    }
    return Observation(
        ts + duration,
        "flow",
        "flow",
        client[0],
        client[1],
        server[0],
        server[1],
        50000,
        port,
        transport,
        fields,
    )


def run(
    observations: list[Observation],
    overrides: dict[str, Any] | None = None,
    classes: dict[str, str] | None = None,
) -> tuple[Detector, list[Any]]:
    det = Detector(load_config(overrides=overrides))
    for o in observations:
        det.add(o)
    return det, det.alerts(classes)


def rules(alerts: list[Any]) -> list[str]:
    return [a.rule for a in alerts]


def learning(until: float = 100.0) -> list[Observation]:
    """Two observations that make a file capture span [0, until]: learning then ends at until/2."""
    return [
        ob("ip.ttl", 0.0, src=("00:00:00:00:00:99", "10.0.0.99"), ttl=64),
        ob("ip.ttl", until, src=("00:00:00:00:00:99", "10.0.0.99"), ttl=64),
    ]
