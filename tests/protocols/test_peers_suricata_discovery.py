"""Our DHCP/DNS/mDNS parsers against real peers' expectations on real captures.

- Suricata (suricata-verify): every test folder whose test.yaml expects `dhcp`, `dns` or `mdns` EVE
  events. Its capture goes through pcaputil + our parsers; our messages are rendered as the EVE events
  Suricata would log (field names mapped below) and each filter is evaluated like suricata-verify does:
  the number of events matching every key we model must equal the filter's `count`. Keys outside our
  model (tx_id, flow.*, alert.*, ...) are not compared.
- nDPI: the DHCP fingerprint (option 55) and class identifier (option 60) of every DHCP flow of its
  default-configuration results.
- The virtual hospital: the DHCP identity of every labelled device.
"""

from __future__ import annotations

import functools
import json
import re
import struct
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from medsentry.protocols import dhcp, dns
from medsentry.protocols.base import Malformed, Message
from tests import pcaputil

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SV = DATA / "captures" / "suricata-verify"
NDPI = DATA / "captures" / "ndpi" / "cfgs" / "default"
HOSPITAL = DATA / "captures" / "virtual-hospital" / "general-hospital-normal-60s.pcap"
EVENT_TYPES = {"dhcp", "dns", "mdns"}
SURICATA_MAJOR = 9  # the suricata-verify snapshot tests Suricata 9

# Suricata's DHCP logger names only these requested parameters and drops the rest
PARAM_NAMES = {
    1: "subnet_mask", 3: "router", 6: "dns_server", 15: "domain", 35: "arp_timeout", 42: "ntp_server",
    66: "tftp_server_name", 150: "tftp_server_ip",
}  # fmt: skip
FLAG_BITS = {"qr": 0x8000, "aa": 0x0400, "tc": 0x0200, "rd": 0x0100, "ra": 0x0080, "z": 0x0040}

# EVE keys our rendering models; any other key of a filter is not compared
MODELLED = re.compile(
    r"^(event_type|pcap_cnt|src_ip|src_port|dest_ip|dest_port|proto"
    r"|dns\.(type|id|opcode|flags|qr|aa|tc|rd|ra|z|rcode|rrname|rrtype)"
    r"|dns\.queries\[\d+\]\.(rrname|rrtype)"
    r"|dns\.(answers|authorities|additionals)\[\d+\]\.(rrname|rrtype|ttl|rdata|srv\.\w+|soa\.\w+|sshfp\.\w+)"
    r"|dns\.grouped\.\w+\[\d+\]"
    r"|dhcp\.(type|id|client_mac|assigned_ip|client_ip|relay_ip|next_server_ip|dhcp_type|hostname"
    r"|client_id|vendor_class_identifier|lease_time|renewal_time|rebinding_time|subnet_mask"
    r"|params\[\d+\]|routers\[\d+\]|dns_servers\[\d+\])"
    r"|mdns\.(type|(queries|answers)\[\d+\]\.\w+))(\.__len)?$"
)


# --- Suricata -------------------------------------------------------------------------------------


def _folders() -> list[str]:
    if not SV.is_dir():
        return []
    found = []
    for test in sorted(SV.rglob("test.yaml")):
        checks = (yaml.safe_load(test.read_text()) or {}).get("checks") or []
        if any(((c.get("filter") or {}).get("match") or {}).get("event_type") in EVENT_TYPES for c in checks):
            found.append(str(test.parent.relative_to(SV)))
    return found


def _pcap(folder: Path, spec: dict[str, Any]) -> Path | None:
    if spec.get("pcap"):
        path = (folder / spec["pcap"]).resolve()
        return path if path.is_file() else None
    pcaps = sorted(folder.glob("*.pcap"))
    return pcaps[0] if pcaps else None


def _numbered_segments(path: Path) -> list[tuple[int, pcaputil.Segment]]:
    """pcaputil segments with Suricata's pcap_cnt: the 1-based number of the frame they came from."""
    frames = enumerate(pcaputil.frames(path), 1)
    out = []
    for seg in pcaputil.segments(path):
        for number, (ts, _linktype, frame) in frames:
            if ts == seg.ts and seg.payload in frame:
                out.append((number, seg))
                break
    return out


