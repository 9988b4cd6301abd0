"""TLS handshake (RFC 5246, RFC 8446): ClientHello, ServerHello, the cleartext certificate, alerts.

Wire format (big-endian):

    record       content_type u8 (20 change_cipher_spec, 21 alert, 22 handshake, 23 application_data)
                 | version u16 | length u16 | fragment[length]
    handshake    msg_type u8 | length u24 | body[length]; a message may span records, a record may hold
                 several messages
    ClientHello  legacy_version u16 | random[32] | session_id<u8> | cipher_suites<u16>
                 | compression_methods<u8> | extensions<u16>
    ServerHello  legacy_version u16 | random[32] | session_id<u8> | cipher_suite u16
                 | compression_method u8 | [extensions<u16>]
    extension    extension_type u16 | extension_data<u16>
    Certificate  certificate_list<u24> of cert_data<u24> (DER X.509, leaf first; cleartext up to TLS 1.2)
    Alert        level u8 | description u8

`<uN>` is a vector prefixed by its N-byte length. Fingerprints: JA3/JA3S as salesforce/ja3 (decimal
values, GREASE removed from JA3, MD5) and JA4 as the FoxIO JA4 specification.

After a ChangeCipherSpec (TLS <= 1.2), a fatal alert or application data everything else in that direction
is ciphertext or nothing, so the direction stops there, or after 64 KiB.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any, Final

from medsentry.protocols import x509
from medsentry.protocols.base import Malformed, Message, remembered

NAME: Final = "tls"
# HTTPS, SMTPS, NNTPS, LDAPS, DNS over TLS, FTPS, telnets, IMAPS, IRCS, POP3S, DICOM TLS, LDAPS GC,
# SIP-TLS, AMQPS, syslog-TLS, MQTTS and the usual alternates.
TCP_PORTS: Final = frozenset(
    {443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 2762, 3269, 4433, 5061, 5671, 6514, 8443,
     8883, 9443, 11113}
)

CHANGE_CIPHER_SPEC: Final = 20
ALERT: Final = 21
HANDSHAKE: Final = 22
APPLICATION_DATA: Final = 23
HEARTBEAT: Final = 24
CLIENT_HELLO: Final = 1
SERVER_HELLO: Final = 2
CERTIFICATE: Final = 11
SERVER_HELLO_DONE: Final = 14
EXT_SERVER_NAME: Final = 0
EXT_SUPPORTED_GROUPS: Final = 10
EXT_EC_POINT_FORMATS: Final = 11
EXT_SIGNATURE_ALGORITHMS: Final = 13
EXT_ALPN: Final = 16
EXT_SUPPORTED_VERSIONS: Final = 43
EXT_QUIC_TRANSPORT_PARAMETERS: Final = 57
TLS13: Final = 0x0304

GREASE: Final = frozenset(0x0A0A + 0x1010 * i for i in range(16))  # RFC 8701
VERSION_NAMES: Final = {0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1",
                        0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
_JA4_VERSIONS: Final = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
                        0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}
# ServerHello.random of a HelloRetryRequest (RFC 8446 section 4.1.3)
_HRR_RANDOM: Final = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

_RECORD: Final = struct.Struct("!BHH")  # content_type, version, length
_RECORD_TYPES: Final = frozenset({CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT})
_MAX_RECORD: Final = 2**14 + 2048  # TLSCiphertext limit, RFC 5246 section 6.2.3
_BUDGET: Final = 64 * 1024  # bytes looked at per direction: a handshake is a few KiB


def looks_like(head: bytes) -> bool:
    """A handshake record of SSLv3..TLS 1.3 that starts with a ClientHello."""
    return len(head) >= 3 and head[0] == HANDSHAKE and head[1] == 3 and head[2] <= 4 and (
        len(head) < 6 or head[5] == CLIENT_HELLO)


def mid_stream(head: bytes) -> bool:
    """A connection picked up after its handshake (a capture started while it was open: long-lived HL7,
    DICOM or MQTT sessions over TLS): a record header of SSLv3..TLS 1.3, and the next one too where the
    bytes reach it. Nothing in such a flow is decoded, but it is labelled TLS."""
    off, headers = 0, 0
    while len(head) - off >= 5:
        content_type, version, length = _RECORD.unpack_from(head, off)
        if content_type not in _RECORD_TYPES or version >> 8 != 3 or version & 0xFF > 4:
            return False
        if not 0 < length <= _MAX_RECORD:
            return False
        off, headers = off + 5 + length, headers + 1
    return headers > 0


class _Reader:
    """Bounds-checked big-endian reads over one handshake body."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.buf):
            raise Malformed("truncated handshake message")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_size: int) -> memoryview:
        return self.take(self.uint(length_size))

    def at_end(self) -> bool:
        return self.pos >= len(self.buf)


