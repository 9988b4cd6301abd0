"""MQTT 3.1 ("MQIsdp"), 3.1.1 and 5.0 over TCP (OASIS MQTT v3.1.1 and v5.0).

Every control packet is a fixed header, then `remaining length` bytes of variable header and payload:

    byte 0      packet type (high nibble), flags (low nibble; PUBLISH: DUP 0x08, QoS 0x06, RETAIN 0x01)
    1..4 bytes  remaining length: base-128 varint, least significant group first, at most 4 bytes

Strings are a 2-byte big-endian length then UTF-8; binary data the same without the decoding. CONNECT
carries the protocol level (3 = 3.1, 4 = 3.1.1, 5 = 5.0); from level 5 most packets of both directions
add a properties block (varint length, then identifier/value pairs) after their variable header. A v5
CONNACK is the only CONNACK longer than 2 bytes, which tells the version of a connection picked up
after its CONNECT.

Secrets never leave the parser: the password and v5 authentication / correlation data become
`*_present` flags, the user name a salted hash. PUBLISH payloads are skipped by length, never buffered.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from medsentry.privacy import phi_hash
from medsentry.protocols.base import WHOLE_CONNECTION, Framed, FramedParser, Malformed, Message

NAME: Final = "mqtt"
TCP_PORTS: Final = frozenset({1883})

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14
AUTH: Final = 15
_KINDS: Final = {
    CONNECT: "mqtt.connect",
    CONNACK: "mqtt.connack",
    PUBLISH: "mqtt.publish",
    PUBACK: "mqtt.puback",
    PUBREC: "mqtt.pubrec",
    PUBREL: "mqtt.pubrel",
    PUBCOMP: "mqtt.pubcomp",
    SUBSCRIBE: "mqtt.subscribe",
    SUBACK: "mqtt.suback",
    UNSUBSCRIBE: "mqtt.unsubscribe",
    UNSUBACK: "mqtt.unsuback",
    PINGREQ: "mqtt.pingreq",
    PINGRESP: "mqtt.pingresp",
    DISCONNECT: "mqtt.disconnect",
    AUTH: "mqtt.auth",
}

_MAX_PACKET: Final = 256 * 1024  # control packets are small; a bigger one is skipped as Malformed
_MAX_PUBLISH_HEAD: Final = 70 * 1024  # topic (<= 64 KiB) + packet id + properties, before the payload
_MAX_ALIASES: Final = 1024  # v5 topic aliases remembered per direction
INSPECT_BYTES: Final = WHOLE_CONNECTION  # a monitor's session to its broker stays open for days

_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")

# v5 property identifier -> (name, type); "secret" values are reported as <name>_present only.
_PROPERTIES: Final[dict[int, tuple[str, str]]] = {
    0x01: ("payload_format_indicator", "u8"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"),
    0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "secret"),
    0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "secret"),
    0x17: ("request_problem_information", "u8"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "u8"),
    0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "u8"),
    0x25: ("retain_available", "u8"),
    0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "u8"),
    0x29: ("subscription_identifier_available", "u8"),
    0x2A: ("shared_subscription_available", "u8"),
}


class _Short(Malformed):
    """A read ran past the bytes at hand (Malformed unless more of the packet is still to come)."""


class _Reader:
    """Sequential big-endian reads over one packet's variable header and payload."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | bytearray) -> None:
        self.data, self.pos, self.end = data, 0, len(data)

    def take(self, n: int) -> bytes | bytearray:
        if self.pos + n > self.end:
            raise _Short("field runs past the packet")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 28, 7):
            b = self.u8()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise Malformed("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes | bytearray:
        return self.take(self.u16())

    def string(self) -> str:
        return self.binary().decode("utf-8", "replace")

    def left(self) -> int:
        return self.end - self.pos

    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        length = self.varint()
        end = self.pos + length
        if end > self.end:
            raise _Short("properties run past the packet")
        while self.pos < end:
            ident = self.varint()
            if ident not in _PROPERTIES:
                raise Malformed(f"unknown property 0x{ident:02x}")
            name, kind = _PROPERTIES[ident]
            if kind == "u8":
                props[name] = self.u8()
            elif kind == "u16":
                props[name] = self.u16()
            elif kind == "u32":
                props[name] = self.u32()
            elif kind == "varint":
                props[name] = self.varint()
            elif kind == "str":
                props[name] = self.string()
            elif kind == "secret":
                self.binary()
                props[name + "_present"] = True
            else:  # user property: a name/value pair; only the names, values may carry anything
                props.setdefault("user_property_names", []).append(self.string())
                self.binary()
        if self.pos != end:
            raise Malformed("property runs past the properties block")
        return props


def looks_like(head: bytes) -> bool:
    """A CONNECT packet whose protocol name is "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1)."""
    if len(head) < 2 or head[0] != 0x10:
        return False
    i = 1
    while head[i] & 0x80:
        i += 1
        if i == 5 or i >= len(head):
            return False
    name = head[i + 1 : i + 9]
    return name.startswith(b"\x00\x04MQTT") or name == b"\x00\x06MQIsdp"


# Fixed-header flags each packet type must carry (v3.1.1 2.2.2, v5 2.1.3); PUBLISH's vary (QoS < 3).
_REQUIRED_FLAGS: Final = {CONNACK: 0, PUBACK: 0, PUBREC: 0, PUBREL: 2, PUBCOMP: 0, SUBSCRIBE: 2, SUBACK: 0,
                   UNSUBSCRIBE: 2, UNSUBACK: 0, PINGREQ: 0, PINGRESP: 0, DISCONNECT: 0, AUTH: 0}  # fmt: skip


def mid_stream(head: bytes) -> bool:
    """A connection picked up after its CONNECT (a monitor's session to the broker may stay open for
    days): control packets other than CONNECT, each fixed header valid, chained as far as the bytes go."""
    chain = _chain(head, 0, 8, connect=False)
    return chain is not None and chain[0] > 0


def _chain(head: bytes | bytearray, off: int, most: int, connect: bool = True) -> tuple[int, bool] | None:
    """Fixed headers chained from `off` (up to `most` packets): (packets whose fixed header is valid and
    whole, whether the bytes end exactly where the last one does), or None at the first invalid one.
    `connect`: a CONNECT is valid (`mid_stream` leaves a connection's start to `looks_like`)."""
    packets = 0
    while off < len(head) and packets < most:
        ptype, flags = head[off] >> 4, head[off] & 0x0F
        if ptype == 0 or (ptype == CONNECT and (not connect or flags)):
            return None
        if ptype == PUBLISH:
            if flags & 0x06 == 0x06:
                return None
        elif _REQUIRED_FLAGS.get(ptype, 0) != flags:  # CONNECT: 0, checked above
            return None
        remaining, i = 0, off + 1
        for shift in (0, 7, 14, 21):
            if i >= len(head):
                return packets, False  # cut inside a fixed header: judged on the packets before it
            b = head[i]
            i += 1
            remaining |= (b & 0x7F) << shift
            if not b & 0x80:
                break
        else:
            return None  # a remaining length of more than 4 bytes
        if ptype in (PINGREQ, PINGRESP) and remaining != 0:
            return None
        off, packets = i + remaining, packets + 1
    return packets, off == len(head)


# A joined direction keeps its last 4 KiB while it looks for a packet boundary (each look goes over all
# of them), and is given up after 64 KiB: bounded work on a direction that is no MQTT.
_RESYNC_HOLD: Final = 4 * 1024
_RESYNC_MAX: Final = 64 * 1024


def _resync(buf: bytearray) -> int | None:
    """Where packets start in bytes from the middle of a connection. At the start (segments mostly
    begin with a packet) a chain of valid fixed headers as `mid_stream` takes; further in, inside a
    payload, where a header or two pass by chance, only a chain of two packets or more that ends exactly
    where the bytes do."""
    chain = _chain(buf, 0, 64)
    if chain is not None and chain[0]:
        return 0
    for i in range(1, len(buf)):
        chain = _chain(buf, i, 64)
        if chain is not None and chain[1] and chain[0] >= 2:
            return i
    return None


class _Direction(Framed):
    __slots__ = ("aliases",)

    def __init__(self) -> None:
        super().__init__()  # `skip`: bytes of a PUBLISH payload still to discard before the next packet
        self.aliases: dict[int, str] = {}  # v5 topic alias -> topic, as set by this sender


class StreamParser(FramedParser["_Direction"]):
    """One MQTT connection; `protocol_version` (3, 4, 5 or None) is shared by both directions."""

    def __init__(self) -> None:
        self.protocol_version: int | None = None
        self._dirs = [_Direction(), _Direction()]

    def feed(self, data: bytes, from_client: bool) -> list[Message]:
        d = self._dirs[from_client]
        if d.dead:
            return []
        d.take(data)
        if d.joined is not None and not self._found_packet(d):
            return []
        out: list[Message] = []
        try:
            while (msg := self._next(d, from_client)) is not None:
                out.append(msg)
        except Malformed:
            # The bad packet is consumed (or the direction is dead): keep what came before it.
            if not out:
                raise
        return out

    @staticmethod
    def _found_packet(d: _Direction) -> bool:
        if d.found(_resync(d.buf), _RESYNC_HOLD):
            return True
        if d.joined is not None and d.joined > _RESYNC_MAX:  # no MQTT as far as can be told: ignored
            d.dead, d.joined = True, None
            d.buf.clear()
        return False

    def _next(self, d: _Direction, from_client: bool) -> Message | None:
        buf = d.buf
        remaining, i = 0, 1
        while True:
            if i >= len(buf):
                return None
            b = buf[i]
            remaining |= (b & 0x7F) << (7 * (i - 1))
            i += 1
            if not b & 0x80:
                break
            if i == 5:
                d.dead = True
                raise Malformed("remaining length longer than 4 bytes")
        ptype, flags = buf[0] >> 4, buf[0] & 0x0F
        if ptype == 0:
            d.dead = True
            raise Malformed("reserved packet type 0")
        have = len(buf) - i
        if ptype == PUBLISH and remaining > have:
            # Parse the head (topic, properties) as soon as it is here; skip the payload by count.
            try:
                fields = self._publish(_Reader(buf[i:]), flags, remaining, d)
            except _Short:
                if have < _MAX_PUBLISH_HEAD:
                    return None
                d.drop(i + remaining)
                raise Malformed("PUBLISH head longer than the bound") from None
            d.drop(i + remaining)
            return Message(_KINDS[ptype], fields, from_client)
        if remaining > _MAX_PACKET:
            d.drop(i + remaining)
            raise Malformed(f"{_KINDS[ptype]} of {remaining} bytes exceeds the bound")
        if remaining > have:
            return None
        body = buf[i : i + remaining]
        del buf[: i + remaining]
        if ptype == CONNACK and self.protocol_version is None and remaining > 2:
            self.protocol_version = 5
        return Message(_KINDS[ptype], self._parse(ptype, flags, _Reader(body), d), from_client)

    def _parse(self, ptype: int, flags: int, r: _Reader, d: _Direction) -> dict[str, Any]:
        v5 = self.protocol_version == 5
        f: dict[str, Any] = {}
        if ptype == CONNECT:
            return self._connect(r)
        if ptype == PUBLISH:
            return self._publish(r, flags, r.end, d)
        if ptype == CONNACK:
            ack_flags, f["return_code"] = r.u8(), r.u8()
            f["session_present"] = bool(ack_flags & 0x01)
        elif ptype in (SUBSCRIBE, UNSUBSCRIBE, SUBACK, UNSUBACK, PUBACK, PUBREC, PUBREL, PUBCOMP):
            f["message_id"] = r.u16()
            if ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP) and v5:
                f["reason_code"] = r.u8() if r.left() else 0  # absent means 0 (success)
        elif ptype in (DISCONNECT, AUTH) and v5:
            f["reason_code"] = r.u8() if r.left() else 0  # absent means 0 (normal / success)
        if v5 and r.left() and ptype not in (PINGREQ, PINGRESP):
            props = r.properties()
            if props:
                f["properties"] = props
        if ptype in (SUBSCRIBE, UNSUBSCRIBE):
            topics, qos = [], []
            while r.left():
                topics.append(r.string())
                if ptype == SUBSCRIBE:
                    qos.append(r.u8() & 0x03)  # the other option bits are v5 flags
            f["topics"] = topics
            if ptype == SUBSCRIBE:
                f["qos"] = qos
        elif ptype in (SUBACK, UNSUBACK):
            f["return_codes"] = list(r.take(r.left()))
        if r.left():
            raise Malformed(f"{r.left()} trailing bytes in {_KINDS[ptype]}")
        return f

    def _connect(self, r: _Reader) -> dict[str, Any]:
        name, level, cflags, keepalive = r.string(), r.u8(), r.u8(), r.u16()
        # Bridges set bit 7 of the level (0x83, 0x84); the version is the low bits.
        self.protocol_version = level & 0x7F
        v5 = self.protocol_version == 5
        f: dict[str, Any] = {
            "protocol_name": name,
            "protocol_version": level,
            "clean_session": bool(cflags & 0x02),
            "will_present": bool(cflags & 0x04),
            "will_qos": (cflags >> 3) & 0x03,
            "will_retain": bool(cflags & 0x20),
            "password_present": bool(cflags & 0x40),
            "username_present": bool(cflags & 0x80),
            "keepalive": keepalive,
        }
        if v5 and (props := r.properties()):
            f["properties"] = props
        f["client_id"] = r.string()
        if cflags & 0x04:
            if v5 and (props := r.properties()):
                f["will_properties"] = props
            f["will_topic"] = r.string()
            f["will_payload_len"] = len(r.binary())
        if cflags & 0x80:
            f["username_hash"] = phi_hash(bytes(r.binary()))
        if cflags & 0x40:
            r.binary()
        return f

    def _publish(self, r: _Reader, flags: int, remaining: int, d: _Direction) -> dict[str, Any]:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise Malformed("PUBLISH with QoS 3")
        if self.protocol_version != 5:
            return _publish_v3(r, flags, qos, remaining)
        f: dict[str, Any] = {"topic": r.string(), "qos": qos}
        f["retain"], f["dup"] = bool(flags & 0x01), bool(flags & 0x08)
        if qos:
            f["message_id"] = r.u16()
        props = r.properties()
        if props:
            f["properties"] = props
        alias = props.get("topic_alias")
        if alias is not None:
            # A v5 sender may name a topic once, then refer to it by a number.
            f["topic_alias"] = alias
            if f["topic"]:
                if len(d.aliases) < _MAX_ALIASES or alias in d.aliases:
                    d.aliases[alias] = f["topic"]
            else:
                f["topic"] = d.aliases.get(alias, "")
        if r.pos > remaining:
            raise Malformed("PUBLISH head runs past the packet")
        f["payload_len"] = remaining - r.pos
        return f


def _publish_v3(r: _Reader, flags: int, qos: int, remaining: int) -> dict[str, Any]:
    """`StreamParser._publish` without properties (MQTT 3.1, 3.1.1), reading the bytes directly: the most
    frequent message of all, the reader's calls were most of its cost."""
    data, pos, end = r.data, r.pos, r.end
    if pos + 2 > end:
        raise _Short("field runs past the packet")
    size = data[pos] << 8 | data[pos + 1]
    pos += 2
    if pos + size > end:
        raise _Short("field runs past the packet")
    f: dict[str, Any] = {"topic": data[pos : pos + size].decode("utf-8", "replace"), "qos": qos}
    pos += size
    f["retain"], f["dup"] = bool(flags & 0x01), bool(flags & 0x08)
    if qos:
        if pos + 2 > end:
            raise _Short("field runs past the packet")
        f["message_id"] = data[pos] << 8 | data[pos + 1]
        pos += 2
    r.pos = pos
    if pos > remaining:
        raise Malformed("PUBLISH head runs past the packet")
    f["payload_len"] = remaining - pos
    return f
