from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import itertools
import json
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import tls
from medsentry.protocols.base import Malformed, Message
from tests.protocols.test_peers_suricata_tls_ftp import conversations

GREASE_CIPHER, GREASE_EXT = 0x2A2A, 0x9A9A
# The worked example of the FoxIO JA4 specification (technical_details/JA4.md)
SPEC_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014,
                0x009C, 0x009D, 0x002F, 0x0035]
SPEC_EXTS = [0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D, 0x0005, 0x0023, 0x0012,
             0x002B, 0xFF01, 0x000B, 0x000A, 0x0015]
SPEC_SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
SPEC_JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"


def vec(size: int, data: bytes) -> bytes:
    return len(data).to_bytes(size, "big") + data


def u16s(values: list[int]) -> bytes:
    return struct.pack(f"!{len(values)}H", *values)


def ext_data(ext: int, sni: str = "pacs.hospital.local") -> bytes:
    """Well-formed contents for the extensions the parser reads; the others may be empty."""
    return {
        0x0000: vec(2, b"\x00" + vec(2, sni.encode())),
        0x000A: vec(2, u16s([0x3A3A, 0x001D, 0x0017, 0x0018])),
        0x000B: vec(1, b"\x00"),
        0x000D: vec(2, u16s(SPEC_SIGALGS)),
        0x0010: vec(2, vec(1, b"h2") + vec(1, b"http/1.1")),
        0x002B: vec(1, u16s([0x5A5A, 0x0304, 0x0303])),
    }.get(ext, b"")


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + vec(3, body)


def client_hello_body(ciphers: list[int], exts: list[int], version: int = 0x0303) -> bytes:
    extensions = b"".join(struct.pack("!H", e) + vec(2, ext_data(e)) for e in exts)
    return (struct.pack("!H", version) + bytes(32) + vec(1, bytes(32)) + vec(2, u16s(ciphers))
            + vec(1, b"\x00") + vec(2, extensions))


def server_hello_body(cipher: int, exts: list[tuple[int, bytes]], random: bytes = bytes(32)) -> bytes:
    extensions = b"".join(struct.pack("!H", e) + vec(2, d) for e, d in exts)
    return struct.pack("!H", 0x0303) + random + vec(1, b"") + struct.pack("!H", cipher) + b"\x00" + vec(
        2, extensions)


