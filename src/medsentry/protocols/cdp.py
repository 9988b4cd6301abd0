"""Cisco Discovery Protocol v1/v2, in 802.3 LLC/SNAP frames (DSAP/SSAP 0xAA, OUI 00:00:0C, PID 0x2000).

`parse_datagram` gets the bytes after the SNAP header:

    version(1) ttl(1) checksum(2), then TLVs: type(2) length(2, including these 4 bytes) value
    0x0001 Device ID (text)          0x0003 Port ID (text)      0x0005 Software Version (text)
    0x0006 Platform (text)           0x000A native VLAN(2)      0x0014 System Name (text)
    0x0002 Addresses / 0x0016 Management Addresses: count(4), per address: protocol type(1: 1 NLPID,
           2 802.2) protocol length(1) protocol (NLPID 0xCC = IPv4; 802.2 SNAP ...86DD = IPv6)
           address length(2) address
    0x0004 Capabilities(4): 0x01 router, 0x02 transparent bridge, 0x04 source-route bridge, 0x08 switch,
           0x10 host, 0x20 IGMP, 0x40 repeater, 0x80 VoIP phone, 0x100 remotely managed,
           0x200 CVTA / video camera, 0x400 two-port MAC relay

The Device ID is the chassis identifier (a host name, or "SEP" + MAC on Cisco phones), so it is also
reported as `chassis_id`, the field LLDP fills.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Final

from medsentry.protocols.base import Malformed, Message, ipv4_text
from medsentry.protocols.lldp import capability_names

NAME: Final = "cdp"
SNAP_PID: Final = 0x2000

_TLV: Final = struct.Struct("!HH")
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
CAPABILITIES: Final = (
    "router", "trans_bridge", "sr_bridge", "switch", "host", "igmp", "repeater", "phone",
    "remote_managed", "camera", "tpmr",
)  # fmt: skip
_TEXT: Final = {1: "device_id", 3: "port_id", 5: "software_version", 6: "platform", 0x14: "system_name"}
_IPV6_PROTOCOL: Final = b"\xaa\xaa\x03\x00\x00\x00\x86\xdd"


def _addresses(value: bytes) -> list[str]:
    if len(value) < 4:
        raise Malformed("short address TLV")
    count, off, out = _U32.unpack_from(value)[0], 4, []
    for _ in range(min(count, len(value) // 5)):  # each address takes at least 5 bytes
        if off + 2 > len(value):
            raise Malformed("truncated address")
        plen = value[off + 1]
        protocol = value[off + 2 : off + 2 + plen]
        off += 2 + plen
        if off + 2 > len(value):
            raise Malformed("truncated address")
        alen = _U16.unpack_from(value, off)[0]
        address = value[off + 2 : off + 2 + alen]
        off += 2 + alen
        if off > len(value):
            raise Malformed("address runs past its TLV")
        if protocol == b"\xcc" and alen == 4:
            out.append(ipv4_text(address))
        elif protocol == _IPV6_PROTOCOL and alen == 16:
            out.append(socket.inet_ntop(socket.AF_INET6, address))
    return out


def parse_datagram(payload: bytes) -> list[Message]:
    if len(payload) < 4 or payload[0] not in (1, 2):
        raise Malformed("not a CDP v1/v2 header")
    fields: dict[str, Any] = {"version": payload[0], "ttl": payload[1]}
    off, n = 4, len(payload)
    while off + 4 <= n:
        tlv_type, length = _TLV.unpack_from(payload, off)
        if length < 4 or off + length > n:
            raise Malformed("bad CDP TLV length")
        value = payload[off + 4 : off + length]
        off += length
        if tlv_type in _TEXT:
            fields[_TEXT[tlv_type]] = value.rstrip(b"\x00").decode("utf-8", "backslashreplace")
        elif tlv_type == 2:
            fields["addresses"] = _addresses(value)
        elif tlv_type == 0x16:
            fields["mgmt_addresses"] = _addresses(value)
        elif tlv_type == 4 and length == 8:
            fields["capabilities"] = capability_names(_U32.unpack(value)[0], CAPABILITIES)
        elif tlv_type == 0x0A and length == 6:
            fields["native_vlan"] = _U16.unpack(value)[0]
    if "device_id" not in fields:
        raise Malformed("CDP without a Device ID")
    fields["chassis_id"] = fields["device_id"]
    ips = fields.get("mgmt_addresses") or fields.get("addresses")
    if ips:
        fields["mgmt_ip"] = ips[0]
    return [Message("cdp", fields)]
