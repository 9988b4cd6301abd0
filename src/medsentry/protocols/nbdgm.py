"""NetBIOS Datagram Service over UDP 138 (RFC 1002 4.4), and in it the Windows Browser protocol's
announcements (MS-BRWS): a Windows host (or Samba) broadcasts its name, OS version and roles every
few minutes, unasked.

    datagram    MSG_TYPE(1: 0x10 direct unique, 0x11 direct group, 0x12 broadcast) FLAGS(1) DGM_ID(2)
                SOURCE_IP(4) SOURCE_PORT(2) DGM_LENGTH(2) PACKET_OFFSET(2)
                SOURCE_NAME, DESTINATION_NAME (first-level encoded NetBIOS names, as in NBNS) USER_DATA
    USER_DATA   an SMB_COM_TRANSACTION (MS-CIFS 2.2.4.33): header "\\xffSMB" command(1 = 0x25) ... (32);
                WordCount(1) Words(2 x WordCount): ... DataCount at byte 22, DataOffset (from the SMB
                header) at 24, SetupCount at 26; ByteCount(2); mailslot name "\\MAILSLOT\\BROWSE\\0" ...
    browser     Opcode(1: 0x01 HostAnnouncement, 0x0F LocalMasterAnnouncement, 0x0C DomainAnnouncement)
                UpdateCount(1) Periodicity(4 LE) ServerName(16, NUL padded) OSVersionMajor(1)
                OSVersionMinor(1) ServerType(4 LE: SV_TYPE_* flags, MS-RAP 2.5.5.2.1)
                BrowserVersionMajor(1) Minor(1) Signature(2) Comment(NUL terminated; for a domain
                announcement: the master browser's name)

Other datagrams (other mailslots, queries, errors) are recognised and yield nothing.
"""

from __future__ import annotations

import struct
from typing import Any, Final

from medsentry.protocols.base import Malformed, Message
from medsentry.protocols.dns import read_labels

NAME: Final = "nbdgm"
UDP_PORTS: Final = frozenset({138})

_DATAGRAM_TYPES: Final = frozenset({0x10, 0x11, 0x12})
_SMB_HEADER: Final = 32
_TRANSACTION: Final = 0x25
_BROWSE: Final = b"\\MAILSLOT\\BROWSE"
_HOST: Final = 0x01
_DOMAIN: Final = 0x0C
_LOCAL_MASTER: Final = 0x0F
_ANNOUNCEMENT: Final = struct.Struct("<BBI16sBBIBBH")  # opcode .. signature: 32 bytes, then the comment
_U16: Final = struct.Struct("<H")
MAX_COMMENT: Final = 64

# SV_TYPE_* flags by bit (MS-RAP 2.5.5.2.1)
SERVER_TYPES: Final = (
    "workstation", "server", "sql_server", "domain_controller", "backup_domain_controller",
    "time_source", "apple_filing", "novell", "domain_member", "print_server", "dialin_server",
    "unix", "nt", "windows_for_workgroups", "mfpn", "nt_server", "potential_browser", "backup_browser",
    "master_browser", "domain_master_browser", "osf", "vms", "windows_9x", "dfs", "cluster",
    "terminal_server", "cluster_virtual_server", "", "dce", "alternate_transport", "local_list_only",
    "domain_enum",
)  # fmt: skip
_UNIX: Final = 1 << 11
_NT_SERVER: Final = 1 << 15


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def _browser_frame(payload: bytes) -> bytes | None:
    """The Trans_Data of a mailslot write to \\MAILSLOT\\BROWSE, or None for any other datagram."""
    if len(payload) < 14 or payload[0] not in _DATAGRAM_TYPES:
        return None
    off = 14
    for _ in range(2):  # source and destination names
        labels, off = read_labels(payload, off)
        if not labels:
            raise Malformed("empty NetBIOS name in a datagram")
    smb = payload[off:]
    if len(smb) < _SMB_HEADER + 1 or smb[:4] != b"\xffSMB" or smb[4] != _TRANSACTION:
        return None
    words = smb[_SMB_HEADER]
    params = _SMB_HEADER + 1
    if words < 14 or len(smb) < params + 2 * words + 2:
        raise Malformed("SMB transaction shorter than its word count")
    data_count, data_offset = struct.unpack_from("<HH", smb, params + 22)
    name_at = params + 2 * words + 2
    if smb[name_at : name_at + len(_BROWSE)].upper() != _BROWSE:
        return None
    if data_offset + data_count > len(smb):
        raise Malformed("browser frame runs past the datagram")
    return smb[data_offset : data_offset + data_count]


def parse_datagram(payload: bytes) -> list[Message]:
    frame = _browser_frame(payload)
    if not frame or frame[0] not in (_HOST, _DOMAIN, _LOCAL_MASTER):
        return []
    if len(frame) < _ANNOUNCEMENT.size:
        raise Malformed("truncated browser announcement")
    opcode, _, _, name, major, minor, server_type, _, _, _ = _ANNOUNCEMENT.unpack_from(frame)
    comment = _text(frame[_ANNOUNCEMENT.size : _ANNOUNCEMENT.size + MAX_COMMENT])
    fields: dict[str, Any]
    if opcode == _DOMAIN:
        fields = {"workgroup": _text(name), "master_browser": comment}
        return [Message("nbdgm.domain_announcement", fields)]
    fields = {
        "name": _text(name),
        "os_version": f"{major}.{minor}",
        "roles": [role for bit, role in enumerate(SERVER_TYPES) if role and server_type >> bit & 1],
        "unix": bool(server_type & _UNIX),
        "nt_server": bool(server_type & _NT_SERVER),
        "comment": comment,
        "local_master": opcode == _LOCAL_MASTER,
    }
    if not fields["name"]:
        raise Malformed("host announcement without a name")
    return [Message("nbdgm.host_announcement", fields)]

