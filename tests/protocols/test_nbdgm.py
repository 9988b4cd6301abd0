"""NetBIOS datagrams (UDP 138) and the browser announcements in them: built by hand from MS-BRWS / MS-CIFS,
and the real ones of nDPI's captures read as Wireshark reads them."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from medsentry.identify.inventory import Identifier
from medsentry.observe import Observation
from medsentry.protocols import nbdgm
from medsentry.protocols.base import Malformed
from tests import pcaputil
from tests.protocols.test_nbns import encode

NDPI = Path(__file__).resolve().parents[2].parent / "shared/data/captures/ndpi/cfgs/default"
CAPTURES = ["gnutella.pcap", "1kxun.pcap", "wechat.pcap", "netbios.pcap"]  # Windows 10, Samba, Windows 7


def datagram(frame: bytes, mailslot: bytes = b"\\MAILSLOT\\BROWSE", msg_type: int = 0x11) -> bytes:
    """A NetBIOS datagram carrying `frame` as a mailslot write (SMB_COM_TRANSACTION, 3 setup words)."""
    name = mailslot + b"\x00"
    data_offset = 32 + 1 + 34 + 2 + len(name)
    words = struct.pack("<HHHHBBHIHHHHHBB3H", 0, len(frame), 0, 0, 0, 0, 0, 0, 0, 0, 0, len(frame),
                        data_offset, 3, 0, 1, 1, 2)  # fmt: skip
    smb = b"\xffSMB\x25" + bytes(27) + bytes([17]) + words + struct.pack("<H", len(name) + len(frame))
    smb += name + frame
    names = encode("ICU-WS-07", 0x00) + encode("HOSPITAL", 0x1D)
    header = struct.pack("!BBHIHHH", msg_type, 0x02, 7, 0x0A4D0007, 138, len(names) + len(smb), 0)
    return header + names + smb


def announcement(name: bytes, major: int, minor: int, server_type: int, comment: bytes = b"",
                 opcode: int = 0x01) -> bytes:  # fmt: skip
    return struct.pack("<BBI16sBBIBBH", opcode, 3, 720_000, name.ljust(16, b"\x00"), major, minor,
                       server_type, 15, 1, 0xAA55) + comment + b"\x00"  # fmt: skip


def test_host_announcement() -> None:
    frame = announcement(b"ICU-WS-07", 5, 1, 0x00011003, b"ICU nurses' station")
    (msg,) = nbdgm.parse_datagram(datagram(frame))
    assert msg.kind == "nbdgm.host_announcement"
    assert msg.fields == {
        "name": "ICU-WS-07", "os_version": "5.1",
        "roles": ["workstation", "server", "nt", "potential_browser"], "unix": False, "nt_server": False,
        "comment": "ICU nurses' station", "local_master": False,
    }  # fmt: skip


def test_local_master_and_domain_announcements() -> None:
    local = nbdgm.parse_datagram(datagram(announcement(b"PACS-01", 6, 3, 0x0004900B, opcode=0x0F)))
    assert local[0].fields["local_master"] and local[0].fields["nt_server"]
    assert local[0].fields["roles"] == ["workstation", "server", "domain_controller", "nt", "nt_server",
                                        "master_browser"]  # fmt: skip
    (domain,) = nbdgm.parse_datagram(datagram(announcement(b"RADIOLOGY", 4, 9, 0x80001000, b"PACS-01", 0x0C)))
    assert domain.kind == "nbdgm.domain_announcement"
    assert domain.fields == {"workgroup": "RADIOLOGY", "master_browser": "PACS-01"}


def test_other_datagrams_are_recognised_and_say_nothing() -> None:
    assert nbdgm.parse_datagram(datagram(b"\x09\x01" + bytes(8))) == []  # GetBackupListRequest
    assert nbdgm.parse_datagram(datagram(announcement(b"X", 6, 1, 1), b"\\MAILSLOT\\NET\\NETLOGON")) == []
    assert nbdgm.parse_datagram(b"\x14\x02" + bytes(40)) == []  # a datagram query, no user data
    assert nbdgm.parse_datagram(datagram(b"")) == []


@pytest.mark.parametrize(
    "payload",
    [
        datagram(announcement(b"X", 6, 1, 1))[:-20],  # the frame cut short
        datagram(b"\x01" + bytes(10)),  # an announcement shorter than its fixed part
        datagram(announcement(b"", 6, 1, 1)),  # without a name
        b"\x11\x02" + bytes(12) + b"\x20" + b"A" * 10,  # a name running past the end
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        nbdgm.parse_datagram(payload)


def test_announcements_read_as_wireshark_reads_them(shared_data: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    ours, theirs = [], []
    for name in CAPTURES:
        pcap = NDPI / "pcap" / name
        for seg in pcaputil.segments(pcap):
            if seg.transport == "udp" and seg.dport == 138:
                for m in nbdgm.parse_datagram(seg.payload):
                    if m.kind == "nbdgm.host_announcement":
                        f = m.fields
                        ours.append((seg.src, f["name"], f["os_version"], f["comment"]))
        out = subprocess.run(
            ["tshark", "-r", str(pcap), "-Y", "browser.command == 0x01 || browser.command == 0x0f",
             "-T", "fields", "-e", "ip.src", "-e", "browser.server", "-e", "browser.os_major",
             "-e", "browser.os_minor", "-e", "browser.comment"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        for line in out.splitlines():
            src, server, major, minor, comment = line.split("\t")
            theirs.append((src, server, f"{major}.{minor}", comment))
    assert len(ours) >= 8 and sorted(ours) == sorted(theirs)


def _identify(fields: dict) -> tuple[str | None, str | None]:
    ident = Identifier()
    ident.add(Observation(1.0, "nbdgm", "nbdgm.host_announcement", "00:30:48:b0:b1:94", "10.0.5.9",
                          None, "10.0.5.255", 138, 138, "udp", fields))  # fmt: skip
    (device,) = ident.devices()
    return device.os, device.hostname


@pytest.mark.parametrize(
    ("version", "server_type", "os"),
    [
        ("5.1", 0x00011003, "Windows XP"),
        ("6.1", 0x00011007, "Windows 7"),
        ("6.1", 0x0000900B, "Windows Server 2008 R2"),
        ("10.0", 0x00001003, "Windows 10 or 11"),
        ("10.0", 0x00009003, "Windows Server 2016 or later"),
        ("4.9", 0x00849A03, "Linux or Unix (Samba)"),  # Samba sets a version of its own
        ("4.0", 0x00402003, "Windows 95/98/ME"),
    ],
)
def test_the_os_a_host_announces(version: str, server_type: int, os: str) -> None:
    major, minor = map(int, version.split("."))
    (msg,) = nbdgm.parse_datagram(datagram(announcement(b"NVR9", major, minor, server_type)))
    assert _identify(msg.fields) == (os, "NVR9")
