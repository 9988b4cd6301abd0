"""nDPI's per-flow TLS results (ntop/nDPI@3b1286ab, `result/*.out`) against medsentry's TLS parser.

For ~30 regression captures with TLS over TCP (no QUIC, no DTLS, no STARTTLS, no tunnels pcaputil cannot
open) every flow for which nDPI printed a JA4, JA3C, JA3S, SNI or certificate must get the same from us.

nDPI@3b1286ab builds JA4 differently from the FoxIO specification in three places, all reproducible
from our parsed fields (`ndpi_ja4`); we also count how many JA4 strings agree verbatim:
  - the SNI marker is "i" only when the SNI is a numeric IP (the spec: "d" iff an SNI extension exists);
  - the ALPN part is the first two characters of the first ALPN (the spec: first and last);
  - an empty JA4_c input hashes to sha256("") (the spec: "000000000000").
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from medsentry.protocols import tls
from tests.protocols.test_peers_suricata_tls_ftp import Conversation, conversations

NDPI = "captures/ndpi/cfgs/default"
PCAPS = [
    "443-curl.pcap", "443-firefox.pcap", "443-git.pcap", "443-safari.pcap", "alexa-app.pcapng",
    "android.pcap", "chrome.pcap", "dazn.pcapng", "dns_dot.pcap", "dnscrypt-v2-doh.pcap", "emotet.pcap",
    "encrypted_sni.pcap", "forticlient.pcap", "http_ipv6.pcap", "imaps.pcap", "KakaoTalk_chat.pcap",
    "long_tls_certificate.pcap", "no_sni.pcap", "signal.pcap", "sonos.pcapng", "teams.pcap",
    "tls-esni-fuzzed.pcap", "tls_1.2_unidirectional_client.pcapng", "tls_2_reasms.pcapng", "tls_alert.pcap",
    "tls_cipher_lens.pcap", "tls_ech.pcapng", "tls_esni_sni_both.pcap", "tls_verylong_certificate.pcap",
    "tls_with_huge_ch.pcapng", "webex.pcap", "wechat.pcap",
]
# nDPI prints "(Advertised) ALPNs: h2" for this flow yet builds its JA4 with "h0".
NDPI_ANOMALIES = {("android.pcap", 52514)}

_FLOW = re.compile(r"^\s+\d+\s+TCP\s+(\S+):(\d+)\s+<?->\s+(\S+):(\d+)\s")
_FIELD = re.compile(r"\[(JA4|JA3C|JA3S|Hostname/SNI|Subject|Issuer|ServerNames): ([^\]]+)\]")


def ndpi_flows(out: str) -> dict[frozenset[tuple[str, int]], dict[str, str]]:
    flows = {}
    for line in out.splitlines():
        m = _FLOW.match(line)
        if m and "TLS" in line.split("[proto: ", 1)[-1].split("]", 1)[0]:
            key = frozenset({(m[1].strip("[]"), int(m[2])), (m[3].strip("[]"), int(m[4]))})
            flows[key] = dict(_FIELD.findall(line))
    return flows


def _is_ip(text: str | None) -> bool:
    try:
        ipaddress.ip_address(text or "")
    except ValueError:
        return False
    return True


def ndpi_ja4(hello: dict[str, Any]) -> str:
    a, b, c = hello["ja4"].split("_")
    alpn = (hello["alpn"][0][:2] if hello["alpn"] else "").ljust(2, "0")
    if c == "000000000000":
        c = hashlib.sha256(b"").hexdigest()[:12]
    return f"{a[:3]}{'i' if _is_ip(hello.get('sni')) else 'd'}{a[4:8]}{alpn}_{b}_{c}"


def _cn(dn: str) -> str | None:
    """The CN of an nDPI ("C=US, O=x, CN=y") or RFC 4514 ("CN=y,O=x,C=US") distinguished name."""
    m = re.search(r"(?:^|[ ,])CN=((?:\\.|[^,\\])*)", dn)
    return m[1].replace("\\", "") if m else None


@pytest.fixture(scope="module")
def flows(shared_data: Path) -> list[tuple[str, Conversation, dict[str, str]]]:
    out = []
    for name in PCAPS:
        expected = ndpi_flows((shared_data / NDPI / "result" / f"{name}.out").read_text(errors="replace"))
        convs = {frozenset({c.client, c.server}): c
                 for c in conversations(shared_data / NDPI / "pcap" / name, tls.StreamParser)}
        out += [(name, convs.get(key, Conversation(("?", 0), ("?", 0))), fields)
                for key, fields in expected.items() if fields]
    return out


def test_ja4_agrees_with_ndpi(flows: list[tuple[str, Conversation, dict[str, str]]]) -> None:
    total = verbatim = 0
    disagree = []
    for name, conv, nd in flows:
        if "JA4" not in nd or (name, conv.client[1]) in NDPI_ANOMALIES:
            continue
        total += 1
        hello = conv.first("tls.client_hello")
        verbatim += hello is not None and hello["ja4"] == nd["JA4"]
        if hello is None or ndpi_ja4(hello) != nd["JA4"]:
            disagree.append((name, conv.client, nd["JA4"], hello and hello["ja4"]))
    print(f"\nnDPI JA4: {total - len(disagree)}/{total} agree (nDPI's variant), {verbatim}/{total} verbatim")
    assert total >= 300 and not disagree, disagree


def test_ja3_agrees_with_ndpi(flows: list[tuple[str, Conversation, dict[str, str]]]) -> None:
    checked = 0
    for name, conv, nd in flows:
        hello, server = conv.first("tls.client_hello"), conv.first("tls.server_hello")
        if "JA3C" in nd:
            checked += 1
            assert hello is not None and hello["ja3"] == nd["JA3C"], (name, conv.client)
        if "JA3S" in nd:  # nDPI appends its cipher rating: "<md5> (WEAK)"
            checked += 1
            assert server is not None and server["ja3s"] == nd["JA3S"].split()[0], (name, conv.client)
    print(f"\nnDPI JA3C/JA3S: {checked}/{checked} agree")
    assert checked >= 500


def test_sni_agrees_with_ndpi(flows: list[tuple[str, Conversation, dict[str, str]]]) -> None:
    checked = 0
    for name, conv, nd in flows:
        if "Hostname/SNI" in nd and "JA4" in nd:  # a TLS flow whose SNI came from the ClientHello
            checked += 1
            hello = conv.first("tls.client_hello")
            assert hello is not None and hello.get("sni") == nd["Hostname/SNI"], (name, conv.client)
    print(f"\nnDPI SNI: {checked}/{checked} agree")
    assert checked >= 250


def test_certificate_agrees_with_ndpi(flows: list[tuple[str, Conversation, dict[str, str]]]) -> None:
    checked = 0
    for name, conv, nd in flows:
        if "Subject" not in nd:
            continue
        checked += 1
        cert = conv.first("tls.certificate")
        assert cert is not None, (name, conv.client)
        assert _cn(cert["subject"]) == _cn(nd["Subject"]) and _cn(cert["issuer"]) == _cn(nd["Issuer"])
        if "ServerNames" in nd:  # nDPI lower-cases the SAN DNS names
            assert set(nd["ServerNames"].split(",")) <= {n.lower() for n in cert["san"]}, (name, conv.client)
    print(f"\nnDPI certificates (subject/issuer CN, SAN): {checked}/{checked} agree")
    assert checked >= 100
