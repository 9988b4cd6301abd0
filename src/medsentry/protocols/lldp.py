"""LLDP, IEEE 802.1AB, EtherType 0x88CC: the frame payload is a list of TLVs.

    TLV         type(7 bits) length(9 bits) value; type 0 ends the list
    1 Chassis ID, 2 Port ID   subtype(1) id: 4 (chassis) / 3 (port) MAC address, 5 / 4 network address
                              (IANA family(1) address), others text (interface name, local id, ...)
    3 TTL(2)    4 Port Description    5 System Name    6 System Description
    7 Capabilities   system(2) enabled(2), bit 0 = other, 1 repeater, 2 bridge, 3 WLAN AP, 4 router,
                     5 telephone, 6 DOCSIS, 7 station only, 8 C-VLAN, 9 S-VLAN, 10 two-port MAC relay
    8 Management Address   length(1) family(1) address, interface subtype(1) number(4), OID
    127 Organizationally specific   OUI(3) subtype(1) data; LLDP-MED (OUI 00-12-BB, ANSI/TIA-1057)
                     subtypes 5..10 are the inventory: hardware, firmware, software revision, serial
                     number, manufacturer, model name

System name and description, the LLDP-MED inventory and the capabilities (telephone, station only)
identify the sender; IP phones and many medical devices speak LLDP-MED.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Final

from medsentry.protocols.base import Malformed, Message, ipv4_text

NAME: Final = "lldp"
ETHERTYPES: Final = frozenset({0x88CC})

_TLV: Final = struct.Struct("!H")
_CAPS: Final = struct.Struct("!HH")
CAPABILITIES: Final = (
    "other", "repeater", "bridge", "wlan_ap", "router", "telephone", "docsis", "station", "c_vlan",
    "s_vlan", "tpmr",
)  # fmt: skip
_TEXT: Final = {4: "port_description", 5: "system_name", 6: "system_description"}
_MED_OUI: Final = b"\x00\x12\xbb"
_MED_INVENTORY: Final = {
    5: "hardware_revision", 6: "firmware_revision", 7: "software_revision", 8: "serial_number",
    9: "manufacturer", 10: "model",
}  # fmt: skip


def _mac(value: bytes) -> str:
    return value.hex(":")


def _address(value: bytes) -> str | None:
    """An IANA address family number (1 IPv4, 2 IPv6) then the address."""
    if value[:1] == b"\x01" and len(value) == 5:
        return ipv4_text(value[1:])
    if value[:1] == b"\x02" and len(value) == 17:
        return socket.inet_ntop(socket.AF_INET6, value[1:])
    return None


def _text(value: bytes) -> str:
    return value.rstrip(b"\x00").decode("utf-8", "backslashreplace")


def _id(value: bytes, mac_subtype: int, address_subtype: int) -> str:
    if not value:
        raise Malformed("empty chassis or port ID")
    subtype, data = value[0], value[1:]
    if subtype == mac_subtype and len(data) == 6:
        return _mac(data)
    if subtype == address_subtype:
        return _address(data) or data.hex()
    return _text(data)


def capability_names(bits: int, names: tuple[str, ...]) -> list[str]:
    return [name for i, name in enumerate(names) if bits >> i & 1]


def parse_datagram(payload: bytes) -> list[Message]:
    fields: dict[str, Any] = {}
    off, n = 0, len(payload)
    while off + 2 <= n:
        header = _TLV.unpack_from(payload, off)[0]
        tlv_type, length = header >> 9, header & 0x1FF
        value = payload[off + 2 : off + 2 + length]
        off += 2 + length
        if off > n:
            raise Malformed("TLV runs past the end of the frame")
        if tlv_type == 0:
            break
        if tlv_type == 1:
            fields["chassis_id"] = _id(value, 4, 5)
        elif tlv_type == 2:
            fields["port_id"] = _id(value, 3, 4)
        elif tlv_type == 3 and length == 2:
            fields["ttl"] = _TLV.unpack(value)[0]
        elif tlv_type in _TEXT:
            fields[_TEXT[tlv_type]] = _text(value)
        elif tlv_type == 7 and length == 4:
            system, enabled = _CAPS.unpack(value)
            fields["capabilities"] = capability_names(system, CAPABILITIES)
            fields["capabilities_enabled"] = capability_names(enabled, CAPABILITIES)
        elif tlv_type == 8 and length >= 2 and "mgmt_ip" not in fields:
            address = _address(value[1 : 1 + value[0]])
            if address is not None:
                fields["mgmt_ip"] = address
        elif tlv_type == 127 and value[:3] == _MED_OUI and length > 4 and value[3] in _MED_INVENTORY:
            fields[_MED_INVENTORY[value[3]]] = _text(value[4:])
    # the standard makes the first three TLVs mandatory; without them this is not LLDP
    if "chassis_id" not in fields or "port_id" not in fields:
        raise Malformed("LLDPDU without chassis or port ID")
    return [Message("lldp", fields)]
