"""Suricata-verify's TLS and FTP expectations, checked against medsentry's TLS and FTP parsers.

Each suricata-verify test has a pcap and a test.yaml listing the EVE records Suricata must log (filter
`match` + `count`). For every test whose checks are about tls or ftp we run the pcap through our
StreamParser (one per TCP connection) and count the connections whose fields match the same way.
QUIC checks are skipped (no QUIC parser yet), as are checks that are about Suricata itself (alerts from
rules, log lines, pre-8.0 behaviour, truncation flags).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medsentry.protocols import ftp, tls
from medsentry.protocols.base import Malformed, Message, StreamParser
from tests.pcaputil import segments

SYN, ACK = 0x02, 0x10


@dataclass
class Conversation:
    client: tuple[str, int]
    server: tuple[str, int]
    messages: list[Message] = field(default_factory=list)
    malformed: int = 0

    def first(self, kind: str) -> dict[str, Any] | None:
        return next((m.fields for m in self.messages if m.kind == kind), None)


def conversations(path: Path, make_parser: Callable[[], StreamParser],
                  ports: Iterable[int] | None = None) -> list[Conversation]:
    """Feeds each TCP connection of a capture to its own parser, in capture order.

    The client is the SYN sender, else the first to send payload. pcaputil does no reassembly, so a
    segment repeating the previous payload of the same direction is taken for a retransmission.
    """
    wanted = set(ports or ())
    live: dict[tuple, tuple[Conversation, StreamParser, dict[bool, bytes]]] = {}
    finished: list[Conversation] = []
    for s in segments(path):
        if s.transport != "tcp" or (wanted and s.sport not in wanted and s.dport not in wanted):
            continue
        a, b = (s.src, s.sport), (s.dst, s.dport)
        key = (min(a, b), max(a, b))
        syn = s.tcp_flags & (SYN | ACK) == SYN
        if syn and key in live and live[key][0].messages:  # port reuse: a new connection
            finished.append(live.pop(key)[0])
        if key not in live:
            if not (syn or s.payload):
                continue
            live[key] = (Conversation(a, b), make_parser(), {})
        conv, parser, last = live[key]
        from_client = a == conv.client
        if not s.payload or last.get(from_client) == s.payload:
            continue
        last[from_client] = s.payload
        try:
            conv.messages += parser.feed(s.payload, from_client)
        except Malformed:
            conv.malformed += 1
    return finished + [c for c, _, _ in live.values()]


SV = "captures/suricata-verify"
# Suricata's names for protocol versions in EVE (app-layer-ssl.c)
SURICATA_VERSIONS = {0x0200: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
                     0x0304: "TLS 1.3"}


def suricata_ja4(hello: dict[str, Any]) -> str:
    """Suricata (like FoxIO's python script) ends JA4_c's input with "_" even without signature
    algorithms; the FoxIO spec, its Rust tool, nDPI and medsentry do not. Rebuilt from our parsed fields."""
    if hello["sig_algs"]:
        return hello["ja4"]
    exts = ",".join(f"{e:04x}" for e in sorted(hello["extensions"]) if e not in (0, 16))
    return hello["ja4"][:24] + hashlib.sha256(f"{exts}_".encode()).hexdigest()[:12]


def eve_tls(conv: Conversation) -> dict[str, Any] | None:
    """What Suricata's EVE tls record holds for this connection, from our messages."""
    hello, server = conv.first("tls.client_hello"), conv.first("tls.server_hello")
    if hello is None:
        return None
    rec: dict[str, Any] = {
        "src_ip": conv.client[0], "src_port": conv.client[1],
        "dest_ip": conv.server[0], "dest_port": conv.server[1],
        "tls.ja3.hash": hello["ja3"], "tls.ja3.string": hello["ja3_string"],
        "tls.ja4": suricata_ja4(hello),
        "tls.version": SURICATA_VERSIONS.get((server or hello)["version"]),
        "tls.client_handshake.version": SURICATA_VERSIONS.get(hello["version"]),
        "tls.client_handshake.ciphers": hello["ciphers"],
        "tls.client_handshake.exts": hello["extensions"],
        "tls.client_handshake.sig_algs": hello["sig_algs"],
    }
    if "sni" in hello:
        rec["tls.sni"] = hello["sni"]
    if server is not None:
        rec |= {
            "tls.ja3s.hash": server["ja3s"], "tls.ja3s.string": server["ja3s_string"],
            "tls.server_handshake.version": SURICATA_VERSIONS.get(server["legacy_version"]),
            "tls.server_handshake.cipher": server["cipher"],
            "tls.server_handshake.exts": server["extensions"],
        }
    return rec


@dataclass
class SuricataTest:
    name: str
    pcap: Path | None
    filters: list[dict[str, Any]]
    requires: dict[str, Any]


_TLS_RULE = re.compile(r"\b(ja3s?|ja4)\.(hash|string)\b")


def suricata_tests(root: Path, protocol: str) -> list[SuricataTest]:
    """The suricata-verify tests with at least one check on `protocol` ("tls" or "ftp")."""
    found = []
    for spec_path in sorted(root.rglob("test.yaml")):
        spec = yaml.safe_load(spec_path.read_text())
        filters = [c["filter"] for c in spec.get("checks") or () if "filter" in c]
        relevant = [f for f in filters if any(
            v == protocol or k.startswith(protocol + ".") or (protocol == "tls" and k.startswith("quic.ja"))
            for k, v in (f.get("match") or {}).items())]
        rules = spec_path.parent / "test.rules"
        tls_rules = protocol == "tls" and rules.exists() and _TLS_RULE.search(rules.read_text())
        if not relevant and not tls_rules:
            continue
        pcap = spec.get("pcap")
        if pcap is False:
            path = None
        elif pcap:
            path = (spec_path.parent / pcap).resolve()
        else:
            path = next(iter(sorted(spec_path.parent.glob("*.pcap*"))), None)
        name = str(spec_path.parent.relative_to(root))
        found.append(SuricataTest(name, path if path and path.exists() else None, filters,
                                  spec.get("requires") or {}))
    return found


def _skip_reason(test: SuricataTest, protocol: str) -> str | None:
    if test.pcap is None:
        return "no pcap"
    if "lt-version" in test.requires:
        return "pre-8.0 Suricata behaviour"
    kinds = {f.get("match", {}).get("event_type") for f in test.filters}
    if protocol == "tls" and "tls" not in kinds:
        return "QUIC only" if "quic" in kinds or "quic" in test.name else "no tls record check"
    return None


def _matches(record: dict[str, Any], match: dict[str, Any]) -> bool:
    return all(record.get(k) == v for k, v in match.items() if k != "event_type")


def test_tls_records_match_suricata(shared_data: Path) -> None:
    tests = suricata_tests(shared_data / SV, "tls")
    compared, skipped, failures = [], {}, []
    quic_checks = 0
    for t in tests:
        quic_checks += sum(f.get("match", {}).get("event_type") == "quic" for f in t.filters)
        reason = _skip_reason(t, "tls")
        if reason:
            skipped[t.name] = reason
            continue
        records = [r for c in conversations(t.pcap, tls.StreamParser) if (r := eve_tls(c))]
        for f in t.filters:
            match = f.get("match", {})
            if match.get("event_type") != "tls":
                continue
            if any(k.startswith(("has-key", "not-has-key")) for k in match):
                continue
            got = sum(_matches(r, match) for r in records)
            compared.append((t.name, match))
            if got != f.get("count", 1):
                failures.append(f"{t.name}: {match} expected {f.get('count')} got {got}; ours: {records}")
    print(f"\nsuricata-verify tls: {len(tests)} tests, {len(compared)} tls checks compared in "
          f"{len({n for n, _ in compared})} tests, {quic_checks} QUIC checks skipped, "
          f"{len(skipped)} tests skipped: {skipped}")
    assert not failures, "\n".join(failures)
    # bug-5713-01/-02-ja4, ja4-tls, ja4-tls-quic, ja4-rules, ja4-cl-handshake, ja4-sv-handshake
    assert len({n for n, _ in compared}) >= 7 and quic_checks >= 3


def test_ja4_convention_difference_is_only_the_trailing_underscore(shared_data: Path) -> None:
    """bug-5713 (a TLS 1.0 hello without signature_algorithms) is where the two conventions part."""
    pcap = shared_data / SV / "bug-5713-01" / "TLSv1-Extracted-MaliciousC2.pcap"
    [conv] = conversations(pcap, tls.StreamParser)
    hello = conv.first("tls.client_hello")
    assert hello is not None and hello["sig_algs"] == []
    assert hello["ja4"] == "t10i070600_c50f5591e341_c39ab67fec8e"  # FoxIO spec: no "_" without sig algs
    assert suricata_ja4(hello) == "t10i070600_c50f5591e341_ce66f3b797c1"


def test_ftp_sessions_match_suricata(shared_data: Path) -> None:
    tests = suricata_tests(shared_data / SV, "ftp")
    compared, skipped, failures = 0, {}, []
    for t in tests:
        reason = _skip_reason(t, "ftp")
        if reason:
            skipped[t.name] = reason
            continue
        convs = conversations(t.pcap, ftp.StreamParser, ports=ftp.TCP_PORTS)
        # Every control connection Suricata saw must give us a banner and a login, without Malformed.
        for c in convs:
            kinds = [m.kind for m in c.messages]
            if c.malformed or kinds[:1] != ["ftp.banner"] or "ftp.login" not in kinds:
                failures.append(f"{t.name}: {c.client}->{c.server} {kinds} malformed={c.malformed}")
        for f in t.filters:
            match = f.get("match", {})
            want = f.get("count", 1)
            if match.get("event_type") == "flow" and match.get("app_proto") == "ftp":
                got = sum(c.first("ftp.banner") is not None for c in convs)
            elif match.get("event_type") == "ftp" and match.get("ftp.command") == "USER":
                got = sum(m.kind == "ftp.login" and m.fields["user_present"]
                          for c in convs if _endpoints_match(c, match) for m in c.messages)
            elif match.get("event_type") == "ftp" and "src_port" in match and want:
                # a PORT/EPSV/RETR transaction: we log no commands, but the session must be there
                got = sum(c.client[1] == match["src_port"] and c.first("ftp.login") is not None
                          for c in convs)
                want = 1
            else:
                continue
            compared += 1
            if got != want:
                failures.append(f"{t.name}: {match} expected {want} got {got}")
    print(f"\nsuricata-verify ftp: {len(tests)} tests {[t.name for t in tests]}, {compared} checks compared, "
          f"skipped {skipped}")
    assert not failures, "\n".join(failures)
    assert compared >= 6


def _endpoints_match(c: Conversation, match: dict[str, Any]) -> bool:
    return (match.get("src_ip", c.client[0]) == c.client[0]
            and match.get("dest_ip", c.server[0]) == c.server[0]
            and match.get("src_port", c.client[1]) == c.client[1])


def test_ftp_login_outcomes_and_privacy(shared_data: Path) -> None:
    """Suricata's ftp-download-active: bob logs in with PASS "password" (331 then 230)."""
    pcap = shared_data / SV / "ftp" / "ftp-download-active" / "input.pcap"
    [conv] = conversations(pcap, ftp.StreamParser, ports=ftp.TCP_PORTS)
    assert conv.first("ftp.banner") == {"banner": "FTP Sandbox Ready."}
    login = conv.first("ftp.login")
    assert login is not None
    assert login["success"] and login["user_present"] and login["password_present"]
    values = [v for m in conv.messages for v in m.fields.values() if isinstance(v, str)]
    assert not any("bob" in v or "password" in v for v in values)
