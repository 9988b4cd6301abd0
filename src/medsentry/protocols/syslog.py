"""Syslog over UDP (RFC 5424, RFC 3164): who logs (hostname, application) and how (facility, severity).

Wire format, one message per datagram:

    RFC 5424  "<" PRI ">" VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
              "-" stands for a missing field
    RFC 3164  "<" PRI ">" [TIMESTAMP SP HOSTNAME SP] TAG ["[" pid "]"] ":" SP MSG
              TIMESTAMP "Mmm dd hh:mm:ss"; devices also send ISO 8601 timestamps or none at all, and
              Cisco IOS writes "<PRI>seq: *Mmm dd hh:mm:ss.mmm: %FACILITY-SEVERITY-MNEMONIC: text"
    PRI       facility * 8 + severity, 0..191

The message text is never kept: devices log patient and user names in it.
"""

from __future__ import annotations

import re
from typing import Final

from medsentry.protocols.base import Malformed, Message

NAME: Final = "syslog"
UDP_PORTS: Final = frozenset({514})

_PRI: Final = re.compile(rb"<(\d{1,3})>")
_RFC5424: Final = re.compile(rb"(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) ")
_SEQUENCE: Final = re.compile(rb"\d+: ")  # Cisco IOS "service sequence-numbers"
# "Mmm dd hh:mm:ss", as Cisco IOS writes it too ("*Mar  3 19:57:17.371: "), or ISO 8601
_TIMESTAMP: Final = re.compile(
    rb"\*?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?:? "
    rb"|\d{4}-\d\d-\d\dT\S+ "
)
_TAG: Final = re.compile(rb"([A-Za-z%][\w./%-]{0,47})(?:\[(\w{1,16})\])?:")  # RFC 3164 TAG, plus [pid]
_HOST: Final = re.compile(rb"([\w.:-]{1,255}) ")


def looks_like(head: bytes) -> bool:
    return _PRI.match(head) is not None


def _nil(value: bytes) -> str | None:
    return None if value == b"-" else value.decode("utf-8", "replace")


def parse_datagram(payload: bytes) -> list[Message]:
    pri = _PRI.match(payload)
    if pri is None or int(pri[1]) > 191:
        raise Malformed("no <PRI>")
    value = int(pri[1])
    fields: dict[str, object] = {"facility": value >> 3, "severity": value & 7}
    rest = payload[pri.end() :]
    m = _RFC5424.match(rest)
    if m:
        fields.update(format="rfc5424", version=int(m[1]), hostname=_nil(m[3]), app_name=_nil(m[4]),
                      procid=_nil(m[5]), msgid=_nil(m[6]))
        return [Message("syslog.message", fields)]

    fields["format"] = "rfc3164"
    sequence = _SEQUENCE.match(rest)
    if sequence:
        rest = rest[sequence.end() :]
    timestamp = _TIMESTAMP.match(rest)
    if timestamp:
        rest = rest[timestamp.end() :]
        host = _HOST.match(rest)
        if host and not host[1].endswith(b":"):  # "host app: msg" rather than "app: msg"
            fields["hostname"] = host[1].decode()
            rest = rest[host.end() :]
    tag = _TAG.match(rest)
    if tag:
        fields["app_name"] = tag[1].decode()
        if tag[2]:
            fields["procid"] = tag[2].decode()
    return [Message("syslog.message", fields)]