def _rr(rr: dict[str, Any], mdns: bool) -> list[dict[str, Any]]:
    """One of our records as Suricata's EVE answer entries (it logs one entry per TXT string)."""
    rtype, data = rr["type"], rr["data"]
    base = {"rrname": rr["name"], "rrtype": rtype.lower() if mdns else rtype, "ttl": rr["ttl"]}
    if mdns:
        return [{**base, rtype.lower(): data.get("target") if rtype == "SRV" else data}]
    if rtype == "TXT":
        return [{**base, "rdata": s} for s in data] or [{**base, "rdata": ""}]
    if rtype == "SRV":
        return [{**base, "srv": {"name": data["target"], "port": data["port"], "priority": data["priority"],
                                 "weight": data["weight"]}}]  # fmt: skip
    if rtype == "SOA":
        return [{**base, "soa": data}]
    if rtype == "SSHFP":
        sshfp = {"algo": data["algorithm"], "type": data["fp_type"],
                 "fingerprint": ":".join(re.findall("..", data["fingerprint"]))}  # fmt: skip
        return [{**base, "sshfp": sshfp}]
    if rtype == "MX":
        return [{**base, "rdata": data["exchange"]}]
    if rtype not in dns.TYPES.values() or rtype == "NULL":  # we give raw rdata as hex; Suricata escapes it
        data = "".join(chr(b) if b < 0x80 else f"\\x{b:02x}" for b in bytes.fromhex(data))
    return [{**base, "rdata": data}]


def _dns_events(msg: Message, conf: dict[str, Any]) -> list[dict[str, Any]]:
    """Our message as the EVE events Suricata's DNS logger writes with settings `conf`."""
    f = msg.fields
    v2 = conf.get("version") == 2
    response = msg.kind == "dns.response"
    if not conf.get("responses" if response else "requests", True):
        return []
    mdns = f["mdns"]
    header: dict[str, Any] = {"id": f["id"], "opcode": f["opcode"]}
    header |= {"flags": f"{f['flags']:x}", **{k: True for k, bit in FLAG_BITS.items() if f["flags"] & bit}}
    if response:
        header["rcode"] = f["rcode_name"]
    sections = {}
    for name in ("answers", "authorities", "additionals"):
        sections[name] = [e for rr in f[name] for e in _rr(rr, mdns)]
    grouped: dict[str, list[Any]] = defaultdict(list)
    for entry in sections["answers"]:
        if "rdata" in entry:
            grouped[entry["rrtype"]].append(entry["rdata"])
    queries = [{"rrname": q["name"], "rrtype": q["type"].lower() if mdns else q["type"]} for q in f["queries"]
               if not conf.get("types") or q["type"].lower() in conf["types"]]  # fmt: skip
    if conf.get("types") and not queries:
        return []
    if mdns:
        return [{"event_type": "mdns", "mdns": {"type": "response" if response else "request",
                                                "queries": queries, **sections}}]  # fmt: skip
    if not v2:
        body = {"type": "response" if response else "request", **header, "queries": queries}
        if response:
            body |= {**sections, "grouped": dict(grouped)}
        return [{"event_type": "dns", "dns": body}]
    # EVE DNS v2: one event per query, then one "answer" event naming the first query
    if not response:
        return [{"event_type": "dns", "dns": {"type": "query", **header, **q}} for q in queries]
    first = queries[0] if queries else {}
    body = {"type": "answer", **header, **first, **sections, "grouped": dict(grouped)}
    return [{"event_type": "dns", "dns": body, "to_server": True}]


