"""The X.509 reader against cryptography's: the same fields for certificates cryptography builds with
arbitrary names, times, serials and alternative names, and for every leaf certificate in the shared
captures; and no crash, whatever the bytes."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.protocols import tls
from medsentry.protocols import x509 as reader
from medsentry.protocols.base import Malformed
from tests.protocols.test_peers_suricata_tls_ftp import conversations

KEY = ec.generate_private_key(ec.SECP256R1())
TEXT_TYPES = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
              NameOID.LOCALITY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.STREET_ADDRESS,
              NameOID.DOMAIN_COMPONENT, NameOID.USER_ID, NameOID.EMAIL_ADDRESS, NameOID.SERIAL_NUMBER,
              NameOID.SURNAME, x509.ObjectIdentifier("1.3.6.1.4.1.99999.7")]
STRING_TYPES = [x509.name._ASN1Type.UTF8String, x509.name._ASN1Type.PrintableString,
                x509.name._ASN1Type.BMPString, x509.name._ASN1Type.UniversalString,
                x509.name._ASN1Type.IA5String, x509.name._ASN1Type.T61String]


def reference_fields(der: bytes) -> dict[str, Any]:
    """What medsentry read with cryptography before it had its own reader."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cert = x509.load_der_x509_certificate(der)
        try:
            san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            san = san_ext.get_values_for_type(x509.DNSName) + [
                str(ip) for ip in san_ext.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            san = []
        serial = f"{cert.serial_number:X}"
        return {
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "not_before": int(cert.not_valid_before_utc.timestamp()),
            "not_after": int(cert.not_valid_after_utc.timestamp()),
            "self_signed": cert.subject == cert.issuer,
            "serial": serial.zfill(len(serial) + len(serial) % 2),
            "sha256": hashlib.sha256(der).hexdigest(),
            "san": san,
        }


def _value(draw: Any, oid: x509.ObjectIdentifier, kind: x509.name._ASN1Type) -> str:
    if kind == x509.name._ASN1Type.PrintableString:  # X.680's PrintableString characters
        alphabet = st.sampled_from("AZaz09 '()+,-./:=?")
    elif kind == x509.name._ASN1Type.IA5String:
        alphabet = st.characters(max_codepoint=0x7F)
    else:  # RFC 4514's specials, leading '#', spaces, NUL and non-Latin text among the rest
        alphabet = st.one_of(st.sampled_from(list('\\"+,;<># \0é漢')), st.characters(
            blacklist_categories=("Cs",), max_codepoint=0x2FFFF))
    return draw(st.text(alphabet, min_size=1, max_size=12))


@st.composite
def names(draw: Any) -> x509.Name:
    rdns = []
    if draw(st.booleans()):  # a country, which must be two letters
        rdns.append(x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]))
    for _ in range(draw(st.integers(0, 4))):
        attributes: dict[tuple[x509.ObjectIdentifier, str], x509.NameAttribute[str]] = {}
        for _ in range(draw(st.integers(1, 3))):  # more than one: a multi-valued RDN
            oid = draw(st.sampled_from(TEXT_TYPES))
            kind = draw(st.sampled_from(STRING_TYPES))
            value = _value(draw, oid, kind)
            if oid == NameOID.COMMON_NAME:
                value = value[:64]
            attributes[oid, value] = x509.NameAttribute(oid, value, kind)
        rdns.append(x509.RelativeDistinguishedName(list(attributes.values())))
    if draw(st.booleans()):
        unique = x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, draw(st.binary(max_size=6)),
                                    x509.name._ASN1Type.BitString)
        rdns.append(x509.RelativeDistinguishedName([unique]))
    return x509.Name(rdns)


times = st.datetimes(min_value=datetime.datetime(1950, 1, 1), max_value=datetime.datetime(9999, 12, 31),
                     timezones=st.just(datetime.UTC)).map(lambda t: t.replace(microsecond=0))
alt_names = st.lists(st.one_of(
    st.from_regex(r"\A[a-z0-9*][a-z0-9.-]{0,20}\Z").map(x509.DNSName),
    st.ip_addresses().map(x509.IPAddress),
    st.just(x509.RFC822Name("biomed@hospital.example")),
    st.just(x509.UniformResourceIdentifier("https://pacs.hospital.example/")),
), max_size=5)


def build(subject: x509.Name, issuer: x509.Name, serial: int, start: datetime.datetime,
          end: datetime.datetime, san: list[x509.GeneralName] | None) -> bytes:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(KEY.public_key()).serial_number(serial)
               .not_valid_before(start).not_valid_after(end))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(names(), names(), st.booleans(), st.integers(1, 2**159 - 1), times, times, alt_names)