def _u16s(data: memoryview) -> list[int]:
    if len(data) % 2:
        raise Malformed("odd length in a list of 16-bit values")
    return list(struct.unpack(f"!{len(data) // 2}H", data))


def _extensions(r: _Reader) -> list[tuple[int, memoryview]]:
    if r.at_end():  # the extensions block is optional before TLS 1.2
        return []
    block = _Reader(r.vector(2))
    out = []
    while not block.at_end():
        out.append((block.uint(2), block.vector(2)))
    return out


def _text(data: bytes | memoryview) -> str:
    return bytes(data).decode("ascii", "replace")


def _server_name(data: memoryview) -> str | None:
    names = _Reader(_Reader(data).vector(2))
    while not names.at_end():
        name_type, name = names.uint(1), names.vector(2)
        if name_type == 0:  # host_name
            return _text(name)
    return None


def _alpn(data: memoryview) -> list[bytes]:
    protocols = _Reader(_Reader(data).vector(2))
    out = []
    while not protocols.at_end():
        out.append(bytes(protocols.vector(1)))
    return out


def _hash12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def _ja4_alpn(protocol: bytes) -> str:
    if not protocol:
        return "00"
    first, last = protocol[:1], protocol[-1:]
    if first.isalnum() and last.isalnum():  # bytes.isalnum is ASCII-only, as the spec wants
        return (first + last).decode()
    hexed = protocol.hex()
    return hexed[0] + hexed[-1]


def _ja4(ciphers: list[int], extensions: list[int], versions: list[int], legacy_version: int,
         alpn: list[bytes], sig_algs: list[int]) -> str:
    """JA4 (FoxIO): inputs in wire order with GREASE already removed."""
    transport = "q" if EXT_QUIC_TRANSPORT_PARAMETERS in extensions else "t"
    version = _JA4_VERSIONS.get(max(versions) if versions else legacy_version, "00")
    sni = "d" if EXT_SERVER_NAME in extensions else "i"
    a = (f"{transport}{version}{sni}{min(len(ciphers), 99):02d}{min(len(extensions), 99):02d}"
         f"{_ja4_alpn(alpn[0] if alpn else b'')}")
    b = _hash12(_hex16(sorted(ciphers)))
    exts = _hex16(sorted(e for e in extensions if e not in (EXT_SERVER_NAME, EXT_ALPN)))
    sigs = _hex16(sig_algs)
    return f"{a}_{b}_{_hash12(f'{exts}_{sigs}' if sigs else exts)}"


def _hex16(values: list[int]) -> str:
    """16-bit values as comma-separated 4-digit hex, as JA4 lists them. Formatted by `bytes.hex`: compiled,
    an f-string's format spec is a method call per value (≈ 2,600 instructions; a ClientHello has 40)."""
    return struct.pack(f"!{len(values)}H", *values).hex(",", 2)


def _dashed(values: list[int]) -> str:
    return "-".join(map(str, values))


def parse_client_hello(body: bytes | memoryview) -> dict[str, Any]:
    """Fields of a ClientHello body (the handshake message without its 4-byte header).

    Also serves QUIC, whose CRYPTO frames carry the same message; JA4 then starts with "q" because of the
    quic_transport_parameters extension, as in FoxIO's implementation.
    """
    r = _Reader(body)
    version = r.uint(2)
    r.take(32)  # random
    r.vector(1)  # session_id
    ciphers = _u16s(r.vector(2))
    r.vector(1)  # compression_methods
    extensions = _extensions(r)

    fields: dict[str, Any] = {"version": version}
    alpn: list[bytes] = []
    versions: list[int] = []
    groups: list[int] = []
    point_formats: list[int] = []
    sig_algs: list[int] = []
    for ext_type, data in extensions:
        if ext_type == EXT_SERVER_NAME and data:  # an empty server_name extension names nothing
            sni = _server_name(data)
            if sni is not None:
                fields["sni"] = sni
        elif ext_type == EXT_SUPPORTED_GROUPS:
            groups = [g for g in _u16s(_Reader(data).vector(2)) if g not in GREASE]
        elif ext_type == EXT_EC_POINT_FORMATS:
            point_formats = list(_Reader(data).vector(1))
        elif ext_type == EXT_SIGNATURE_ALGORITHMS:
            sig_algs = [s for s in _u16s(_Reader(data).vector(2)) if s not in GREASE]
        elif ext_type == EXT_ALPN:
            alpn = _alpn(data)
        elif ext_type == EXT_SUPPORTED_VERSIONS:
            versions = [v for v in _u16s(_Reader(data).vector(1)) if v not in GREASE]

    ciphers = [c for c in ciphers if c not in GREASE]
    ext_types = [t for t, _ in extensions if t not in GREASE]
    ja3_string = (f"{version},{_dashed(ciphers)},{_dashed(ext_types)},{_dashed(groups)},"
                  f"{_dashed(point_formats)}")
    fields.update(
        versions=versions,
        ciphers=ciphers,
        extensions=ext_types,
        groups=groups,
        ec_point_formats=point_formats,
        sig_algs=sig_algs,
        alpn=[_text(p) for p in alpn],
        ja3_string=ja3_string,
        ja3=hashlib.md5(ja3_string.encode()).hexdigest(),
        ja4=_ja4(ciphers, ext_types, versions, version, alpn, sig_algs),
    )
    return fields