def record(content_type: int, fragment: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", content_type, version, len(fragment)) + fragment


def spec_hello() -> bytes:
    return client_hello_body([GREASE_CIPHER, *SPEC_CIPHERS], [GREASE_EXT, *SPEC_EXTS])


@pytest.fixture(scope="module")
def certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Virtual General Hospital"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "infusion-7731.hospital.local")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x0ABC).not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(datetime.datetime(2034, 1, 1, tzinfo=datetime.UTC))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("infusion-7731.hospital.local"),
                                                        x509.IPAddress(ipaddress.ip_address("10.77.0.121"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))


def tls12_session(der: bytes) -> tuple[bytes, bytes]:
    """(client bytes, server bytes) of a TLS 1.2 handshake up to the encrypted Finished."""
    client = record(tls.HANDSHAKE, handshake(1, spec_hello()), 0x0301)
    client += record(tls.HANDSHAKE, handshake(16, vec(1, bytes(65))))  # ClientKeyExchange
    client += record(tls.CHANGE_CIPHER_SPEC, b"\x01") + record(tls.HANDSHAKE, bytes(40))  # encrypted Finished
    server = handshake(2, server_hello_body(0xC02F, [(0xFF01, b"\x00"), (0x000B, vec(1, b"\x00"))]))
    server += handshake(11, vec(3, vec(3, der) + vec(3, der)))
    server += handshake(14, b"")
    server = record(tls.HANDSHAKE, server[:100]) + record(tls.HANDSHAKE, server[100:])  # spans records
    return client, server + record(tls.CHANGE_CIPHER_SPEC, b"\x01") + record(tls.HANDSHAKE, bytes(40))


def run(parser: tls.StreamParser, client: bytes, server: bytes) -> list[Message]:
    return parser.feed(client, True) + parser.feed(server, False)


def test_ja4_matches_the_specification_example() -> None:
    fields = tls.parse_client_hello(spec_hello())
    assert fields["ja4"] == SPEC_JA4
    assert fields["sni"] == "pacs.hospital.local"
    assert fields["alpn"] == ["h2", "http/1.1"]
    assert fields["versions"] == [0x0304, 0x0303]  # GREASE removed
    assert fields["ciphers"] == SPEC_CIPHERS and fields["extensions"] == SPEC_EXTS
    assert fields["sig_algs"] == SPEC_SIGALGS and fields["groups"] == [0x1D, 0x17, 0x18]


def test_ja3_is_the_salesforce_string_and_md5() -> None:
    fields = tls.parse_client_hello(spec_hello())
    expected = "771,{},{},29-23-24,0".format("-".join(map(str, SPEC_CIPHERS)), "-".join(map(str, SPEC_EXTS)))
    assert fields["ja3_string"] == expected
    assert fields["ja3"] == hashlib.md5(expected.encode()).hexdigest()


def test_ja4_edge_cases() -> None:
    # no SNI, no ALPN, no signature_algorithms: "i", "00" and no "_" before hashing the extensions
    fields = tls.parse_client_hello(client_hello_body([0x002F], [0x000A, 0x000B], version=0x0301))
    exts = hashlib.sha256(b"000a,000b").hexdigest()[:12]
    assert fields["ja4"] == f"t10i010200_{hashlib.sha256(b'002f').hexdigest()[:12]}_{exts}"
    # nothing at all: twelve zeros for each empty list
    assert tls.parse_client_hello(client_hello_body([], []))["ja4"] == "t12i000000_000000000000_000000000000"
    # QUIC: the quic_transport_parameters extension makes it "q"
    assert tls.parse_client_hello(client_hello_body([0x1301], [0x0039]))["ja4"].startswith("q12i0101")


@pytest.mark.parametrize(("alpn", "expected"), [
    (b"h2", "h2"), (b"http/1.1", "h1"), (b"x", "xx"), (b"\xab", "ab"), (b"\xab\xcd", "ad"),
    (b"0\xab", "3b"), (b"01\xab\xcd", "3d"), (b"0\xab\xcd1", "01"),  # the specification's examples
])
def test_ja4_alpn_characters(alpn: bytes, expected: str) -> None:
    assert tls._ja4_alpn(alpn) == expected


def test_full_tls12_handshake(certificate: x509.Certificate) -> None:
    der = certificate.public_bytes(serialization.Encoding.DER)
    messages = run(tls.StreamParser(), *tls12_session(der))
    assert [(m.kind, m.from_client) for m in messages] == [
        ("tls.client_hello", True), ("tls.server_hello", False), ("tls.certificate", False)]
    hello, server, cert = (m.fields for m in messages)
    assert hello["record_version"] == 0x0301 and hello["ja4"] == SPEC_JA4
    assert server["version"] == 0x0303 and server["version_name"] == "TLSv1.2" and server["cipher"] == 0xC02F
    assert server["ja3s_string"] == "771,49199,65281-11"
    assert server["ja3s"] == hashlib.md5(b"771,49199,65281-11").hexdigest()
    assert cert == {
        "subject": "CN=infusion-7731.hospital.local,O=Virtual General Hospital",
        "issuer": "CN=infusion-7731.hospital.local,O=Virtual General Hospital",
        "not_before": 1704067200, "not_after": 2019686400, "self_signed": True, "serial": "0ABC",
        "sha256": hashlib.sha256(der).hexdigest(), "san": ["infusion-7731.hospital.local", "10.77.0.121"],
    }


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3000), max_size=12), st.booleans())
def test_any_segmentation_gives_the_same_messages(cuts: list[int], client_first: bool) -> None:
    client, server = tls12_session(_DER)
    whole = run(tls.StreamParser(), client, server)
    parser, got = tls.StreamParser(), []
    pieces = [(p, True) for p in _split(client, cuts)] + [(p, False) for p in _split(server, cuts)]
    if not client_first:
        pieces.sort(key=lambda piece: piece[1])  # all server bytes first: directions are independent
    for piece, from_client in pieces:
        got += parser.feed(piece, from_client)
    assert sorted(map(repr, got)) == sorted(map(repr, whole))


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _self_signed_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fhir.hospital.local")])
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