def _dhcp_event(msg: Message) -> dict[str, Any]:
    f = msg.fields
    body: dict[str, Any] = {
        "type": "request" if f["op"] == 1 else "reply", "id": f["xid"], "client_mac": f["client_mac"],
        "assigned_ip": f["yiaddr"], "client_ip": f["ciaddr"], "relay_ip": f["giaddr"],
        "next_server_ip": f["siaddr"], "dhcp_type": msg.kind.removeprefix("dhcp."),
    }  # fmt: skip
    if "client_id" in f:  # Suricata logs the identifier after its type byte
        body["client_id"] = ":".join(re.findall("..", f["client_id"][2:]))
    if "param_request_list" in f:
        body["params"] = [PARAM_NAMES[p] for p in f["param_request_list"] if p in PARAM_NAMES]
    renames = {"hostname": "hostname", "vendor_class": "vendor_class_identifier", "lease_time": "lease_time",
               "renewal_time": "renewal_time", "rebinding_time": "rebinding_time",
               "subnet_mask": "subnet_mask", "routers": "routers", "dns_servers": "dns_servers"}  # fmt: skip
    body |= {eve: f[ours] for ours, eve in renames.items() if ours in f}
    return {"event_type": "dhcp", "dhcp": body}


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else k, out)
    else:
        out[prefix] = value
        if isinstance(value, list):
            for i, v in enumerate(value):
                _flatten(v, f"{prefix}[{i}]", out)
    return out


def _dns_output(folder: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The DNS logger settings of the folder's suricata.yaml: version, requests, responses, types."""
    conf: dict[str, Any] = {}
    path = folder / "suricata.yaml"
    if path.is_file():
        loaded = yaml.safe_load(re.sub(r"^%YAML.*$", "", path.read_text(), flags=re.M)) or {}
        for output in loaded.get("outputs") or []:
            for logger in (output.get("eve-log") or {}).get("types") or []:
                if isinstance(logger, dict) and "dns" in logger:
                    conf = dict(logger["dns"] or {})
    if str((spec.get("env") or {}).get("SURICATA_EVE_DNS_VERSION")) == "2":
        conf["version"] = 2
    return conf


def _detection_ports(args: str, transport: str) -> set[int]:
    pattern = rf"protocols\.dns\.(?:{transport}\.)?detection-ports\.dp=(\d+)"
    return {53} | {int(p) for p in re.findall(pattern, args)}


def _suricata_events(
    segments: list[tuple[int, pcaputil.Segment]], spec: dict[str, Any], conf: dict[str, Any]
) -> list[dict[str, Any]]:
    args = " ".join(spec.get("args") or [])
    plain_dns, tcp_dns = _detection_ports(args, "udp"), _detection_ports(args, "tcp")
    streams: dict[frozenset[tuple[str, int]], dns.StreamParser] = {}
    events = []
    for number, seg in segments:
        ports = {seg.sport, seg.dport}
        try:
            if seg.transport == "udp" and ports & {67, 68}:
                rendered = [_dhcp_event(m) for m in dhcp.parse_datagram(seg.payload)]
            elif seg.transport == "udp" and ports & plain_dns:
                rendered = [e for m in dns.parse_datagram(seg.payload) for e in _dns_events(m, conf)]
            elif seg.transport == "udp" and ports & {dns.MDNS_PORT, dns.LLMNR_PORT}:
                mdns = dns.MDNS_PORT in ports
                msgs = dns.parse_datagram(seg.payload, mdns=mdns, llmnr=not mdns)
                rendered = [e for m in msgs if m.kind.startswith("dns.") for e in _dns_events(m, conf)]
            elif seg.transport == "tcp" and ports & tcp_dns and seg.payload:
                key = frozenset({(seg.src, seg.sport), (seg.dst, seg.dport)})
                msgs = streams.setdefault(key, dns.StreamParser()).feed(seg.payload, seg.dport in tcp_dns)
                rendered = [e for m in msgs for e in _dns_events(m, conf)]
            else:
                continue
        except Malformed:
            continue
        for event in rendered:
            src, sport, dst, dport = seg.src, seg.sport, seg.dst, seg.dport
            if event.pop("to_server", False):  # EVE DNS v2 logs answers with the flow's client as source
                src, sport, dst, dport = dst, dport, src, sport
            event |= {"src_ip": src, "src_port": sport, "dest_ip": dst, "dest_port": dport,
                      "proto": seg.transport.upper()}  # fmt: skip
            # Suricata logs TCP app-layer data when the peer acknowledges it: another packet number
            if seg.transport == "udp":
                event["pcap_cnt"] = number
            events.append(_flatten(event, "", {}))
    return events


def _applies(requires: dict[str, Any] | None) -> bool:
    requires = requires or {}
    if "lt-version" in requires and int(str(requires["lt-version"]).split(".")[0]) <= SURICATA_MAJOR:
        return False
    return int(str(requires.get("min-version", 0)).split(".")[0]) <= SURICATA_MAJOR


def _matches(event: dict[str, Any], key: str, want: Any) -> bool:
    if key == "pcap_cnt" and event.get("proto") == "TCP":
        return True
    if key.endswith(".__len"):
        got = event.get(key.removesuffix(".__len"))
        return got is not None and len(got) == want
    got = event.get(key)
    if key == "dhcp.hostname" and isinstance(want, str):
        want = want.rstrip("\x00")  # we drop the C terminator some clients count in option 12
    return got == want


# Expectations we miss on purpose
KNOWN_DIFFERENCES = {
    "dns/dns-truncated-rname": "a 16 KiB query name: we reject names over 255 octets (RFC 1035 2.3.4) as "
    "Malformed, Suricata logs its first 1025 characters",
}


@functools.cache
def _evaluate(name: str) -> dict[str, Any]:
    """The folder's capture, whether pcaputil decoded it, and its expectations split by outcome."""
    folder = SV / name
    spec = yaml.safe_load((folder / "test.yaml").read_text()) or {}
    pcap = _pcap(folder, spec)
    result: dict[str, Any] = {"pcap": pcap, "decoded": False, "matched": [], "failed": []}
    if pcap is None or not _applies(spec.get("requires")):
        return result
    segments = _numbered_segments(pcap)
    result["decoded"] = bool(segments)
    events = _suricata_events(segments, spec, _dns_output(folder, spec))
    for check in spec.get("checks") or []:
        flt = check.get("filter") or {}
        match = flt.get("match") or {}
        if match.get("event_type") not in EVENT_TYPES or not _applies(flt.get("requires")):
            continue
        keys = {k: v for k, v in match.items() if MODELLED.match(k)}
        count = sum(all(_matches(e, k, v) for k, v in keys.items()) for e in events)
        want = flt.get("count")
        ok = count >= 1 if want is None else count == want
        result["matched" if ok else "failed"].append({"want": want, "got": count, "match": keys})
    return result


def _params() -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_DIFFERENCES[name]))
        if name in KNOWN_DIFFERENCES
        else name
        for name in _folders()
    ]


