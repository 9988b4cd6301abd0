from __future__ import annotations

import contextlib
import itertools
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import telnet
from medsentry.protocols.base import Malformed, Message
from tests.protocols.test_peers_suricata_tls_ftp import conversations

IAC, SB, SE, DO, WILL = b"\xff", b"\xfa", b"\xf0", b"\xfd", b"\xfb"
# (from_client, bytes); the client types in character mode, one byte per segment
SESSION = [
    (False, IAC + DO + b"\x18" + IAC + DO + b"\x20"),
    (True, IAC + WILL + b"\x18" + IAC + SB + b"\x18\x00VT100" + IAC + IAC + IAC + SE),
    (False, b"\r\nPhilips IntelliVue Information Center\r\nRelease N.02\r\n\r\nlogin: "),
    *[(True, bytes([c])) for c in b"service\r\x00"],
    (False, b"service\r\nPassword: "),
    *[(True, bytes([c])) for c in b"Svc!2024\r\n"],
    (False, b"\r\nLogin incorrect\r\nlogin: "), (True, b"\r\n"),
    (False, b"Password: "), (True, b"x\r\n"),
]


def run(parser: telnet.StreamParser, session: list[tuple[bool, bytes]]) -> list[Message]:
    return [m for from_client, data in session for m in parser.feed(data, from_client)]


def test_banner_and_logins() -> None:
    messages = run(telnet.StreamParser(), SESSION)
    assert [(m.kind, m.from_client) for m in messages] == [
        ("telnet.banner", False), ("telnet.login", True), ("telnet.login", True)]
    assert messages[0].fields == {"banner": "Philips IntelliVue Information Center\r\nRelease N.02"}
    assert messages[1].fields == {"user_present": True, "password_present": True}
    assert messages[2].fields == {"user_present": False, "password_present": True}  # empty user name
    assert "service" not in repr(messages) and "Svc!2024" not in repr(messages)


def test_commands_are_stripped_across_segments() -> None:
    decoder = telnet._Decoder()
    stream = b"a" + IAC + SB + b"\x18\x00x" + IAC + IAC + b"y" + IAC + SE + b"b" + IAC + IAC + b"c" + IAC + DO
    stream += b"\x01d" + IAC + b"\xf1e"  # DO ECHO, then NOP
    for size in (1, 2, 3, 100):
        decoder = telnet._Decoder()
        text = b"".join(decoder.text(stream[i : i + size]) for i in range(0, len(stream), size))
        assert text == b"ab\xffcde"


def test_work_is_bounded() -> None:
    parser = telnet.StreamParser()
    for _ in range(200):
        parser.feed(b"x" * 10_000, False)
    assert len(parser._screen) <= 512 and parser.feed(b"login: ", False) == []


def test_looks_like() -> None:
    assert telnet.looks_like(IAC + DO + b"\x18")
    assert not telnet.looks_like(b"login: ")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 100), max_size=8))
def test_any_segmentation_gives_the_same_messages(cuts: list[int]) -> None:
    pieces = []
    for from_client, data in SESSION:
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        pieces += [(from_client, data[a:b]) for a, b in itertools.pairwise(points)]
    assert run(telnet.StreamParser(), pieces) == run(telnet.StreamParser(), SESSION)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=80)), max_size=12))
def test_fuzz(session: list[tuple[bool, bytes]]) -> None:
    parser = telnet.StreamParser()
    for from_client, data in session:
        with contextlib.suppress(Malformed):
            parser.feed(data, from_client)


def test_login_agrees_with_ndpi(shared_data: Path) -> None:
    """nDPI prints "[Username: fake]" for its telnet capture (an OpenBSD login)."""
    root = shared_data / "captures/ndpi/cfgs/default"
    user = re.search(r"\[Username: ([^\]]*)\]", (root / "result/telnet.pcap.out").read_text())[1]
    [conv] = conversations(root / "pcap/telnet.pcap", telnet.StreamParser, ports=telnet.TCP_PORTS)
    assert conv.first("telnet.banner") == {"banner": "OpenBSD/i386 (oof) (ttyp2)"}
    assert conv.first("telnet.login") == {"user_present": True, "password_present": True}
    assert user not in repr(conv.messages)
