from __future__ import annotations

import contextlib
import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.privacy import phi_hash
from medsentry.protocols import ftp
from medsentry.protocols.base import Malformed, Message
from tests.protocols.test_peers_suricata_tls_ftp import conversations

# (from_client, bytes) in the order they cross the wire
SESSION = [
    (False, b"220-JetDirect FTP Server\r\n220-HP Color LaserJet MFP M479fdw\r\n220 ready\r\n"),
    (True, b"USER admin\r\n"), (False, b"331 Password required\r\n"),
    (True, b"PASS 1234\r\n"), (False, b"530 Login incorrect\r\n"),
    (True, b"USER admin\r\n"), (False, b"331 Password required\r\n"),
    (True, b"PASS admin\r\n"), (False, b"230 User logged in\r\n"),
    (True, b"RETR " + b"A" * 10_000 + b"\r\nSYST\r\n"), (False, b"550 no\r\n215 UNIX Type: L8\r\n"),
]


def run(parser: ftp.StreamParser, session: list[tuple[bool, bytes]]) -> list[Message]:
    return [m for from_client, data in session for m in parser.feed(data, from_client)]


def test_banner_and_logins() -> None:
    messages = run(ftp.StreamParser(), SESSION)
    assert [m.kind for m in messages] == ["ftp.banner", "ftp.login", "ftp.login"]
    assert messages[0].fields == {"banner": "JetDirect FTP Server\nHP Color LaserJet MFP M479fdw\nready"}
    assert messages[0].from_client is False and messages[1].from_client is True
    failed, ok = messages[1].fields, messages[2].fields
    assert failed == {"user_present": True, "password_present": True, "success": False, "reply_code": 530,
                      "user_hash": phi_hash("admin")}
    assert ok["success"] and ok["reply_code"] == 230 and ok["user_hash"] == failed["user_hash"]
    # the salted user hash is random hex and may hold "1234"; it is checked against phi_hash above
    text = json.dumps([{k: v for k, v in m.fields.items() if k != "user_hash"} for m in messages])
    assert "admin" not in text and "1234" not in text


def test_anonymous_without_password_and_auth_tls() -> None:
    messages = run(ftp.StreamParser(), [(False, b"220 ok\r\n"), (True, b"USER anonymous\r\n"),
                                        (False, b"230 Operation successful\r\n")])
    assert messages[1].fields["success"] and not messages[1].fields["password_present"]
    parser = ftp.StreamParser()
    run(parser, [(False, b"220 ok\r\n"), (True, b"AUTH TLS\r\n"), (False, b"234 Proceed\r\n")])
    assert parser.feed(b"\x16\x03\x01\x02\x00\x01", False) == []  # TLS from here on: not parsed


def test_not_ftp() -> None:
    with pytest.raises(Malformed):
        ftp.StreamParser().feed(b"SSH-2.0-OpenSSH_8.9\r\n", False)
    parser = ftp.StreamParser()
    messages = parser.feed(b"220 ok\r\n\x16\x03\x01 garbage\r\n", False)  # keeps the banner
    assert [m.kind for m in messages] == ["ftp.banner"]


def test_long_lines_are_cut_not_buffered() -> None:
    parser = ftp.StreamParser()
    parser.feed(b"220 ok\r\n", False)
    for _ in range(100):
        parser.feed(b"A" * 100_000, True)
    assert len(parser._client._buf) <= 4096
    parser.feed(b"\r\nUSER x\r\n", True)
    assert parser.feed(b"550 no\r\n230 ok\r\n", False)[0].fields["user_present"]


def test_looks_like() -> None:
    assert ftp.looks_like(b"USER anonymous\r\n")
    assert ftp.looks_like(b"AUTH TLS\r\n")
    assert not ftp.looks_like(b"GET / HTTP/1.1\r\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 200), max_size=10))
def test_any_segmentation_gives_the_same_messages(cuts: list[int]) -> None:
    pieces = []
    for from_client, data in SESSION:
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        pieces += [(from_client, data[a:b]) for a, b in itertools.pairwise(points)]
    assert run(ftp.StreamParser(), pieces) == run(ftp.StreamParser(), SESSION)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=80)), max_size=10))
