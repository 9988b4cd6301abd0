"""Zeek logs as evidence: the same `Observation`s the packet path produces, read from Zeek's logs.

Formats (docs.zeek.org, "Zeek Log Formats"):

TSV   header lines, then one row per line, fields joined by the separator:
          #separator \\x09              the value is escaped (\\xHH)
          #set_separator<sep>,         joins the elements of set[...] and vector[...] fields
          #empty_field<sep>(empty)     an empty string, set or vector
          #unset_field<sep>-           a field without a value
          #path<sep>conn               the log stream
          #fields<sep>ts<sep>uid<sep>id.orig_h ...
          #types<sep>time<sep>string<sep>addr ...
      (#open / #close and other comments are ignored; headers may repeat in concatenated logs). Inside a
      value Zeek writes a backslash as \\\\ and each byte that is not printable ASCII, or that would read
      as a separator, as \\xHH; a value that is literally "-" or "(empty)" is escaped the same way, so
      comparing the raw field with the markers is exact.
JSON  one object per line with flat dotted keys ("id.orig_h"); unset fields are left out, sets and vectors
      are arrays, `_path` names the stream when present (JSON streaming logs); times are epoch seconds or
      ISO 8601 strings (LogAscii::json_timestamps). Zeek's JSON writer turns control characters and bytes
      that are not UTF-8 into the text \\xHH; TSV strings are decoded to that same text, so both formats
      give identical observations.

Either may be gzip-compressed. Files are read line by line (a line over MAX_LINE bytes is an error), so
memory stays flat whatever the file size. A bad line (wrong number of fields, bad JSON, a value of the
wrong type) or a corrupt gzip stream is recorded in `ZeekStats` as file:line and skipped; reading goes on
with the next line or file.

A Zeek row records a whole exchange, so one row may give a client-side and a server-side observation:

    conn            flow                          client = id.orig_*, server = id.resp_*
    dhcp            dhcp.<message type>           one per row, as its client's most telling message
    dns             dns.query, dns.response       answers carry the query's name (Zeek logs no owner/type)
    http            http.request, http.response
    ssl             tls.client_hello, tls.server_hello
    x509            tls.certificate               no addresses in Zeek >= 4: join sha256 on cert_chain_fps
    known_certs     tls.certificate               from the server that presented it
    software        software
    known_hosts     host.seen
    known_services  service.seen
    snmp            snmp.response                 from the agent
    ssh             ssh.banner                    both banners; src is the client
    modbus          modbus.request, modbus.response
Rows of other logs are counted in `ZeekStats.skipped`. Fields a log did not record are left out.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from medsentry.observe import Observation
from medsentry.privacy import phi_hash

MAX_LINE = 1 << 20  # bytes; Zeek rows are far shorter, this bounds memory on garbage input
MAX_ERRORS: Final = 1000  # error records kept; ZeekStats.error_count counts all of them
_LOG_NAME: Final = re.compile(r"\.(?:log|json|jsonl)(?:\.|$)")  # conn.log, dns.json.gz, conn.log.labeled


@dataclass(frozen=True, slots=True)
class ZeekError:
    path: str
    line: int  # 1-based; the line where reading stopped for an unreadable file
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(slots=True)
class ZeekStats:
    rows: Counter[str] = field(default_factory=Counter)  # data lines read, by log type
    skipped: Counter[str] = field(default_factory=Counter)  # rows of log types medsentry does not map
    observations: int = 0
    error_count: int = 0  # bad lines and unreadable files; each one is skipped
    errors: list[ZeekError] = field(default_factory=list)  # the first MAX_ERRORS

    def error(self, path: str, line: int, reason: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(ZeekError(path, line, reason))


def read_zeek(
    paths: str | Path | Iterable[str | Path], stats: ZeekStats | None = None
) -> Iterator[Observation]:
    """Observations from Zeek log files and directories of them (searched recursively, in name order)."""
    stats = ZeekStats() if stats is None else stats
    for path in _expand([paths] if isinstance(paths, str | Path) else paths):
        try:
            raw = path.open("rb")
        except OSError as e:
            stats.error(str(path), 0, f"cannot open: {e.strerror or e}")
            continue
        with raw:
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
            yield from read_stream(stream, str(path), stats)


def read_stream(
    stream: io.BufferedIOBase, name: str, stats: ZeekStats | None = None
) -> Iterator[Observation]:
    """Observations from one uncompressed log (TSV or JSON lines); `name` labels errors and, failing a
    #path header or `_path` key, gives the log type ("conn.log" -> conn)."""
    stats = ZeekStats() if stats is None else stats
    default_log = Path(name).name.split(".", 1)[0]
    header: _Header | None = None
    lineno = 0
    try:
        for line in _lines(stream):
            lineno += 1
            if line is None:
                stats.rows[header.path if header else default_log] += 1
                stats.error(name, lineno, f"line longer than {MAX_LINE} bytes")
                continue
            if not line:
                continue
            if line[:1] == b"#":
                header = header or _Header(default_log)
                try:
                    header.read(line)
                except ValueError as e:
                    stats.error(name, lineno, f"bad header: {e}")
                continue
            log = header.path if header is not None else default_log
            try:
                row = header.row(line) if header is not None else _JsonRow.parse(line)
                log = row.log or log
                mapper = _MAPPERS.get(log)
                observations = None if mapper is None else mapper(row)
            except ValueError as e:
                stats.rows[log] += 1
                stats.error(name, lineno, str(e))
                continue
            stats.rows[log] += 1
            if observations is None:
                stats.skipped[log] += 1
                continue
            stats.observations += len(observations)
            yield from observations
    except (OSError, EOFError, zlib.error) as e:
        # gzip reports a truncated or damaged stream while reading; keep what came before
        stats.error(name, lineno + 1, f"unreadable: {e}")


