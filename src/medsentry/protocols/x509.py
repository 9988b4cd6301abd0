"""X.509 certificates (RFC 5280), as far as an inventory needs one: subject, issuer, validity, serial
number and the subjectAltName's DNS names and IP addresses. DER, as TLS carries it.

Wire format (ASN.1 DER: tag u8 | length (< 0x80: itself; 0x81-0x84: that many big-endian bytes follow)
| contents):

    Certificate    SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE, signatureValue BIT STRING }
    TBSCertificate SEQUENCE { version [0] EXPLICIT INTEGER DEFAULT v1 (0: v1, 2: v3), serialNumber INTEGER,
                              signature SEQUENCE, issuer Name, validity SEQUENCE { notBefore Time,
                              notAfter Time }, subject Name, subjectPublicKeyInfo SEQUENCE,
                              issuerUniqueID [1] OPTIONAL, subjectUniqueID [2] OPTIONAL,
                              extensions [3] EXPLICIT SEQUENCE OF Extension OPTIONAL }
    Name           SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value (a string type) }
    Time           UTCTime "YYMMDDHHMMSSZ" (YY < 50: 20YY) | GeneralizedTime "YYYYMMDDHHMMSSZ"
    Extension      SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET
                              STRING }; subjectAltName (2.5.29.17): SEQUENCE OF GeneralName, of which
                              dNSName [2] IA5String and iPAddress [7] OCTET STRING (4 or 16 bytes)

Why not cryptography's parser: importing `cryptography.x509` takes 25-45 ms, which every analysis whose
traffic shows a certificate paid (as long as analysing 40,000 packets), for a handful of fields. Names
render as cryptography's `Name.rfc4514_string()` does (RFC 4514: last RDN first, short names CN, L, ST,
O, OU, C, STREET, DC, UID, other types as dotted OIDs) and the tests hold the two equal. It refuses what
cryptography refuses where that is cheap to see (versions other than v1/v3, repeated extensions, values
of no string type, impossible times); it does not read the parts it does not use (key, signature, other
extensions), so a certificate whose unused parts are broken still shows its names.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
from typing import Any, Final

from medsentry.protocols.base import Malformed

_SEQUENCE: Final = 0x30
_SET: Final = 0x31
_INTEGER: Final = 0x02
_OID: Final = 0x06
_UTC_TIME: Final = 0x17
_GENERALIZED_TIME: Final = 0x18
_VERSION: Final = 0xA0  # [0] EXPLICIT
_EXTENSIONS: Final = 0xA3  # [3] EXPLICIT
_DNS_NAME: Final = 0x82  # GeneralName [2] IMPLICIT IA5String
_IP_ADDRESS: Final = 0x87  # GeneralName [7] IMPLICIT OCTET STRING
_SUBJECT_ALT_NAME: Final = "2.5.29.17"

# cryptography's `_NAMEOID_TO_NAME`: the attribute types RFC 4514 strings name by a short name.
SHORT_NAMES: Final = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_X500_UNIQUE_IDENTIFIER: Final = "2.5.4.45"
_BIT_STRING: Final = 3
# The universal string types an attribute value may have, and how their contents decode (the rest of
# ASN.1's string types are UTF-8 here, as in cryptography).
_VALUE_TYPES: Final = frozenset({3, 4, 12, 18, 19, 20, 22, 23, 24, 26, 28, 30})
_CODECS: Final = {30: "utf-16-be", 28: "utf-32-be"}
# RFC 4514 section 2.4: characters escaped with a backslash inside a value
_ESCAPES: Final = str.maketrans({c: "\\" + c for c in '\\"+,;<>'} | {"\0": "\\00"})


def certificate_fields(der: bytes) -> dict[str, Any]:
    """subject, issuer (RFC 4514 strings), not_before, not_after (Unix seconds), self_signed, serial
    (upper-case hex, even length), sha256 (of the DER) and san (DNS names, then IP addresses)."""
    tag, start, end = _tlv(der, 0, len(der))
    if tag != _SEQUENCE or end != len(der):
        raise Malformed("certificate: not one DER SEQUENCE")
    tag, pos, tbs_end = _tlv(der, start, end)
    if tag != _SEQUENCE:
        raise Malformed("certificate: no TBSCertificate")
    tag, at, stop = _tlv(der, pos, tbs_end)
    if tag == _VERSION:
        tag, v_at, v_end = _tlv(der, at, stop)
        if tag != _INTEGER or v_end != stop or int.from_bytes(der[v_at:v_end], "big", signed=True) != 2:
            raise Malformed("certificate: version is neither v1 nor v3")
        tag, at, stop = _tlv(der, stop, tbs_end)
    if tag != _INTEGER or at == stop:
        raise Malformed("certificate: no serial number")
    serial = int.from_bytes(der[at:stop], "big", signed=True)
    _, _, pos = _expect(der, stop, tbs_end, _SEQUENCE, "signature algorithm")
    at, stop, pos = _expect(der, pos, tbs_end, _SEQUENCE, "issuer")
    issuer = _name(der, at, stop)
    at, validity_end, pos = _expect(der, pos, tbs_end, _SEQUENCE, "validity")
    not_before, at = _time(der, at, validity_end)
    not_after, at = _time(der, at, validity_end)
    at, stop, pos = _expect(der, pos, tbs_end, _SEQUENCE, "subject")
    subject = _name(der, at, stop)
    _, _, pos = _expect(der, pos, tbs_end, _SEQUENCE, "subject public key info")
    san: list[str] = []
    while pos < tbs_end:
        tag, at, stop = _tlv(der, pos, tbs_end)
        if tag == _EXTENSIONS:
            san = _subject_alt_names(der, at, stop)
        pos = stop
    text = f"{serial:X}"
    return {
        "subject": _rfc4514(subject),
        "issuer": _rfc4514(issuer),
        "not_before": not_before,
        "not_after": not_after,
        # as cryptography's Name equality: RDNs in order, the attributes of one as a set
        "self_signed": [frozenset(rdn) for rdn in subject] == [frozenset(rdn) for rdn in issuer],
        "serial": text.zfill(len(text) + len(text) % 2),
        "sha256": hashlib.sha256(der).hexdigest(),
        "san": san,
    }


def _tlv(b: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, contents start, contents end) of the element at `pos`, which must end by `end`."""
    if pos + 2 > end:
        raise Malformed(f"certificate: element truncated at {pos}")
    tag, first = b[pos], b[pos + 1]
    if tag & 0x1F == 0x1F:
        raise Malformed(f"certificate: multi-byte tag at {pos}")
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:
            raise Malformed(f"certificate: bad length at {pos - 1}")
        length = int.from_bytes(b[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        raise Malformed(f"certificate: element at {pos} overruns its container")
    return tag, pos, pos + length


def _expect(b: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int, int]:
    """(contents start, contents end, next element) of the `what` at `pos`, which must have `tag`."""
    found, at, stop = _tlv(b, pos, end)
    if found != tag:
        raise Malformed(f"certificate: no {what} at {pos}")
    return at, stop, stop


def _oid(b: bytes) -> str:
    if not b or b[-1] & 0x80:
        raise Malformed("certificate: bad object identifier")
    arcs: list[int] = []
    value = 0
    for byte in b:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def _name(b: bytes, pos: int, end: int) -> list[list[tuple[str, str | bytes]]]:
    """The RDNs of a Name in wire order, each a list of (type OID, value)."""
    rdns: list[list[tuple[str, str | bytes]]] = []
    while pos < end:
        at, rdn_end, pos = _expect(b, pos, end, _SET, "relative distinguished name")
        rdn: list[tuple[str, str | bytes]] = []
        while at < rdn_end:
            a_at, a_end, at = _expect(b, at, rdn_end, _SEQUENCE, "attribute")
            o_at, o_end, v_pos = _expect(b, a_at, a_end, _OID, "attribute type")
            tag, v_at, v_end = _tlv(b, v_pos, a_end)
            if v_end != a_end or tag not in _VALUE_TYPES:
                raise Malformed("certificate: attribute value of no string type")
            oid, raw = _oid(b[o_at:o_end]), b[v_at:v_end]
            value: str | bytes
            if tag == _BIT_STRING:
                if oid != _X500_UNIQUE_IDENTIFIER:
                    raise Malformed("certificate: bit string value of a text attribute")
                value = raw
            else:
                try:
                    value = raw.decode(_CODECS.get(tag, "utf-8"))
                except UnicodeDecodeError as e:
                    raise Malformed(f"certificate: attribute value: {e}") from e
            rdn.append((oid, value))
        if not rdn or len(set(rdn)) != len(rdn):
            raise Malformed("certificate: empty or repeating relative distinguished name")
        rdns.append(rdn)
    return rdns


def _rfc4514(rdns: list[list[tuple[str, str | bytes]]]) -> str:
    return ",".join("+".join(f"{SHORT_NAMES.get(oid, oid)}={_escaped(v)}" for oid, v in rdn)
                    for rdn in reversed(rdns))  # fmt: skip


def _escaped(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return "#" + value.hex() if value else ""
    if not value:
        return ""
    value = value.translate(_ESCAPES)
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def _time(b: bytes, pos: int, end: int) -> tuple[int, int]:
    """(Unix seconds, next element) of the Time at `pos`."""
    tag, at, stop = _tlv(b, pos, end)
    text = b[at:stop]
    if tag == _UTC_TIME and len(text) == 13:
        digits, year_digits = text[:12], 2
    elif tag == _GENERALIZED_TIME and len(text) == 15:  # RFC 5280: no fractions of a second
        digits, year_digits = text[:14], 4
    else:
        raise Malformed("certificate: validity time of no known form")
    if text[-1:] != b"Z" or not digits.isdigit():
        raise Malformed("certificate: validity time not in UTC digits")
    year = int(digits[:year_digits])
    if year_digits == 2:
        year += 2000 if year < 50 else 1900
    month, day, hour, minute, second = (int(digits[i : i + 2]) for i in range(year_digits, len(digits), 2))
    try:
        when = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError as e:
        raise Malformed(f"certificate: validity time: {e}") from e
    return int(when.timestamp()), stop


def _subject_alt_names(b: bytes, pos: int, end: int) -> list[str]:
    """DNS names, then IP addresses, of the subjectAltName among the extensions at `pos`."""
    at, stop, _ = _expect(b, pos, end, _SEQUENCE, "extensions")
    seen: set[str] = set()
    dns: list[str] = []
    ips: list[str] = []
    while at < stop:
        e_at, e_end, at = _expect(b, at, stop, _SEQUENCE, "extension")
        o_at, o_end, pos = _expect(b, e_at, e_end, _OID, "extension id")
        oid = _oid(b[o_at:o_end])
        if oid in seen:
            raise Malformed(f"certificate: extension {oid} repeated")
        seen.add(oid)
        if oid != _SUBJECT_ALT_NAME:
            continue
        tag, v_at, v_end = _tlv(b, pos, e_end)
        if tag == 0x01:  # critical BOOLEAN
            tag, v_at, v_end = _tlv(b, v_end, e_end)
        if tag != 0x04:
            raise Malformed("certificate: subjectAltName without its OCTET STRING")
        n_at, n_end, _ = _expect(b, v_at, v_end, _SEQUENCE, "subjectAltName names")
        while n_at < n_end:
            tag, g_at, n_at = _tlv(b, n_at, n_end)
            if tag == _DNS_NAME:
                try:
                    dns.append(b[g_at:n_at].decode("ascii"))
                except UnicodeDecodeError as e:
                    raise Malformed(f"certificate: dNSName: {e}") from e
            elif tag == _IP_ADDRESS and n_at - g_at in (4, 16):
                ips.append(str(ipaddress.ip_address(b[g_at:n_at])))
    return dns + ips