@pytest.mark.parametrize("name", _params())
def test_suricata_expectations(shared_data: Path, name: str) -> None:
    result = _evaluate(name)
    if result["pcap"] is None:
        pytest.skip("the capture this test names is not in the snapshot")
    if not result["matched"] and not result["failed"]:
        pytest.skip("no expectation applies to Suricata 9")
    if not result["decoded"]:
        linktype = next(pcaputil.frames(result["pcap"]))[1]
        pytest.skip(f"pcaputil decodes no UDP/TCP from link type {linktype}")
    assert not result["failed"], result["failed"]


def test_suricata_summary(shared_data: Path) -> None:
    results = {name: _evaluate(name) for name in _folders()}
    compared = {n: r for n, r in results.items() if r["decoded"] and (r["matched"] or r["failed"])}
    matched = sum(len(r["matched"]) for r in compared.values())
    failed = {n: len(r["failed"]) for n, r in compared.items() if r["failed"]}
    print(f"\nsuricata-verify: {len(results)} folders expect dhcp/dns/mdns events, {len(compared)} compared; "
          f"{matched}/{matched + sum(failed.values())} expectations match; misses: {failed}")  # fmt: skip
    assert len(compared) >= 30 and matched >= 300
    assert set(failed) <= set(KNOWN_DIFFERENCES)


# --- nDPI -----------------------------------------------------------------------------------------

_NDPI_FLOW = re.compile(r"^\s+\d+\s+UDP ([\d.]+):(\d+) <?-> ([\d.]+):(\d+) \[proto: [\d.]*18/DHCP\]")