def _expand(paths: Iterable[str | Path]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and _LOG_NAME.search(f.name))
        else:
            yield p


def _lines(stream: io.BufferedIOBase) -> Iterator[bytes | None]:
    """Lines without their end (\\n or \\r\\n); None for a line over MAX_LINE bytes, whose rest is skipped."""
    while line := stream.readline(MAX_LINE):
        if line[-1:] == b"\n":
            yield line[:-2] if line[-2:-1] == b"\r" else line[:-1]
        elif len(line) < MAX_LINE:  # last line, no newline
            yield line
        else:
            while (rest := stream.readline(MAX_LINE)) and rest[-1:] != b"\n":
                pass
            yield None


# --- values ---------------------------------------------------------------------------------------------

_ESCAPE: Final = re.compile(rb"\\(?:x([0-9a-fA-F]{2})|\\)")
# what Zeek's JSON writer spells as text; \b \t \n \f \r it keeps as characters
_CONTROLS: Final = {c: f"\\x{c:02x}" for c in range(0x20) if c not in b"\b\t\n\f\r"}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _unescape_one(m: re.Match[bytes]) -> bytes:
    return bytes.fromhex(m[1].decode()) if m[1] else b"\\"


def _text(raw: bytes) -> str:
    if b"\\" not in raw:
        return raw.decode("utf-8", "backslashreplace")
    return _ESCAPE.sub(_unescape_one, raw).decode("utf-8", "backslashreplace").translate(_CONTROLS)


def _real(raw: bytes, name: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"{name}: not a finite number")
    return value


class _Header:
    """The TSV header in force, and the rows it describes."""

    __slots__ = ("empty", "fields", "path", "separator", "set_separator", "unset")

    def __init__(self, path: str) -> None:
        self.separator, self.set_separator, self.empty, self.unset = b"\t", b",", b"(empty)", b"-"
        self.path = path
        self.fields: tuple[str, ...] = ()

    def read(self, line: bytes) -> None:
        if line.startswith(b"#separator "):
            self.separator = _ESCAPE.sub(_unescape_one, line[11:])
            if not self.separator:
                raise ValueError("empty separator")
            return
        key, _, value = line[1:].partition(self.separator)
        if key == b"set_separator":
            self.set_separator = value or b","
        elif key == b"empty_field":
            self.empty = value
        elif key == b"unset_field":
            self.unset = value
        elif key == b"path":
            self.path = _text(value)
        elif key == b"fields":
            self.fields = tuple(_text(f) for f in value.split(self.separator))

    def row(self, line: bytes) -> _TsvRow:
        if not self.fields:
            raise ValueError("row before a #fields header")
        values = line.split(self.separator)
        if len(values) != len(self.fields):
            raise ValueError(f"{len(values)} fields, the #fields header names {len(self.fields)}")
        return _TsvRow(dict(zip(self.fields, values, strict=True)), self)