def parse_server_hello(body: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Fields of a ServerHello body; `version` is the negotiated one (supported_versions if present)."""
    r = _Reader(body)
    legacy_version = r.uint(2)
    random = r.take(32)
    r.vector(1)  # session_id
    cipher = r.uint(2)
    r.take(1)  # compression_method
    extensions = _extensions(r)

    version = legacy_version
    fields: dict[str, Any] = {}
    for ext_type, data in extensions:
        if ext_type == EXT_SUPPORTED_VERSIONS and len(data) == 2:
            version = int.from_bytes(data, "big")
        elif ext_type == EXT_ALPN:
            selected = _alpn(data)
            if selected:
                fields["alpn"] = _text(selected[0])
    ext_types = [t for t, _ in extensions]
    ja3s_string = f"{legacy_version},{cipher},{_dashed(ext_types)}"  # salesforce/ja3 keeps GREASE here
    fields.update(
        version=version,
        version_name=VERSION_NAMES.get(version) or f"0x{version:04x}",
        legacy_version=legacy_version,
        cipher=cipher,
        extensions=ext_types,
        ja3s_string=ja3s_string,
        ja3s=hashlib.md5(ja3s_string.encode()).hexdigest(),
    )
    if random == _HRR_RANDOM:
        fields["hello_retry_request"] = True
    return fields


# distinct hellos remembered, per kind (a device repeats its own on every connection)
_HELLO_CACHE_MAX: Final = 4096
_CLIENT_HELLOS: Final[dict[bytes, dict[str, Any]]] = {}
_SERVER_HELLOS: Final[dict[bytes, dict[str, Any]]] = {}


def _client_hello_fields(body: bytes | bytearray | memoryview) -> dict[str, Any]:
    """`parse_client_hello`, remembered (`_remembered`): on big-1of4, 876 ClientHellos are 12 distinct."""
    return _remembered(bytes(body), parse_client_hello, _CLIENT_HELLOS)


def _server_hello_fields(body: bytes | bytearray | memoryview) -> dict[str, Any]:
    """`parse_server_hello`, remembered (`_remembered`): a TLS 1.2 server answers every client alike; a
    TLS 1.3 one sends a fresh key share each time, so those are parsed anew."""
    return _remembered(bytes(body), parse_server_hello, _SERVER_HELLOS)


def _remembered(
    b: bytes, parse: Callable[[bytes], dict[str, Any]], cache: dict[bytes, dict[str, Any]]
) -> dict[str, Any]:
    """A hello's fields, remembered per body without its random and session id, which no field reports
    (only whether the random is a HelloRetryRequest's). Lists are copied: callers may change them."""
    if len(b) < 35 or 35 + b[34] > len(b):
        return parse(b)  # too short: let the parser say how
    key = b[:2] + (b"R" if b[2:34] == _HRR_RANDOM else b"-") + b[35 + b[34] :]
    fields = remembered(cache, _HELLO_CACHE_MAX, key, parse, b)
    return {k: list(v) if isinstance(v, list) else v for k, v in fields.items()}


_CERT_CACHE: Final[dict[bytes, dict[str, Any]]] = {}
# distinct leaf certificates remembered (a server sends the same one every time)
_CERT_CACHE_MAX: Final = 4096


def _certificate_fields(der: bytes) -> dict[str, Any]:
    fields = remembered(_CERT_CACHE, _CERT_CACHE_MAX, der, x509.certificate_fields, der)
    return {**fields, "san": list(fields["san"])}


def _first_certificate(body: bytearray) -> bytes | None:
    """The leaf certificate's DER, or None while the (possibly partial) body does not hold all of it."""
    if len(body) < 6:
        return None
    size = int.from_bytes(body[3:6], "big")
    if size == 0 or int.from_bytes(body[:3], "big") < size + 3:
        raise Malformed("bad certificate_list")
    return bytes(body[6 : 6 + size]) if len(body) >= 6 + size else None


class _Direction:
    __slots__ = ("certificate_done", "done", "handshake", "need", "pending", "seen")

    def __init__(self) -> None:
        self.pending = bytearray()  # an incomplete record
        self.need = 5  # bytes `pending` must reach before it can be decoded
        self.handshake = bytearray()  # handshake bytes not yet forming a whole message
        self.seen = 0
        self.done = False
        self.certificate_done = False


class StreamParser:
    """One TLS connection: records reassembled per direction, handshake messages across records."""

    __slots__ = ("_client", "_server", "_tls13")

    def __init__(self) -> None:
        self._client = _Direction()
        self._server = _Direction()
        self._tls13 = False

    @property
    def done(self) -> bool:
        """Both handshakes are over (or given up on): nothing more comes out of the connection."""
        return self._client.done and self._server.done

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        d = self._client if from_client else self._server
        if d.done or not data:
            return []
        data = data[: _BUDGET - d.seen]
        d.seen += len(data)
        out: list[Message] = []
        try:
            self._records(d, data, from_client, out)
        except Malformed:
            d.done = True
            if not out:
                raise
            # keep what was decoded before the bad bytes
        if d.seen >= _BUDGET:
            d.done = True
        return out

    def _records(self, d: _Direction, data: bytes, from_client: bool, out: list[Message]) -> None:
        if d.pending:
            d.pending += data
            if len(d.pending) < d.need:
                return
            data = bytes(d.pending)
            d.pending.clear()
        view, off, end = memoryview(data), 0, 0
        while len(data) - off >= 5 and not d.done:
            content_type, version, length = _RECORD.unpack_from(data, off)
            if content_type not in _RECORD_TYPES or version >> 8 != 3 or length > _MAX_RECORD:
                raise Malformed("not a TLS record")
            end = off + 5 + length
            if end > len(data):
                break
            self._record(d, content_type, version, view[off + 5 : end], from_client, out)
            off = end
        if not d.done and off < len(data):
            d.pending += view[off:]
            d.need = end - off if end > len(data) else 5

    def _record(self, d: _Direction, content_type: int, version: int, fragment: memoryview,
                from_client: bool, out: list[Message]) -> None:
        if content_type == HANDSHAKE:
            d.handshake += fragment
            self._handshake(d, version, from_client, out)
        elif content_type == CHANGE_CIPHER_SPEC:
            d.done = not self._tls13  # TLS 1.3 sends it only for middlebox compatibility
        elif content_type == ALERT:
            if len(fragment) != 2:  # an encrypted alert
                d.done = True
                return
            out.append(Message("tls.alert", {"level": fragment[0], "description": fragment[1]}, from_client))
            d.done = fragment[0] == 2  # fatal; a warning (e.g. unrecognized_name) lets the handshake go on
        elif content_type == APPLICATION_DATA:
            d.done = True

    def _handshake(self, d: _Direction, record_version: int, from_client: bool, out: list[Message]) -> None:
        buf, pos = d.handshake, 0
        while len(buf) - pos >= 4 and not d.done:
            msg_type, length = buf[pos], int.from_bytes(buf[pos + 1 : pos + 4], "big")
            end = pos + 4 + length
            if end > len(buf):
                # A long chain may exceed the budget: the leaf, first in the list, is all we need.
                if msg_type == CERTIFICATE and not d.certificate_done:
                    self._certificate(d, buf[pos + 4 :], from_client, out)
                break
            body = buf[pos + 4 : end]
            pos = end
            if msg_type == CLIENT_HELLO:
                fields = _client_hello_fields(body)
                fields["record_version"] = record_version
                out.append(Message("tls.client_hello", fields, from_client))
            elif msg_type == SERVER_HELLO:
                fields = _server_hello_fields(body)
                self._tls13 = fields["version"] == TLS13
                out.append(Message("tls.server_hello", fields, from_client))
            elif msg_type == CERTIFICATE and not d.certificate_done:
                self._certificate(d, body, from_client, out)
            elif msg_type == SERVER_HELLO_DONE:
                d.done = True
        del buf[:pos]

    @staticmethod
    def _certificate(d: _Direction, body: bytearray, from_client: bool, out: list[Message]) -> None:
        der = _first_certificate(body)
        if der is not None:
            d.certificate_done = True
            out.append(Message("tls.certificate", _certificate_fields(der), from_client))
