"""SMB session starts: SMB1 (itself a finding) and its NativeOS strings, SMB2 dialects, NTLM inside session
setups; nDPI's SMB captures read as Wireshark reads them."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from medsentry.protocols import smb
from medsentry.protocols.base import Malformed
from tests.protocols.test_ntlmssp import challenge

NDPI = Path(__file__).resolve().parents[2].parent / "shared/data/captures/ndpi/cfgs/default/pcap"


def session(message: bytes) -> bytes:
    return b"\x00" + len(message).to_bytes(3, "big") + message


def smb2(command: int, response: bool, body: bytes) -> bytes:
    header = b"\xfeSMB" + struct.pack("<HHIHHI", 64, 0, 0, command, 1, 1 if response else 0) + bytes(44)
    return header + body


def test_smb2_negotiate_and_an_ntlm_session_setup() -> None:
    parser = smb.StreamParser()
    assert smb.looks_like(session(smb2(0, False, bytes(36))))
    negotiate = smb2(0, True, struct.pack("<HHH", 65, 1, 0x0311) + bytes(58))
    [msg] = parser.feed(session(negotiate), False)
    assert (msg.kind, msg.fields) == ("smb.negotiate", {"smb1": False, "dialect": "3.1.1"})
    setup = smb2(1, True, struct.pack("<HHHH", 9, 0, 72, 0) + challenge({1: "PACS-01"}))
    [ntlm] = parser.feed(session(setup), False)
    assert ntlm.kind == "smb.ntlm" and ntlm.fields["netbios_computer"] == "PACS-01"
    assert ntlm.fields["os_build"] == 20300


def test_messages_split_anywhere() -> None:
    stream = session(smb2(0, True, struct.pack("<HHH", 65, 1, 0x0210) + bytes(58)))
    parser = smb.StreamParser()
    got = [m for i in range(0, len(stream), 7) for m in parser.feed(stream[i : i + 7], False)]
    assert [m.fields["dialect"] for m in got] == ["2.1"]


@pytest.mark.parametrize("stream", [b"\x07\x00\x00\x04ABCD", session(b"HTTP/1.1 200 OK\r\n" + bytes(60))])
def test_malformed(stream: bytes) -> None:
    with pytest.raises(Malformed):
        smb.StreamParser().feed(stream, False)


@pytest.mark.parametrize("capture", ["smbv1.pcap", "smb_frags.pcap"])
def test_smb1_session_setups_read_as_wireshark_reads_them(shared_data: Path, capture: str) -> None:
    from medsentry.pipeline import observe_files

    pcap = NDPI / capture
    if not pcap.is_file() or shutil.which("tshark") is None:
        pytest.skip(f"needs nDPI's {capture} and tshark")
    args = ["tshark", "-r", str(pcap), "-Y", "smb.cmd == 0x73 && smb.native_os", "-T", "fields",
            "-e", "ip.src", "-e", "smb.native_os", "-e", "smb.native_lanman"]  # fmt: skip
    theirs = sorted(tuple(line.split("\t")) for line in subprocess.run(
        args, capture_output=True, text=True, check=True).stdout.splitlines())  # fmt: skip
    observations, stats = observe_files([pcap])
    ours = sorted((o.src_ip, o.fields.get("native_os"), o.fields.get("native_lanman"))
                  for o in observations if o.kind == "smb.session_setup")  # fmt: skip
    assert len(ours) == 2 and ours == theirs and not stats.malformed_by_protocol
    assert [o.fields for o in observations if o.kind == "smb.negotiate"] == [{"smb1": True, "dialect": "1"}]


def test_the_os_an_smb1_host_names(shared_data: Path) -> None:
    from medsentry.analysis import run_inputs

    if not (NDPI / "smbv1.pcap").is_file():
        pytest.skip("needs nDPI's smbv1.pcap")
    oses = {d.ips[0]: d.os for d in run_inputs([NDPI / "smbv1.pcap"]).devices if d.ips}
    assert oses["10.128.0.243"] == "Windows 7 Ultimate" and oses["172.16.156.130"] == "Windows 2000"