class _TsvRow:
    """Typed access to one TSV row; values are converted only when a mapper asks for them."""

    __slots__ = ("_header", "_values", "log")

    def __init__(self, values: dict[str, bytes], header: _Header) -> None:
        self._values, self._header, self.log = values, header, header.path

    def _raw(self, name: str) -> bytes | None:
        value = self._values.get(name)
        return None if value is None or value == self._header.unset else value

    def text(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        return "" if raw == self._header.empty else _text(raw)

    def count(self, name: str) -> int | None:
        raw = self._raw(name)
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name}: not an integer") from None

    def real(self, name: str) -> float | None:
        raw = self._raw(name)
        return None if raw is None else _real(raw, name)

    def time(self, name: str) -> float | None:
        return self.real(name)  # TSV writes times as epoch seconds

    def flag(self, name: str) -> bool | None:
        raw = self._raw(name)
        if raw is None:
            return None
        if raw not in (b"T", b"F"):
            raise ValueError(f"{name}: not a bool")
        return raw == b"T"

    def items(self, name: str) -> list[str]:
        raw = self._raw(name)
        if raw is None:
            return []
        empty = self._header.empty  # TSV writes both an empty set and a set holding "" as (empty)
        return [_text(item) for item in raw.split(self._header.set_separator) if item and item != empty]

    def reals(self, name: str) -> list[float]:
        raw = self._raw(name)
        if raw is None or raw == self._header.empty:
            return []
        return [_real(item, name) for item in raw.split(self._header.set_separator)]


class _JsonRow:
    """The same accessors over one JSON object, checking each value's type."""

    __slots__ = ("_values", "log")

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        path = values.get("_path")
        self.log = path if isinstance(path, str) else None

    @classmethod
    def parse(cls, line: bytes) -> _JsonRow:
        if line[:1] != b"{":
            raise ValueError("neither a JSON object nor a TSV row after a #fields header")
        try:
            values = json.loads(line)
        except RecursionError:
            raise ValueError("bad JSON: nested too deeply") from None
        except ValueError as e:
            raise ValueError(f"bad JSON: {e}") from None
        if not isinstance(values, dict):
            raise ValueError("bad JSON: not an object")
        return cls(values)

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or isinstance(value, str):
            return value
        raise ValueError(f"{name}: not a string")

    def count(self, name: str) -> int | None:
        value = self._values.get(name)
        if value is None or type(value) is int:
            return value
        raise ValueError(f"{name}: not an integer")

    def real(self, name: str) -> float | None:
        value = self._values.get(name)
        return None if value is None else self._real(value, name)

    def time(self, name: str) -> float | None:
        value = self._values.get(name)
        if not isinstance(value, str):
            return self.real(name)
        stamp = datetime.fromisoformat(value)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        # whole microseconds over 10**6 rounds like float() of TSV's "%.6f", so both formats agree exactly
        return ((stamp - _EPOCH) // _MICROSECOND) / 1_000_000

    def flag(self, name: str) -> bool | None:
        value = self._values.get(name)
        if value is None or type(value) is bool:
            return value
        raise ValueError(f"{name}: not a bool")

    def items(self, name: str) -> list[str]:
        value = self._values.get(name)
        if value is None:
            return []
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v for v in value if v]  # as TSV, which cannot tell [""] from []
        raise ValueError(f"{name}: not a list of strings")

    def reals(self, name: str) -> list[float]:
        value = self._values.get(name)
        if value is None:
            return []
        if isinstance(value, list):
            return [self._real(v, name) for v in value]
        raise ValueError(f"{name}: not a list of numbers")

    @staticmethod
    def _real(value: Any, name: str) -> float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError(f"{name}: not a finite number")
        return float(value)


Row = _TsvRow | _JsonRow


# --- mapping --------------------------------------------------------------------------------------------


def _obs(
    row: Row,
    protocol: str,
    kind: str,
    fields: dict[str, Any],
    *,
    src: tuple[str | None, int | None],
    dst: tuple[str | None, int | None] = (None, None),
    transport: str | None,
    src_mac: str | None = None,
    dst_mac: str | None = None,
    ts: float | None = None,
) -> Observation:
    if ts is None:
        ts = row.time("ts")
        if ts is None:
            raise ValueError("ts: unset")
    return Observation(
        ts=ts,
        protocol=protocol,
        kind=kind,
        src_mac=src_mac,
        src_ip=src[0],
        dst_mac=dst_mac,
        dst_ip=dst[0],
        sport=src[1],
        dport=dst[1],
        transport=transport,
        fields={k: v for k, v in fields.items() if v is not None},
        source="zeek",
    )