def test_fuzz(session: list[tuple[bool, bytes]]) -> None:
    parser = ftp.StreamParser()
    for from_client, data in session:
        with contextlib.suppress(Malformed):
            parser.feed(data, from_client)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_session(data: st.DataObject) -> None:
    parser = ftp.StreamParser()
    for from_client, chunk in SESSION:
        mutated = bytearray(chunk)
        if data.draw(st.booleans()):
            position = data.draw(st.integers(0, len(mutated) - 1))
            mutated[position] = data.draw(st.sampled_from(b"\r\n -3\x00\xff"))
        with contextlib.suppress(Malformed):
            parser.feed(bytes(mutated), from_client)


# --- peers -------------------------------------------------------------------------------------------

def test_virtual_hospital_default_login(shared_data: Path) -> None:
    """The attack capture: 10.77.0.166 tries admin:1234, root:root, then gets in as admin:admin."""
    pcap = shared_data / "captures/virtual-hospital/general-hospital-60s.pcap"
    labels = [json.loads(line) for line in Path(f"{pcap}.labels.jsonl").read_text().splitlines()]
    printer = next(d for d in labels if d.get("name") == "prn1")
    attack = next(a for a in labels if a.get("technique") == "ftp_cleartext_default_login")
    convs = [c for c in conversations(pcap, ftp.StreamParser, ports=ftp.TCP_PORTS) if c.messages]
    assert {c.server[0] for c in convs} == {printer["ip"]}
    assert {c.client[0] for c in convs} == {attack["attacker"]["ip"]}
    banners = [m.fields["banner"] for c in convs for m in c.messages if m.kind == "ftp.banner"]
    assert banners == [printer["protocols"]["ftp"]["banner"]] * 3
    logins = [m.fields for c in convs for m in c.messages if m.kind == "ftp.login"]
    user, password = attack["credentials"].split(":")
    assert [lg["success"] for lg in logins] == [False, False, True]
    assert logins[-1]["user_hash"] == phi_hash(user)
    assert not any(user in v or password in v for lg in logins for v in map(str, lg.values()))


@pytest.mark.parametrize("name", ["ftp.pcap", "ftp_failed.pcap"])
def test_logins_agree_with_ndpi(shared_data: Path, name: str) -> None:
    """nDPI prints "[User: ...][Pwd: ...]" and "[Auth Failed]" for FTP control flows."""
    root = shared_data / "captures/ndpi/cfgs/default"
    out = (root / "result" / f"{name}.out").read_text()
    line = next(ln for ln in out.splitlines() if "[User: " in ln)
    user, password = re.search(r"\[User: ([^\]]*)\]\[Pwd: ([^\]]*)\]", line).groups()
    [conv] = [c for c in conversations(root / "pcap" / name, ftp.StreamParser, ports=ftp.TCP_PORTS)
              if c.messages]
    login = conv.first("ftp.login")
    assert login is not None and conv.malformed == 0
    assert login["user_hash"] == phi_hash(user)
    assert login["success"] is ("[Auth Failed]" not in line)
    assert user not in repr(conv.messages) and (not password or password not in repr(conv.messages))


def test_a_client_command_counts_after_an_ftp_greeting_only() -> None:
    """POP3 and IRC clients send USER and PASS too: an FTP server speaks first ("220"). On port 21 a capture
    that began after the greeting still counts; elsewhere the greeting must have been seen."""
    from medsentry import protocols

    user = b"USER anonymous\r\n"
    assert protocols.for_stream(21, 40000, user) is ftp
    assert protocols.for_stream(21, 40000, user, b"220 ProFTPD") is ftp
    assert protocols.for_stream(21, 40000, user, b"+OK POP3 ready") is None
    assert protocols.for_stream(2121, 40000, user, b"220 (vsFTPd 3.0.3)") is ftp
    assert protocols.for_stream(2121, 40000, user) is None  # off its port, a greeting unseen
    assert protocols.for_stream(110, 40000, user, b"+OK Dovecot ready.") is None


@pytest.mark.parametrize("capture", ["pop3.pcap", "irc.pcap"])
def test_pop3_and_irc_sessions_are_not_taken_for_ftp(shared_data: Path, capture: str) -> None:
    from medsentry.pipeline import observe_files

    pcap = shared_data / "captures/ndpi/cfgs/default/pcap" / capture
    if not pcap.is_file():
        pytest.skip(f"nDPI's {capture} absent")
    observations, _ = observe_files([pcap])
    flows = [o for o in observations if o.kind == "flow" and o.transport == "tcp"]
    assert flows and not [o for o in flows if o.fields["app"] == "ftp"]
    assert not [o for o in observations if o.protocol == "ftp"]