_DER = _self_signed_der()


def test_tls13_stops_at_encrypted_records() -> None:
    parser = tls.StreamParser()
    parser.feed(record(tls.HANDSHAKE, handshake(1, spec_hello())), True)
    sh = handshake(2, server_hello_body(0x1301, [(0x002B, b"\x03\x04"), (0x0033, bytes(36))]))
    messages = parser.feed(record(tls.HANDSHAKE, sh) + record(tls.CHANGE_CIPHER_SPEC, b"\x01")
                           + record(tls.APPLICATION_DATA, bytes(300)), False)
    assert [m.fields["version"] for m in messages] == [0x0304]
    assert messages[0].fields["legacy_version"] == 0x0303
    # whatever follows is ciphertext: not parsed, not an error
    assert parser.feed(record(tls.HANDSHAKE, b"\x0b" + bytes(50)), False) == []
    assert parser.feed(b"\xff" * 100, False) == []


def test_hello_retry_request_is_flagged() -> None:
    body = server_hello_body(0x1301, [(0x002B, b"\x03\x04")], random=tls._HRR_RANDOM)
    [message] = tls.StreamParser().feed(record(tls.HANDSHAKE, handshake(2, body)), False)
    assert message.fields["hello_retry_request"] is True


def test_alerts() -> None:
    parser = tls.StreamParser()
    hello = record(tls.HANDSHAKE, handshake(1, spec_hello()))
    warning = record(tls.ALERT, b"\x01\x70")  # unrecognized_name: the handshake continues
    sh = record(tls.HANDSHAKE, handshake(2, server_hello_body(0x002F, [])))
    fatal = record(tls.ALERT, b"\x02\x28")  # handshake_failure
    parser.feed(hello, True)
    kinds = [(m.kind, m.fields.get("level")) for m in parser.feed(warning + sh + fatal + sh, False)]
    assert kinds == [("tls.alert", 1), ("tls.server_hello", None), ("tls.alert", 2)]


def test_leaf_certificate_of_a_chain_beyond_the_budget() -> None:
    chain = vec(3, _DER) + vec(3, bytes(100_000))
    message = handshake(11, vec(3, chain))
    stream = b"".join(record(tls.HANDSHAKE, message[i : i + 16_000]) for i in range(0, len(message), 16_000))
    parser = tls.StreamParser()
    messages = [m for i in range(0, len(stream), 1460) for m in parser.feed(stream[i : i + 1460], False)]
    assert [m.kind for m in messages] == ["tls.certificate"]
    assert messages[0].fields["subject"] == "CN=fhir.hospital.local"


def test_work_is_bounded() -> None:
    parser = tls.StreamParser()
    heartbeat = record(tls.HEARTBEAT, bytes(16_000))
    for _ in range(100):  # 1.6 MB: only the first 64 KiB are looked at
        assert parser.feed(heartbeat, True) == []
    assert parser._client.done and len(parser._client.pending) < 20_000


def test_malformed() -> None:
    with pytest.raises(Malformed):
        tls.StreamParser().feed(b"GET / HTTP/1.1\r\n\r\n", True)
    with pytest.raises(Malformed):  # cipher_suites longer than the message
        tls.parse_client_hello(struct.pack("!H", 0x0303) + bytes(32) + b"\x00" + b"\x00\xff\x00\x2f")
    # a good ClientHello followed by garbage in the same segment: the hello is kept
    parser = tls.StreamParser()
    messages = parser.feed(record(tls.HANDSHAKE, handshake(1, spec_hello())) + b"\x99" * 10, True)
    assert [m.kind for m in messages] == ["tls.client_hello"]
    assert parser.feed(record(tls.HANDSHAKE, handshake(1, spec_hello())), True) == []


def test_looks_like() -> None:
    assert tls.looks_like(record(tls.HANDSHAKE, handshake(1, spec_hello()), 0x0301))
    assert tls.looks_like(b"\x16\x03\x01")
    assert not tls.looks_like(b"\x16\x03\x01\x00\x10\x02")  # a ServerHello does not open a connection
    assert not tls.looks_like(b"GET / HTTP/1.1\r\n")
    assert not tls.looks_like(b"\x17\x03\x03\x00\x10")