def _orig(row: Row) -> tuple[str | None, int | None]:
    return row.text("id.orig_h"), row.count("id.orig_p")


def _resp(row: Row) -> tuple[str | None, int | None]:
    return row.text("id.resp_h"), row.count("id.resp_p")


def _mac(value: str | None) -> str | None:
    return value.lower() if value else None


# Zeek's conn_state, reduced to the decoder's tcp_state; OTH and SHR (no SYN seen) stay unknown
_TCP_STATE: Final = {
    "S0": "syn",
    "SH": "syn",
    "S1": "established",
    "S2": "established",
    "S3": "established",
    "SF": "closed",
    "REJ": "reset",
    "RSTO": "reset",
    "RSTR": "reset",
    "RSTOS0": "reset",
    "RSTRH": "reset",
}
# Zeek analyzer names that differ from medsentry's protocol module NAMEs
_APP: dict[str | None, str] = {"ssl": "tls", "dtls": "tls"}


def _conn(row: Row) -> list[Observation]:
    ts = row.time("ts")
    if ts is None:
        raise ValueError("ts: unset")
    transport = row.text("proto")
    client, server = _orig(row), _resp(row)
    client_mac, server_mac = _mac(row.text("orig_l2_addr")), _mac(row.text("resp_l2_addr"))
    state = row.text("conn_state")
    service = (row.text("service") or "").split(",")[0] or None
    ip_c2s, ip_s2c = row.count("orig_ip_bytes"), row.count("resp_ip_bytes")
    fields = {
        "transport": transport,
        "client_mac": client_mac,
        "client_ip": client[0],
        "client_port": client[1],
        "server_mac": server_mac,
        "server_ip": server[0],
        "server_port": server[1],
        "first_seen": ts,
        "last_seen": round(ts + (row.real("duration") or 0.0), 6),
        "packets_c2s": row.count("orig_pkts"),
        "packets_s2c": row.count("resp_pkts"),
        # the decoder counts IP bytes; Zeek's orig_bytes/resp_bytes are payload only
        "bytes_c2s": ip_c2s if ip_c2s is not None else row.count("orig_bytes"),
        "bytes_s2c": ip_s2c if ip_s2c is not None else row.count("resp_bytes"),
        "app": _APP.get(service, service),
        "tcp_state": _TCP_STATE.get(state or "") if transport == "tcp" else None,
        "conn_state": state,
        "vlan": row.count("vlan"),
        "uid": row.text("uid"),
    }
    return [
        _obs(
            row,
            "flow",
            "flow",
            fields,
            src=client,
            dst=server,
            transport=transport,
            src_mac=client_mac,
            dst_mac=server_mac,
            ts=ts,
        )
    ]


# DHCP message types (RFC 2132 option 53), most telling first: a row is reported as one message
_DHCP_TYPES: Final = {
    "REQUEST": 3,
    "INFORM": 8,
    "DISCOVER": 1,
    "DECLINE": 4,
    "RELEASE": 7,
    "ACK": 5,
    "OFFER": 2,
    "NAK": 6,
}


def _dhcp(row: Row) -> list[Observation]:
    msg_types = row.items("msg_types")
    kind = next((t for t in _DHCP_TYPES if t in msg_types), "REQUEST")
    mac = _mac(row.text("mac"))
    client_software = row.text("client_software")  # policy/protocols/dhcp/software.zeek: option 60
    fields = {
        "client_mac": mac,
        "hostname": row.text("host_name"),
        "fqdn": row.text("client_fqdn"),
        "vendor_class": row.text("vendor_class") if client_software is None else client_software,
        "requested_ip": row.text("requested_addr"),
        "yiaddr": row.text("assigned_addr"),
        "server_id": row.text("server_addr"),
        "domain": row.text("domain"),
        "lease_time": row.real("lease_time"),
        "message_type": _DHCP_TYPES[kind],
        "msg_types": msg_types,
    }
    return [
        _obs(
            row,
            "dhcp",
            f"dhcp.{kind.lower()}",
            fields,
            src=(row.text("client_addr"), None),
            dst=(row.text("server_addr"), None),
            transport="udp",
            src_mac=mac,
        )
    ]