def test_fields_equal_cryptographys(subject: x509.Name, issuer: x509.Name, same: bool, serial: int,
                                    start: datetime.datetime, end: datetime.datetime,
                                    san: list[x509.GeneralName]) -> None:
    start, end = sorted((start, end))  # the builder wants them in order; the reader would not mind
    der = build(subject, subject if same else issuer, serial, start, end, san)
    assert reader.certificate_fields(der) == reference_fields(der)


def test_self_signed_ignores_the_order_inside_a_multi_valued_rdn() -> None:
    cn = x509.NameAttribute(NameOID.COMMON_NAME, "mri-3t")
    ou = x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Radiology")
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    der = build(x509.Name([x509.RelativeDistinguishedName([cn, ou])]),
                x509.Name([x509.RelativeDistinguishedName([ou, cn])]), 7, start, start, None)
    fields = reader.certificate_fields(der)
    assert fields == reference_fields(der)
    assert fields["self_signed"] is True and fields["subject"] == "CN=mri-3t+OU=Radiology"


class _ServerBytes:
    """A stand-in stream parser keeping what the server sent (cleartext handshake records come first)."""

    def __init__(self) -> None:
        self.sent = bytearray()

    def feed(self, data: bytes, from_client: bool) -> list[Any]:
        if not from_client and len(self.sent) < 1 << 16:
            self.sent += data
        return []


def _leaf_certificates(sent: bytes) -> list[bytes]:
    handshake = bytearray()
    at = 0
    while at + 5 <= len(sent) and sent[at] in (tls.HANDSHAKE, tls.CHANGE_CIPHER_SPEC):
        if sent[at] == tls.CHANGE_CIPHER_SPEC:
            break
        size = int.from_bytes(sent[at + 3 : at + 5], "big")
        handshake += sent[at + 5 : at + 5 + size]
        at += 5 + size
    found = []
    at = 0
    while at + 4 <= len(handshake):
        size = int.from_bytes(handshake[at + 1 : at + 4], "big")
        if handshake[at] == 11:  # Certificate
            with contextlib.suppress(Malformed):
                if der := tls._first_certificate(handshake[at + 4 : at + 4 + size]):
                    found.append(der)
        at += 4 + size
    return found


def test_leaf_certificates_of_the_shared_captures_read_as_cryptography_reads_them(shared_data: Path) -> None:
    ders: set[bytes] = set()
    servers: list[_ServerBytes] = []

    def parser() -> _ServerBytes:
        servers.append(_ServerBytes())
        return servers[-1]

    for pcap in sorted((shared_data / "captures").rglob("*.pcap*")):  # 148 distinct leaves, 1.5 s
        with contextlib.suppress(Exception):  # captures the capture reader refuses are not ours here
            conversations(pcap, parser, ports=tls.TCP_PORTS)  # type: ignore[arg-type]
    for server in servers:
        ders.update(_leaf_certificates(bytes(server.sent)))
    read = refused = 0
    for der in sorted(ders):
        try:
            expected = reference_fields(der)
        except ValueError:  # teams.pcap's three: both refuse them
            with pytest.raises(Malformed):
                reader.certificate_fields(der)
            refused += 1
            continue
        assert reader.certificate_fields(der) == expected
        read += 1
    assert read >= 100 and refused <= 10, (read, refused)


def test_what_it_refuses() -> None:
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pump")])
    der = build(name, name, 5, start, start, None)
    for bad in (der[:-1], der + b"\x00", b"\x30\x80" + der[2:], b"", b"\x30"):
        with pytest.raises(Malformed):
            reader.certificate_fields(bad)
    v2 = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x01", 1)  # version 2: neither v1 nor v3
    assert v2 != der
    with pytest.raises(Malformed, match="version"):
        reader.certificate_fields(v2)
    month13 = der.replace(b"240101000000Z", b"241301000000Z", 1)
    assert month13 != der
    with pytest.raises(Malformed, match="time"):
        reader.certificate_fields(month13)


_SCANNER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ct-scanner"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Radiology")])
FUZZ_BASE = build(_SCANNER, _SCANNER, 99, datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
                  datetime.datetime(2034, 1, 1, tzinfo=datetime.UTC), [x509.DNSName("ct.example")])


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz(data: st.DataObject) -> None:
    der = bytearray(FUZZ_BASE)
    for _ in range(data.draw(st.integers(1, 6))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(der)))
    with contextlib.suppress(Malformed):
        fields = reader.certificate_fields(bytes(der[:cut]))
        assert isinstance(fields["subject"], str) and isinstance(fields["san"], list)