def test_mid_stream() -> None:
    data = record(tls.APPLICATION_DATA, bytes(300))
    assert tls.mid_stream(data) and tls.mid_stream(data + data) and tls.mid_stream(data[:5])
    assert tls.mid_stream(record(tls.HANDSHAKE, handshake(2, server_hello_body(0x002F, []))))
    assert tls.mid_stream(data + record(tls.ALERT, b"\x01\x00")[:3])  # the next header not all there
    assert not tls.mid_stream(data + b"GET / HTTP/1.1\r\n")  # the next header must be one too
    assert not tls.mid_stream(b"\x17\x03\x05\x00\x10" + bytes(16))  # no TLS 1.4
    assert not tls.mid_stream(b"\x17\x03\x03\x00\x00")  # empty application data
    assert not tls.mid_stream(b"\x17\x03\x03\x48\x01")  # longer than a record can be
    assert not tls.mid_stream(b"\x17\x03\x03")  # not even one header
    assert not tls.mid_stream(b"GET / HTTP/1.1\r\n")


def test_connections_picked_up_after_their_handshake(tmp_path: Path) -> None:
    """A capture started while a TLS session was open: on a TLS port the flow is labelled TLS (and a
    ServerHello still to come is decoded); the same bytes on another port are not called TLS."""
    from medsentry.pipeline import observe_files
    from tests.decode.test_flows import pcap_records, tcp

    pacs, modality = ("10.0.0.10", 2762), ("10.0.0.20", 50000)
    web, browser = ("10.0.0.11", 8080), ("10.0.0.21", 50001)
    hello_server, hello_client = ("10.0.0.12", 443), ("10.0.0.22", 50002)
    ACK_PSH = 0x18
    app = record(tls.APPLICATION_DATA, bytes(200))
    frames = [
        tcp(modality, pacs, ACK_PSH, 1000, app),  # DICOM over TLS, mid-session
        tcp(pacs, modality, ACK_PSH, 5000, app),
        tcp(browser, web, ACK_PSH, 1000, app),  # the same on a port that is not a TLS one
        tcp(web, browser, ACK_PSH, 5000, app),
        tcp(hello_server, hello_client, ACK_PSH, 7000,  # picked up at the ServerHello
            record(tls.HANDSHAKE, handshake(2, server_hello_body(0xC02F, [])))),
    ]  # fmt: skip
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    pcap = tmp_path / "mid.pcap"
    pcap.write_bytes(header + pcap_records([(1_700_000_000 + i, f) for i, f in enumerate(frames)]))
    observations, _ = observe_files([pcap])
    apps = {o.fields["server_port"]: o.fields["app"] for o in observations if o.kind == "flow"}
    assert apps == {2762: "tls", 8080: None, 443: "tls"}
    [hello] = [o for o in observations if o.kind == "tls.server_hello"]
    assert hello.fields["cipher"] == 0xC02F and hello.src_ip == "10.0.0.12"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.booleans())