def _dns(row: Row) -> list[Observation]:
    client, server = _orig(row), _resp(row)
    transport = row.text("proto")
    name, qtype = row.text("query"), row.count("qtype")
    common = {
        "id": row.count("trans_id"),
        "queries": [] if name is None else [{"name": name, "type": qtype}],
        "mdns": server[1] == 5353,
        "llmnr": server[1] == 5355,
        "uid": row.text("uid"),
    }
    rcode, rtt = row.count("rcode"), row.real("rtt")
    out = []
    if rcode is None or rtt is not None:  # rtt is set only when Zeek saw the query and its answer
        out.append(_obs(row, "dns", "dns.query", common, src=client, dst=server, transport=transport))
    if rcode is not None:
        ttls = row.reals("TTLs")
        answers = [
            {"name": name, "type": None, "data": data, "ttl": ttls[i] if i < len(ttls) else None}
            for i, data in enumerate(row.items("answers"))
        ]
        fields = common | {"rcode": rcode, "rcode_name": row.text("rcode_name"), "answers": answers}
        out.append(_obs(row, "dns", "dns.response", fields, src=server, dst=client, transport=transport))
    return out


def _http(row: Row) -> list[Observation]:
    client, server = _orig(row), _resp(row)
    user = row.text("username")  # Zeek logs the user name of HTTP basic auth
    out = []
    fields: dict[str, Any]
    if row.text("method") is not None:
        fields = {
            "method": row.text("method"),
            "host": row.text("host"),
            "path": row.text("uri"),
            "user_agent": row.text("user_agent"),
            "basic_auth_present": user is not None or row.text("password") is not None,
            "basic_auth_user_hash": phi_hash(user) if user else None,
            "uid": row.text("uid"),
        }
        out.append(_obs(row, "http", "http.request", fields, src=client, dst=server, transport="tcp"))
    if row.count("status_code") is not None:
        fields = {"status": row.count("status_code"), "server": row.text("server"), "uid": row.text("uid")}
        out.append(_obs(row, "http", "http.response", fields, src=server, dst=client, transport="tcp"))
    return out


# the ClientHello/ServerHello version field for Zeek's version names
_TLS_VERSIONS: Final = {
    "SSLv2": 0x0002,
    "SSLv3": 0x0300,
    "TLSv10": 0x0301,
    "TLSv11": 0x0302,
    "TLSv12": 0x0303,
    "TLSv13": 0x0304,
    "DTLSv10": 0xFEFF,
    "DTLSv12": 0xFEFD,
    "DTLSv13": 0xFEFC,
}


def _ssl(row: Row) -> list[Observation]:
    client, server = _orig(row), _resp(row)
    uid = row.text("uid")
    # the ssl log covers DTLS too but does not say which; TLS over TCP is the common case
    hello = {"sni": row.text("server_name"), "ja3": row.text("ja3"), "ja4": row.text("ja4"), "uid": uid}
    out = [_obs(row, "tls", "tls.client_hello", hello, src=client, dst=server, transport="tcp")]
    version, cipher = row.text("version"), row.text("cipher")
    if version is not None or cipher is not None:
        protocol = row.text("next_protocol")
        fields = {
            "version": _TLS_VERSIONS.get(version or ""),
            "version_name": version,
            "cipher": cipher,
            "curve": row.text("curve"),
            "ja3s": row.text("ja3s"),
            "ja4s": row.text("ja4s"),
            "alpn": None if protocol is None else [protocol],
            "resumed": row.flag("resumed"),
            "established": row.flag("established"),
            "cert_chain_fps": row.items("cert_chain_fps"),
            "uid": uid,
        }
        out.append(_obs(row, "tls", "tls.server_hello", fields, src=server, dst=client, transport="tcp"))
    return out


def _epoch(value: float | None) -> int | None:
    return None if value is None else round(value)


def _x509(row: Row) -> list[Observation]:
    subject, issuer = row.text("certificate.subject"), row.text("certificate.issuer")
    fields = {
        "subject": subject,
        "issuer": issuer,
        "not_before": _epoch(row.time("certificate.not_valid_before")),
        "not_after": _epoch(row.time("certificate.not_valid_after")),
        "self_signed": subject is not None and subject == issuer,
        "serial": row.text("certificate.serial"),
        "sha256": row.text("fingerprint"),  # Zeek >= 4 fingerprints certificates with SHA-256
        "san": row.items("san.dns") + row.items("san.ip"),
        "key_type": row.text("certificate.key_type"),
        "key_length": row.count("certificate.key_length"),
        "sig_alg": row.text("certificate.sig_alg"),
        "ca": row.flag("basic_constraints.ca"),
    }
    return [_obs(row, "tls", "tls.certificate", fields, src=(None, None), transport=None)]


