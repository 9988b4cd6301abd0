"""Does medsentry label flows the way nDPI does, for the protocols both decode?

Every pcap of nDPI's test suite (default configuration) that has nDPI's `result/*.out` goes through
`medsentry.pipeline`. For each flow nDPI labels with one of the protocols we dissect, two questions:
- label: our flow record for the same endpoints carries the same app (`FlowRecord.app`, our module name);
- decoded: at least one observation of that protocol was produced on that flow (mDNS and LLMNR: a DNS
  observation flagged `mdns` / `llmnr`; plain DNS: neither).
Only flows nDPI classified by content are compared ("Confidence: DPI*"): "Match by port" flows often carry
no payload, and a port alone is not evidence for us. The other nDPI configurations in the suite change
nDPI's own behaviour (disabled protocols, heuristics) and are left out.

Run `python -m tests.protocols.test_peers_ndpi_labels` for the table that docs/accuracy.md shows.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from medsentry.observe import Observation
from medsentry.pipeline import observe_files

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NDPI = DATA / "captures" / "ndpi" / "cfgs" / "default"

# nDPI master protocol -> our module name
OURS = {
    "DHCP": "dhcp", "DNS": "dns", "MDNS": "dns", "LLMNR": "dns", "NetBIOS": ("nbns", "nbdgm", "smb"),
    "SSDP": "ssdp", "SNMP": "snmp", "HTTP": "http", "TLS": "tls", "FTP_CONTROL": "ftp", "Telnet": "telnet",
    "RTSP": "rtsp", "Syslog": "syslog", "MQTT": "mqtt", "DICOM": "dicom", "HL7": "hl7", "LLDP": "lldp",
    "CDP": "cdp",
}  # fmt: skip

# Lowest share of nDPI's flows we must label / decode alike, as measured on the suite (agreed/flows).
# Why each gap exists:
# - DNS 488/488 (tunnels opened: 6in4, VXLAN). Decoded 467: the other 21 are fuzzed datagrams
#   (fuzz-2006-06-26-2594.pcap) that our parser counts as malformed.
# - DHCP 26/26, one of them inside a wireless controller's CAPWAP tunnel.
# - NetBIOS 55/55: names (UDP 137), browser announcements (UDP 138) and two SMB sessions on TCP 445 (nDPI
#   calls them NetBIOS for their session service header; we call them smb). Decoded 43: other datagrams
#   (browser elections, backup-list requests, other mailslots) and SMB messages past the session setup
#   carry nothing we report, and seven fuzzed NBNS datagrams are malformed.
# - SSDP 52/52: answers to an M-SEARCH from ephemeral ports and Plex's M-SEARCH to its own port are
#   recognised by their first datagram (`ssdp.looks_like_datagram`).
# - HTTP 1113/1114: a connection picked up after its request is recognised on HTTP ports by its status line
#   (`http.mid_stream`), a request line longer than its first segment by its method and path; left: a
#   fuzzed request line.
# - TLS 868/877: connections captured after their handshake are recognised on TLS ports by their record
#   headers (`tls.mid_stream`; one starting inside a record by the next record header, up to 16 segments
#   being tried on such ports); not on other ports (XMPP 5223, Google 5228, Cast 8009, port 80: 7 flows),
#   nor one inside GTP (a mobile network's tunnel, not opened); one flow nDPI prints with an impossible
#   address ("2600:1901::7a0b::"). Decoded 792: the handshake, where the capture has it.
# - Syslog 15/16: one over TCP 514 without octet framing (rsh-syslog-false-positive: nDPI itself calls it
#   a false positive).
# - MQTT 2/5: three connections on port 17501 captured after their CONNECT; we recognise MQTT by CONNECT.
BARS = {
    "DHCP": (1.0, 1.0), "DNS": (1.0, 0.95), "MDNS": (1.0, 1.0), "LLMNR": (1.0, 1.0),
    "NetBIOS": (1.0, 0.78), "SSDP": (1.0, 1.0), "SNMP": (1.0, 1.0), "HTTP": (0.99, 0.99), "TLS": (0.98, 0.9),
    "FTP_CONTROL": (1.0, 1.0), "Telnet": (1.0, 1.0), "RTSP": (1.0, 1.0), "Syslog": (0.93, 0.93),
    "MQTT": (0.4, 0.4), "HL7": (1.0, 1.0),
}  # fmt: skip

_FLOW = re.compile(
    r"^\s+\d+\s+(TCP|UDP) (\S+) <?-> (\S+) \[proto: (?:[\w-]+:)?[\d.]+/([\w-]+)[^\]]*\].*?"
    r"\[Confidence: ([^\]]+)\]"  # "VXLAN:91.119/TLS.Facebook": the flow inside a tunnel
)
FlowKey = tuple[str, frozenset[tuple[str, int]]]


def _endpoint(text: str) -> tuple[str, int]:
    ip, port = text.rsplit(":", 1)
    ip = ip.strip("[]")
    # nDPI shortens a single zero group of an IPv6 address to "::" (RFC 5952 says not to); ours do not.
    # Its output for fuzzed captures also holds addresses no parser takes ("302e::3d00::8001").
    with contextlib.suppress(ValueError):
        ip = str(ipaddress.ip_address(ip))
    return ip, int(port)


def ndpi_flows(out: str) -> list[tuple[FlowKey, str, str]]:
    """(flow key, master protocol, confidence) of each flow line of an ndpiReader result."""
    found = []
    for line in out.splitlines():
        if m := _FLOW.match(line):
            transport, a, b, proto, confidence = m.groups()
            found.append(((transport.lower(), frozenset({_endpoint(a), _endpoint(b)})), proto, confidence))
    return found


def _variant(o: Observation) -> str:
    """Which nDPI protocol one of our observations stands for."""
    if o.protocol == "dns":
        return "MDNS" if o.fields.get("mdns") else "LLMNR" if o.fields.get("llmnr") else "DNS"
    return next(k for k, v in OURS.items() if o.protocol in _names(v))


def _names(ours: str | tuple[str, ...]) -> tuple[str, ...]:
    return (ours,) if isinstance(ours, str) else ours


def our_flows(pcap: Path) -> tuple[dict[FlowKey, set[str | None]], dict[FlowKey, set[str]]]:
    """Apps of our flow records, and nDPI names of the protocols we decoded, by flow key."""
    observations, _ = observe_files([pcap])
    apps: dict[FlowKey, set[str | None]] = defaultdict(set)
    decoded: dict[FlowKey, set[str]] = defaultdict(set)
    for o in observations:
        if o.kind == "flow":
            f = o.fields
            ends = frozenset({(f["client_ip"], f["client_port"]), (f["server_ip"], f["server_port"])})
            apps[(f["transport"], ends)].add(f["app"])
        elif o.sport is not None and o.protocol in {n for v in OURS.values() for n in _names(v)}:
            ends = frozenset({(o.src_ip, o.sport), (o.dst_ip, o.dport)})
            decoded[(o.transport or "", ends)].add(_variant(o))
    return apps, decoded


@functools.cache
def agreement() -> dict[str, Counter[str]]:
    """Per nDPI protocol: flows, labelled alike, decoded, over the whole suite."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for out in sorted((NDPI / "result").glob("*.out")):
        pcap = NDPI / "pcap" / out.name.removesuffix(".out")
        if not pcap.is_file():
            continue
        flows = [f for f in ndpi_flows(out.read_text(errors="replace")) if f[1] in OURS]
        if not any(conf.startswith("DPI") for _, _, conf in flows):
            continue
        apps, decoded = our_flows(pcap)
        for key, proto, confidence in flows:
            if not confidence.startswith("DPI"):
                continue
            row = table[proto]
            row["flows"] += 1
            row["labelled"] += any(n in apps.get(key, ()) for n in _names(OURS[proto]))
            row["decoded"] += proto in decoded.get(key, ())
    return table