def _ndpi_dhcp_flows() -> list[tuple[str, str]]:
    if not NDPI.is_dir():
        return []
    return [
        (out.name.removesuffix(".out"), line)
        for out in sorted((NDPI / "result").glob("*.out"))
        for line in out.read_text(errors="replace").splitlines()
        if _NDPI_FLOW.match(line)
    ]


def _without_runts(path: Path, tmp: Path) -> Path:
    """The capture rewritten without frames shorter than an Ethernet header (pcaputil trips on them)."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for ts, _linktype, frame in pcaputil.frames(path):
        if len(frame) >= 14:
            usec = round(ts % 1 * 1e6) % 1_000_000
            out += struct.pack("<IIII", int(ts), usec, len(frame), len(frame)) + frame
    clean = tmp / path.name
    clean.write_bytes(out)
    return clean


def _first_dhcp_payload(pcap: Path, endpoints: frozenset[tuple[str, int]], tmp: Path) -> bytes | None:
    try:
        segments = list(pcaputil.segments(pcap))
    except struct.error:
        segments = list(pcaputil.segments(_without_runts(pcap, tmp)))
    for seg in segments:
        if seg.transport == "udp" and frozenset({(seg.src, seg.sport), (seg.dst, seg.dport)}) == endpoints:
            return seg.payload
    return None


def _stops_at_empty_option_before_55(payload: bytes) -> bool:
    """nDPI ends option parsing at a zero-length option (e.g. 80 Rapid Commit, RFC 4039)."""
    i = 240
    while i + 1 < len(payload) and payload[i] not in (55, 255):
        if payload[i] and payload[i + 1] == 0:
            return True
        i += 2 + payload[i + 1] if payload[i] else 1
    return False


@pytest.mark.parametrize(("pcap", "line"), _ndpi_dhcp_flows())
def test_ndpi_dhcp_fingerprint(shared_data: Path, tmp_path: Path, pcap: str, line: str) -> None:
    m = _NDPI_FLOW.match(line)
    assert m is not None
    endpoints = frozenset({(m[1], int(m[2])), (m[3], int(m[4]))})
    payload = _first_dhcp_payload(NDPI / "pcap" / pcap, endpoints, tmp_path)
    assert payload is not None, "nDPI's flow is not in the capture"
    fields = dhcp.parse_datagram(payload)[0].fields
    theirs = {key: (found[1] if (found := re.search(rf"\[{label}: ([^\]]*)\]", line)) else None)
              for key, label in (("fp", "DHCP Fingerprint"), ("ci", "DHCP Class Ident"),
                                 ("host", "Hostname/SNI"))}  # fmt: skip
    ours_fp = ",".join(map(str, fields.get("param_request_list", []))) or None
    if theirs["fp"] is None and ours_fp is not None and _stops_at_empty_option_before_55(payload):
        return  # nDPI's known limitation, see above; Wireshark reads on like we do
    assert ours_fp == theirs["fp"]
    assert fields.get("vendor_class") == theirs["ci"]
    if theirs["host"] is not None:  # nDPI lower-cases host names
        assert fields.get("hostname", "").lower() == theirs["host"]


# --- the virtual hospital -------------------------------------------------------------------------


def test_virtual_hospital_dhcp_identities(shared_data: Path) -> None:
    if not HOSPITAL.is_file():
        pytest.skip("virtual hospital capture absent")
    labels = [json.loads(line) for line in Path(f"{HOSPITAL}.labels.jsonl").read_text().splitlines()]
    devices = [d for d in labels if d.get("type") == "device" and d.get("dhcp")]
    by_mac: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for seg in pcaputil.segments(HOSPITAL):
        if seg.transport == "udp" and seg.dport == 67:
            for msg in dhcp.parse_datagram(seg.payload):
                by_mac[msg.fields["client_mac"]].append(msg.fields)
    assert len(devices) >= 10
    for device in devices:
        seen = by_mac[device["mac"]]
        assert seen, device["name"]
        for fields in seen:
            got = {k: fields.get(k) for k in ("hostname", "vendor_class", "param_request_list")}
            assert got == device["dhcp"], device["name"]