def _known_certs(row: Row) -> list[Observation]:
    subject, issuer = row.text("subject"), row.text("issuer_subject")
    fields = {
        "subject": subject,
        "issuer": issuer,
        "self_signed": subject is not None and subject == issuer,
        "serial": row.text("serial"),
    }
    host = (row.text("host"), row.count("port_num"))
    return [_obs(row, "tls", "tls.certificate", fields, src=host, transport="tcp")]


def _software(row: Row) -> list[Observation]:
    # Software::software_fmt_version: major[.minor[.minor2[.minor3]]][-addl]
    major, *minors = (row.count(f"version.{part}") for part in ("major", "minor", "minor2", "minor3"))
    addl = row.text("version.addl")
    version = None
    if major is not None or addl is not None or any(m is not None for m in minors):
        version = f"{major or 0}{''.join(f'.{m}' for m in minors if m is not None)}"
        version += "" if addl is None else f"-{addl}"
    host = (row.text("host"), row.count("host_p"))
    fields = {
        "host": host[0],
        "software_type": row.text("software_type"),
        "name": row.text("name"),
        "version": version,
        "unparsed_version": row.text("unparsed_version"),
    }
    return [_obs(row, "zeek.software", "software", fields, src=host, transport=None)]


def _known_hosts(row: Row) -> list[Observation]:
    return [_obs(row, "zeek.known_hosts", "host.seen", {}, src=(row.text("host"), None), transport=None)]


def _known_services(row: Row) -> list[Observation]:
    host, port, transport = row.text("host"), row.count("port_num"), row.text("port_proto")
    fields = {"port": port, "transport": transport, "service": row.items("service")}
    return [_obs(row, "zeek.known_services", "service.seen", fields, src=(host, port), transport=transport)]


def _snmp(row: Row) -> list[Observation]:
    # the community string is a secret: only whether one was used leaves this function
    fields = {
        "version": row.text("version"),
        "community_present": row.text("community") is not None,
        "sys_descr": row.text("display_string"),
        "up_since": row.time("up_since"),
        "get_responses": row.count("get_responses"),
        "uid": row.text("uid"),
    }
    if not fields["get_responses"] and fields["sys_descr"] is None:
        return []  # the agent never answered: no evidence about it
    return [_obs(row, "snmp", "snmp.response", fields, src=_resp(row), dst=_orig(row), transport="udp")]


def _ssh(row: Row) -> list[Observation]:
    fields = {
        "client": row.text("client"),
        "server": row.text("server"),
        "version": row.count("version"),
        "auth_success": row.flag("auth_success"),
        "host_key_alg": row.text("host_key_alg"),
        "host_key": row.text("host_key"),
        "kex_alg": row.text("kex_alg"),
        "uid": row.text("uid"),
    }
    return [_obs(row, "ssh", "ssh.banner", fields, src=_orig(row), dst=_resp(row), transport="tcp")]


def _modbus(row: Row) -> list[Observation]:
    fields = {
        "function": row.text("func"),
        "unit": row.count("unit"),
        "transaction_id": row.count("tid"),
        "exception": row.text("exception"),
        "uid": row.text("uid"),
    }
    if row.text("pdu_type") == "RESP":
        return [
            _obs(row, "modbus", "modbus.response", fields, src=_resp(row), dst=_orig(row), transport="tcp")
        ]
    return [_obs(row, "modbus", "modbus.request", fields, src=_orig(row), dst=_resp(row), transport="tcp")]


_MAPPERS: dict[str, Callable[[Row], list[Observation]]] = {
    "conn": _conn,
    "dhcp": _dhcp,
    "dns": _dns,
    "http": _http,
    "ssl": _ssl,
    "x509": _x509,
    "known_certs": _known_certs,
    "software": _software,
    "known_hosts": _known_hosts,
    "known_services": _known_services,
    "snmp": _snmp,
    "ssh": _ssh,
    "modbus": _modbus,
}
LOG_TYPES: Final = frozenset(_MAPPERS)