def markdown() -> str:
    rows = ["| nDPI protocol | ours | flows | labelled alike | decoded |", "|---|---|---:|---:|---:|"]
    for proto, counts in sorted(agreement().items(), key=lambda kv: -kv[1]["flows"]):
        n, lab, dec = counts["flows"], counts["labelled"], counts["decoded"]
        ours = "/".join(_names(OURS[proto]))
        rows.append(f"| {proto} | {ours} | {n} | {lab} ({lab / n:.1%}) | {dec} ({dec / n:.1%}) |")
    return "\n".join(rows)


@pytest.fixture(scope="module")
def table(shared_data: Path) -> dict[str, Counter[str]]:
    if not (NDPI / "result").is_dir():
        pytest.skip("nDPI's results are not in the shared data")
    return agreement()


@pytest.mark.parametrize("proto", sorted(BARS))
def test_agreement_with_ndpi(table: dict[str, Counter[str]], proto: str) -> None:
    counts = table[proto]
    assert counts["flows"] >= 1, f"nDPI labels no {proto} flow in the suite any more"
    label_bar, decode_bar = BARS[proto]
    assert counts["labelled"] / counts["flows"] >= label_bar, counts
    assert counts["decoded"] / counts["flows"] >= decode_bar, counts


def test_every_compared_protocol_has_a_bar(table: dict[str, Counter[str]]) -> None:
    print("\n" + markdown())
    assert set(table) <= set(BARS)
    assert sum(c["flows"] for c in table.values()) >= 2500


def test_ndpi_line_parsing() -> None:
    line = (
        "\t34\tUDP [fe80::9bd:81dd:2fdc:5750]:1900 -> [ff02::c]:1900 [proto: 12/SSDP][IP: 0/Unknown]"
        "[ClearText][Confidence: DPI][FPC: 12/SSDP, Confidence: DPI][DPI packets: 1]"
    )
    tls = (
        "\t1\tTCP 10.0.0.1:49548 <-> 10.0.0.2:443 [proto: 91.126/TLS.Google][IP: 126/Google][Confidence: DPI]"
    )
    got = ndpi_flows(line + "\n" + tls)
    assert got[0] == (
        ("udp", frozenset({("fe80::9bd:81dd:2fdc:5750", 1900), ("ff02::c", 1900)})),
        "SSDP",
        "DPI",
    )
    assert got[1][1:] == ("TLS", "DPI")


if __name__ == "__main__":
    sys.stdout.write(markdown() + "\n")