def test_fuzz_random_bytes(data: bytes, from_client: bool) -> None:
    for parse in (lambda: tls.StreamParser().feed(b"\x16\x03\x01" + data, from_client),
                  lambda: tls.parse_client_hello(data), lambda: tls.parse_server_hello(data)):
        with contextlib.suppress(Malformed):
            parse()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_handshake(data: st.DataObject) -> None:
    client, server = tls12_session(_DER)
    stream = bytearray(data.draw(st.sampled_from([client, server])))
    for _ in range(data.draw(st.integers(1, 8))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    stream = stream[: data.draw(st.integers(0, len(stream)))]
    parser = tls.StreamParser()
    for piece in _split(bytes(stream), data.draw(st.lists(st.integers(0, 3000), max_size=6))):
        with contextlib.suppress(Malformed):
            parser.feed(piece, data.draw(st.booleans()))


def test_virtual_hospital_labels(shared_data: Path) -> None:
    """ehr serves a self-signed CN=fhir.hospital.local certificate; both infusion pumps (same firmware,
    labelled "tls12_embedded") send one TLS 1.2-only fingerprint, unlike the workstation's client."""
    pcap = shared_data / "captures/virtual-hospital/general-hospital-normal-60s.pcap"
    labels = {d["name"]: d for d in map(json.loads, Path(f"{pcap}.labels.jsonl").read_text().splitlines())
              if d.get("type") == "device"}
    convs = conversations(pcap, tls.StreamParser, ports=tls.TCP_PORTS)
    assert convs and not any(c.malformed for c in convs)
    certs = {(c.server[0], m.fields["subject"], m.fields["self_signed"])
             for c in convs for m in c.messages if m.kind == "tls.certificate"}
    ehr = labels["ehr"]
    cn, _, note = ehr["protocols"]["tls"]["server_cert"].partition(" ")
    assert [(ip, self_signed) for ip, subject, self_signed in certs if cn in subject.split(",")] == [
        (ehr["ip"], note == "(self-signed)")]
    ja4 = {}
    for c in convs:
        hello = c.first("tls.client_hello")
        assert hello is not None and hello["sni"] == "fhir.hospital.local"
        ja4.setdefault(c.client[0], set()).add(hello["ja4"])
    pumps = [d["ip"] for d in labels.values() if d.get("protocols", {}).get("tls", {}).get("client_style")
             == "tls12_embedded"]
    assert len(pumps) == 2 and ja4[pumps[0]] == ja4[pumps[1]] != ja4[labels["ws1"]["ip"]]
    assert all(fp.startswith("t12") for fp in ja4[pumps[0]])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_DER) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(1, len(_DER)))
def test_fuzz_certificate_der(flips: list[tuple[int, int]], length: int) -> None:
    der = bytearray(_DER)
    for position, value in flips:
        der[position] = value
    with contextlib.suppress(Malformed):
        tls._certificate_fields(bytes(der[:length]))


def test_repeated_client_hellos_are_parsed_once_and_returned_as_copies() -> None:
    body = spec_hello()
    other = body[:2] + bytes(range(32)) + vec(1, b"\x07" * 16) + body[35 + 32 :]  # new random, session id
    first = tls._client_hello_fields(body)
    assert first == tls.parse_client_hello(body)
    first["ciphers"].append(1)
    first["record_version"] = 0x0301
    again = tls._client_hello_fields(other)
    assert again == tls.parse_client_hello(other) == tls.parse_client_hello(body)
    assert tls._client_hello_fields(client_hello_body([0x002F], [])) == tls.parse_client_hello(
        client_hello_body([0x002F], []))  # fmt: skip
    with pytest.raises(Malformed):
        tls._client_hello_fields(body[:20])


def test_repeated_server_hellos_are_parsed_once_and_returned_as_copies() -> None:
    exts = [(0xFF01, b"\x00"), (0x0017, b"")]  # renegotiation_info, extended_master_secret
    body = server_hello_body(0xC02F, exts)
    other = body[:2] + bytes(range(32)) + vec(1, b"\x07" * 16) + body[35:]  # new random, session id
    first = tls._server_hello_fields(body)
    assert first == tls.parse_server_hello(body) and "hello_retry_request" not in first
    first["extensions"].append(1)
    again = tls._server_hello_fields(other)
    assert again == tls.parse_server_hello(other) == tls.parse_server_hello(body)
    # the same body with the HelloRetryRequest random is not the same answer
    retry = tls._server_hello_fields(server_hello_body(0xC02F, exts, tls._HRR_RANDOM))
    assert retry["hello_retry_request"] is True
    assert "hello_retry_request" not in tls._server_hello_fields(body)
    assert tls._server_hello_fields(server_hello_body(0x009C, [])) == tls.parse_server_hello(
        server_hello_body(0x009C, []))  # fmt: skip
    with pytest.raises(Malformed):
        tls._server_hello_fields(body[:20])


@given(st.lists(st.integers(min_value=0, max_value=0xFFFF), max_size=60))
def test_ja4_hex_lists_as_formatted_one_by_one(values: list[int]) -> None:
    assert tls._hex16(values) == ",".join(f"{v:04x}" for v in values)
