"""Zeek logs as evidence.

Peers: Zeek 6.2's own TSV and JSON logs of the same traffic (brimdata/zed-sample-data: both formats must
give identical observations), the IoT-23 42-1 conn log against its capture (every flow's first_seen is a
packet its client sent, every last_seen a packet of the flow), and real dhcp/http rows published with Zeek
packages. Row counts are taken from the files independently of the reader.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.capture import zeek
from medsentry.capture.zeek import ZeekStats, read_stream, read_zeek
from medsentry.observe import Observation
from medsentry.privacy import phi_hash
from tests import pcaputil

ZED = "zeek/zed-sample-data"
IOT23 = "captures/iot23-42-1"
KEEP_ALL = ("tls.certificate", "tls.server_hello", "snmp.response", "ssh.banner", "software")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _data_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8", newline="\n") as f:
        return [line.rstrip("\r\n") for line in f if line.strip() and not line.startswith("#")]


def _tsv_columns(path: Path) -> tuple[list[str], list[list[str]]]:
    """Field names and rows of a TSV log, split naively (test oracle)."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    names = next(line.split("\t")[1:] for line in lines if line.startswith("#fields"))
    return names, [line.split("\t") for line in lines if not line.startswith("#")]


def _by_kind(observations: list[Observation]) -> dict[str, list[Observation]]:
    out: dict[str, list[Observation]] = defaultdict(list)
    for o in observations:
        out[o.kind].append(o)
    return out


@dataclass
class ZedRun:
    tsv: ZeekStats = field(default_factory=ZeekStats)
    json: ZeekStats = field(default_factory=ZeekStats)
    compared: int = 0
    mismatches: list[tuple[Observation | None, Observation | None]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    sample: dict[str, list[Observation]] = field(default_factory=lambda: defaultdict(list))


@pytest.fixture(scope="module")
def zed(shared_data: Path) -> ZedRun:
    """One streaming pass over both formats, side by side (about 330k rows in all)."""
    run, base = ZedRun(), shared_data / ZED
    tsv, jsn = read_zeek(base / "zeek-default", run.tsv), read_zeek(base / "zeek-json", run.json)
    for a, b in itertools.zip_longest(tsv, jsn):
        run.compared += 1
        if a != b:
            run.mismatches.append((a, b))
        if a is not None:
            run.kinds[a.kind] += 1
            if a.kind in KEEP_ALL or len(run.sample[a.kind]) < 50:
                run.sample[a.kind].append(a)
    return run


# --- the zed sample: counts, format equivalence, known values ------------------------------------------


def test_row_counts_per_log_equal_the_data_lines(zed: ZedRun, shared_data: Path) -> None:
    base = shared_data / ZED
    tsv_files = sorted((base / "zeek-default").glob("*.log.gz"))
    assert len(tsv_files) == 32
    for path in tsv_files:
        log = path.name.split(".")[0]
        expected = len(_data_lines(path))
        assert zed.tsv.rows[log] == expected, log
        assert zed.json.rows[log] == len(_data_lines(base / "zeek-json" / f"{log}.json.gz")) == expected, log
    assert zed.tsv.rows["dns"] == 53615 and zed.tsv.rows["ssl"] == 49474
    # logs without a mapping are counted, not silently dropped
    assert zed.tsv.skipped["weird"] == zed.tsv.rows["weird"] > 0
    assert set(zed.tsv.skipped) == set(zed.tsv.rows) - zeek.LOG_TYPES
    assert zed.tsv.error_count == zed.json.error_count == 0


def test_tsv_and_json_give_the_same_observations(zed: ZedRun) -> None:
    assert zed.mismatches[:3] == []
    assert zed.compared == zed.tsv.observations == zed.json.observations > 160_000


def test_observation_counts_follow_the_rows(zed: ZedRun, shared_data: Path) -> None:
    names, rows = _tsv_columns(shared_data / ZED / "zeek-default" / "dns.log.gz")
    rcode, rtt = names.index("rcode"), names.index("rtt")
    assert zed.kinds["dns.response"] == sum(r[rcode] != "-" for r in rows)
    assert zed.kinds["dns.query"] == sum(r[rcode] == "-" or r[rtt] != "-" for r in rows)
    names, rows = _tsv_columns(shared_data / ZED / "zeek-default" / "ssl.log.gz")
    version, cipher = names.index("version"), names.index("cipher")
    assert zed.kinds["tls.client_hello"] == len(rows)
    assert zed.kinds["tls.server_hello"] == sum(r[version] != "-" or r[cipher] != "-" for r in rows)
    assert zed.kinds["tls.certificate"] == zed.tsv.rows["x509"] + zed.tsv.rows["known_certs"]
    same = ("host.seen", "known_hosts"), ("service.seen", "known_services"), ("software", "software")
    for kind, log in (*same, ("ssh.banner", "ssh"), ("snmp.response", "snmp")):
        assert zed.kinds[kind] == zed.tsv.rows[log], kind
    assert all(o.source == "zeek" for kind in zed.sample for o in zed.sample[kind])


def test_dns_values(zed: ZedRun) -> None:
    q, r = zed.sample["dns.query"][0], zed.sample["dns.response"][0]
    # first row: 1521911720.865716 10.47.1.100:41772 -> 10.0.0.100:53 udp id 36329 ise.wrccdc.org A NOERROR
    assert (q.ts, q.src_ip, q.sport, q.dst_ip, q.dport, q.transport) == (
        1521911720.865716,
        "10.47.1.100",
        41772,
        "10.0.0.100",
        53,
        "udp",
    )
    assert q.protocol == "dns" and q.fields["id"] == 36329
    assert q.fields["queries"] == [{"name": "ise.wrccdc.org", "type": 1}]
    assert (r.src_ip, r.sport, r.dst_ip, r.dport) == ("10.0.0.100", 53, "10.47.1.100", 41772)
    assert r.fields["rcode"] == 0 and r.fields["rcode_name"] == "NOERROR"
    assert [a["data"] for a in r.fields["answers"]] == ["ise.wrccdc.cpp.edu", "134.71.3.16"]
    assert [a["ttl"] for a in r.fields["answers"]] == [2230.0, 41830.0]
    assert r.fields["mdns"] is False


def test_tls_values_and_certificate_join(zed: ZedRun) -> None:
    hello = zed.sample["tls.client_hello"][0]
    assert (hello.src_ip, hello.sport) == ("10.164.94.120", 39611)
    assert (hello.dst_ip, hello.dport) == ("10.47.3.200", 443)
    assert "sni" not in hello.fields  # server_name unset in that row: absent, not None
    server = zed.sample["tls.server_hello"][0]
    assert (server.src_ip, server.sport, server.dport) == ("10.47.3.200", 443, 39611)
    assert server.fields["version"] == 0x0301 and server.fields["version_name"] == "TLSv10"
    assert server.fields["cipher"] == "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"
    fp = "b2dafbcdbc75210672f137f27ce882ccb799887631655d4f11191d5a678e44fe"
    assert server.fields["cert_chain_fps"] == [fp]
    certs = [c for c in zed.sample["tls.certificate"] if c.fields.get("sha256") == fp]
    assert len(certs) == 1
    cert = certs[0].fields
    # TSV escapes the DN's own backslash as \\ ; JSON has it once
    assert cert["subject"].startswith("unstructuredName=1315656901\\,564d7761726520496e632e,CN=localhost")
    assert ",O=VMware\\, Inc,L=Palo Alto," in cert["subject"]
    assert cert["issuer"] == "O=VMware Installer" and cert["self_signed"] is False
    assert (cert["not_before"], cert["not_after"]) == (1315656902, 1678536902)
    assert cert["serial"] == "CC57FE54011E" and cert["san"] == ["localhost.localdomain"]
    assert certs[0].src_ip is None
    # known_certs ties the same certificate to the server that presented it
    known = [c for c in zed.sample["tls.certificate"] if c.src_ip == "10.47.3.200" and c.sport == 443]
    assert known and known[0].fields["serial"] == "CC57FE54011E" and known[0].protocol == "tls"
    assert sum(1 for c in zed.sample["tls.certificate"] if "sni" in c.fields or "ja3" in c.fields) == 0


def test_software_hosts_services_ssh_snmp(zed: ZedRun) -> None:
    sw = zed.sample["software"][0]
    assert (sw.src_ip, sw.sport, sw.protocol) == ("10.164.94.120", None, "zeek.software")
    assert sw.fields == {
        "host": "10.164.94.120",
        "software_type": "HTTP::BROWSER",
        "name": "MSIE",
        "version": "8.0",
        "unparsed_version": "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0)",
    }
    ssh_servers = [s for s in zed.sample["software"] if s.fields["software_type"] == "SSH::SERVER"]
    assert any("OpenSSH" in s.fields["unparsed_version"] for s in ssh_servers)
    host = zed.sample["host.seen"][0]
    assert (host.ts, host.src_ip, host.kind) == (1521911720.605656, "10.164.94.120", "host.seen")
    svc = zed.sample["service.seen"][0]
    assert (svc.src_ip, svc.sport, svc.transport) == ("10.47.3.200", 80, "tcp")
    assert svc.fields == {"port": 80, "transport": "tcp", "service": ["HTTP"]}
    ssh = zed.sample["ssh.banner"][0]
    assert (ssh.src_ip, ssh.sport, ssh.dst_ip, ssh.dport) == ("10.0.0.227", 59849, "10.47.8.50", 22)
    assert ssh.fields["client"] == "SSH-2.0-OpenSSH_7.6"
    assert ssh.fields["server"] == "SSH-2.0-OpenSSH_7.4p1 Raspbian-10+deb9u3"
    assert ssh.fields["version"] == 2 and ssh.fields["auth_success"] is True
    snmp = zed.sample["snmp.response"]
    assert len(snmp) == 65 and snmp[0].src_ip == "10.0.0.85" and snmp[0].sport == 161
    assert snmp[0].dst_ip == "10.47.1.152" and snmp[0].fields["version"] == "1"
    assert all(o.fields["community_present"] for o in snmp)


def test_snmp_community_never_leaves_the_reader(zed: ZedRun, shared_data: Path) -> None:
    names, rows = _tsv_columns(shared_data / ZED / "zeek-default" / "snmp.log.gz")
    communities = {r[names.index("community")] for r in rows}
    assert communities == {"internal", "public"}
    text = repr(zed.sample["snmp.response"]) + json.dumps([o.fields for o in zed.sample["snmp.response"]])
    assert not any(c in text for c in communities)


# --- conn: IoT-23 against its capture ------------------------------------------------------------------


@pytest.fixture(scope="module")
def iot23(shared_data: Path) -> tuple[list[Observation], ZeekStats]:
    stats = ZeekStats()
    return list(read_zeek(shared_data / IOT23 / "bro", stats)), stats


def test_conn_flows(iot23: tuple[list[Observation], ZeekStats]) -> None:
    flows, stats = iot23
    assert stats.rows == Counter({"conn": 4426}) and len(flows) == 4426  # README: 4,426 Zeek flows
    f = flows[0]
    # 1547127288.026074 CXY5uG2sSmjJ0grfY2 192.168.1.197 58312 104.24.96.120 80 tcp http 3.909013 83 67212 SF
    # ... orig_pkts 54 orig_ip_bytes 3371 resp_pkts 50 resp_ip_bytes 69224
    assert (f.kind, f.protocol, f.transport, f.ts) == ("flow", "flow", "tcp", 1547127288.026074)
    assert (f.src_ip, f.sport, f.dst_ip, f.dport) == ("192.168.1.197", 58312, "104.24.96.120", 80)
    assert f.fields == {
        "transport": "tcp",
        "client_ip": "192.168.1.197",
        "client_port": 58312,
        "server_ip": "104.24.96.120",
        "server_port": 80,
        "first_seen": 1547127288.026074,
        "last_seen": 1547127291.935087,
        "packets_c2s": 54,
        "packets_s2c": 50,
        "bytes_c2s": 3371,
        "bytes_s2c": 69224,
        "app": "http",
        "tcp_state": "closed",
        "conn_state": "SF",
        "uid": "CXY5uG2sSmjJ0grfY2",
    }
    assert flows[2].fields["tcp_state"] == "syn" and "app" not in flows[2].fields  # S0, service unset
    udp = [f for f in flows if f.transport == "udp"]
    assert udp and all("tcp_state" not in f.fields for f in udp)


def test_conn_link_layer_addresses_and_vlan() -> None:
    # fields policy/protocols/conn/mac-logging.zeek and vlan-logging.zeek add to conn.log
    row = {
        "_path": "conn",
        "ts": 10.5,
        "id.orig_h": "10.0.0.2",
        "id.orig_p": 4000,
        "id.resp_h": "10.0.0.3",
        "id.resp_p": 104,
        "proto": "tcp",
        "conn_state": "RSTR",
        "orig_l2_addr": "00:09:5C:01:02:03",
        "resp_l2_addr": "00:10:5d:0a:0b:0c",
        "vlan": 20,
    }
    (f,), _ = _read_text(json.dumps(row), "conn.json")
    assert (f.src_mac, f.dst_mac) == ("00:09:5c:01:02:03", "00:10:5d:0a:0b:0c")
    assert (f.fields["client_mac"], f.fields["server_mac"], f.fields["vlan"]) == (f.src_mac, f.dst_mac, 20)
    assert f.fields["tcp_state"] == "reset" and f.fields["last_seen"] == 10.5


def test_conn_times_are_packets_of_the_capture(
    iot23: tuple[list[Observation], ZeekStats], shared_data: Path
) -> None:
    flows, _ = iot23
    times: dict[tuple, list[float]] = defaultdict(list)
    for s in pcaputil.segments(shared_data / IOT23 / "2019-01-10-14-34-38-192.168.1.197.pcap"):
        times[(s.transport, s.src, s.sport, s.dst, s.dport)].append(s.ts)
    first_ok = last_ok = 0
    for f in flows:
        x = f.fields
        c2s = times[(x["transport"], x["client_ip"], x["client_port"], x["server_ip"], x["server_port"])]
        s2c = times[(x["transport"], x["server_ip"], x["server_port"], x["client_ip"], x["client_port"])]
        first_ok += any(abs(t - x["first_seen"]) <= 1e-6 for t in c2s)
        last_ok += any(abs(t - x["last_seen"]) <= 1e-6 for t in c2s + s2c)
    assert first_ok == last_ok == len(flows)


# --- dhcp, http: rows published with Zeek packages -------------------------------------------------------

# tenzir/zeek-mac-ages README: Zeek's dhcp.log of the Wireshark wiki's dhcp.pcap (extra column mac_age)
DHCP_TSV = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tdhcp
#open\t2018-12-28-15-47-11
#fields\tts\tuids\tclient_addr\tserver_addr\tmac\thost_name\tclient_fqdn\tdomain\trequested_addr\tassigned_addr\t\
lease_time\tclient_message\tserver_message\tmsg_types\tduration\tmac_age
#types\ttime\tset[string]\taddr\taddr\tstring\tstring\tstring\tstring\taddr\taddr\tinterval\tstring\tstring\t\
vector[string]\tinterval\tstring
1102274184.387484\tCMnxGv1YFAUvoaADr2,CzdoL23dzCo4Zuq0d8\t192.168.0.10\t192.168.0.1\t00:0b:82:01:fc:42\t-\t-\t-\t\
192.168.0.10\t192.168.0.10\t3600.000000\t-\t-\tREQUEST,ACK\t0.000314\t2002-10-14
1102274184.317453\tCMnxGv1YFAUvoaADr2,CzdoL23dzCo4Zuq0d8\t192.168.0.10\t192.168.0.1\t00:0b:82:01:fc:42\t-\t-\t-\t\
0.0.0.0\t192.168.0.10\t3600.000000\t-\t-\tDISCOVER,OFFER\t0.000295\t2002-10-14
#close\t2018-12-28-15-47-11
"""

# Zeek's dhcp.log row for the Microknoppix client (TryHackMe's Zeek room sample), with the client_software
# column policy/protocols/dhcp/software.zeek adds (option 60), here set for the test
DHCP_VENDOR_TSV = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\tdhcp
#fields\tts\tuids\tclient_addr\tserver_addr\tmac\thost_name\tclient_fqdn\tdomain\trequested_addr\tassigned_addr\t\
lease_time\tclient_message\tserver_message\tmsg_types\tduration\tclient_software
#types\ttime\tset[string]\taddr\taddr\tstring\tstring\tstring\tstring\taddr\taddr\tinterval\tstring\tstring\t\
vector[string]\tinterval\tstring
1488571152.699148\tCWkNtQRxRlsllb1w4,CFrsWd4jVETjvRPkm9\t192.168.30.11\t192.168.30.1\t00:21:70:E9:BB:47\t\
Microknoppix\t-\twebernetz.net\t192.168.30.11\t192.168.30.11\t86400.000000\t-\t-\tDISCOVER,OFFER,REQUEST,ACK\t\
0.022753\tudhcp 1.20.2
"""

# a real http.log (Zeek with cookie_vars/uri_vars) of an EC2 instance talking to its metadata service, plus
# one constructed row carrying basic-auth credentials
HTTP_TSV = """#separator \\x09
#set_separator\t,
#empty_field\t(empty)
#unset_field\t-
#path\thttp
#open\t2023-12-03-13-38-52
#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\ttrans_depth\tmethod\thost\turi\treferrer\tversion\t\
user_agent\torigin\trequest_body_len\tresponse_body_len\tstatus_code\tstatus_msg\tinfo_code\tinfo_msg\ttags\t\
username\tpassword\tproxied\torig_fuids\torig_filenames\torig_mime_types\tresp_fuids\tresp_filenames\t\
resp_mime_types\tcookie_vars\turi_vars
#types\ttime\tstring\taddr\tport\taddr\tport\tcount\tstring\tstring\tstring\tstring\tstring\tstring\tstring\t\
count\tcount\tcount\tstring\tcount\tstring\tset[enum]\tstring\tstring\tset[string]\tvector[string]\t\
vector[string]\tvector[string]\tvector[string]\tvector[string]\tvector[string]\tvector[string]\tvector[string]
1701610732.952279\tC57bIgUaQUd7GBmI8\t172.31.5.68\t38580\t169.254.169.254\t80\t1\tPUT\t169.254.169.254\t\
/latest/api/token\t-\t1.0\taws-sdk-go/1.44.260 (go1.20.7; linux; amd64)\t-\t0\t56\t200\tOK\t-\t-\t\
(empty)\t-\t-\t-\t-\t-\t-\tFKN4Ld2lnN48Scfdk\t-\ttext/plain\t-\t/latest/api/token
1701610732.953904\tC7CrTo4tyLsay89Hg6\t172.31.5.68\t38590\t169.254.169.254\t80\t1\tGET\t169.254.169.254\t\
/latest/meta-data/instance-id\t-\t1.0\taws-sdk-go/1.44.260 (go1.20.7; linux; amd64)\t-\t0\t19\t200\tOK\t\
-\t-\t(empty)\t-\t-\t-\t-\t-\t-\tFzCHPt49yKEXSgYV29\t-\ttext/plain\t-\t/latest/meta-data/instance-id
1701610733.100000\tCx1\t10.0.0.5\t40000\t10.0.0.9\t8080\t1\tGET\tpacs.example\t/fhir/Patient\t-\t1.1\tcurl/8.0\t\
-\t0\t0\t401\tUnauthorized\t-\t-\t(empty)\tdr.house\tS3cr3t-Pw\t-\t-\t-\t-\t-\t-\t-\t-\t-
"""


def _tsv_to_json(tsv: str) -> str:
    """Zeek's JSON writer applied to a TSV log: the test's own converter, from #types."""
    lines = tsv.splitlines()
    header = {line.split("\t")[0][1:]: line.split("\t")[1:] for line in lines if line.startswith("#")}
    out = []
    for line in lines:
        if line.startswith("#"):
            continue
        obj: dict[str, object] = {"_path": header["path"][0]}
        for name, typ, raw in zip(header["fields"], header["types"], line.split("\t"), strict=True):
            if raw == "-":
                continue
            if typ.startswith(("set[", "vector[")):
                obj[name] = [] if raw == "(empty)" else raw.split(",")
            elif typ in ("count", "port", "int"):
                obj[name] = int(raw)
            elif typ in ("time", "interval", "double"):
                obj[name] = float(raw)
            elif typ == "bool":
                obj[name] = raw == "T"
            else:
                obj[name] = "" if raw == "(empty)" else raw
        out.append(json.dumps(obj))
    return "\n".join(out) + "\n"


def _read_text(text: str, name: str) -> tuple[list[Observation], ZeekStats]:
    stats = ZeekStats()
    return list(read_stream(io.BytesIO(text.encode()), name, stats)), stats


def test_dhcp() -> None:
    obs, stats = _read_text(DHCP_TSV, "dhcp.log")
    assert stats.rows == Counter({"dhcp": 2}) and stats.error_count == 0
    req, disc = obs
    assert (req.kind, req.protocol, req.src_mac, req.src_ip, req.dst_ip, req.transport) == (
        "dhcp.request",
        "dhcp",
        "00:0b:82:01:fc:42",
        "192.168.0.10",
        "192.168.0.1",
        "udp",
    )
    assert req.fields == {
        "client_mac": "00:0b:82:01:fc:42",
        "requested_ip": "192.168.0.10",
        "yiaddr": "192.168.0.10",
        "server_id": "192.168.0.1",
        "lease_time": 3600.0,
        "message_type": 3,
        "msg_types": ["REQUEST", "ACK"],
    }
    assert disc.kind == "dhcp.discover" and disc.fields["message_type"] == 1 and disc.ts == 1102274184.317453
    (vend,), _ = _read_text(DHCP_VENDOR_TSV, "x.log")
    assert vend.kind == "dhcp.request" and vend.src_mac == "00:21:70:e9:bb:47"
    assert vend.fields["hostname"] == "Microknoppix" and vend.fields["vendor_class"] == "udhcp 1.20.2"
    assert vend.fields["domain"] == "webernetz.net"


def test_http_and_its_secrets() -> None:
    obs, stats = _read_text(HTTP_TSV, "http.log")
    assert stats.error_count == 0 and stats.rows["http"] == 3
    kinds = _by_kind(obs)
    assert len(kinds["http.request"]) == len(kinds["http.response"]) == 3
    put = kinds["http.request"][0]
    assert (put.src_ip, put.sport, put.dst_ip, put.dport, put.transport) == (
        "172.31.5.68",
        38580,
        "169.254.169.254",
        80,
        "tcp",
    )
    assert put.fields == {
        "method": "PUT",
        "host": "169.254.169.254",
        "path": "/latest/api/token",
        "user_agent": "aws-sdk-go/1.44.260 (go1.20.7; linux; amd64)",
        "basic_auth_present": False,
        "uid": "C57bIgUaQUd7GBmI8",
    }
    resp = kinds["http.response"][0]
    assert (resp.src_ip, resp.sport, resp.fields["status"]) == ("169.254.169.254", 80, 200)
    auth = kinds["http.request"][2].fields
    assert auth["basic_auth_present"] is True and auth["basic_auth_user_hash"] == phi_hash("dr.house")
    text = repr(obs) + json.dumps([o.fields for o in obs])
    assert "S3cr3t-Pw" not in text and "dr.house" not in text


def test_json_lines_equal_tsv_for_conn_dhcp_http(
    iot23: tuple[list[Observation], ZeekStats], shared_data: Path
) -> None:
    for tsv, name in ((DHCP_TSV, "dhcp.log"), (DHCP_VENDOR_TSV, "dhcp.log"), (HTTP_TSV, "http.log")):
        assert _read_text(_tsv_to_json(tsv), "x.json")[0] == _read_text(tsv, name)[0]
    conn = (shared_data / IOT23 / "bro" / "conn.log.labeled").read_text().replace("\r\n", "\n")
    # the labelled file joins its two extra columns with spaces: one field for both converters
    assert _read_text(_tsv_to_json(conn), "conn.json")[0] == iot23[0]


def test_iso_and_epoch_times_agree() -> None:
    line = {"_path": "known_hosts", "host": "10.1.2.3"}
    epoch = json.dumps(line | {"ts": 1521911720.605656})
    iso = json.dumps(line | {"ts": "2018-03-24T17:15:20.605656Z"})
    naive = json.dumps(line | {"ts": "2018-03-24T17:15:20.605656"})
    obs, _ = _read_text("\n".join((epoch, iso, naive)), "x.json")
    assert [o.ts for o in obs] == [1521911720.605656] * 3


def test_escapes_and_control_characters() -> None:
    # software.log with an unparsed_version holding a tab, \x01, UTF-8 é, a backslash and a literal "-"
    tsv = (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tsoftware\n"
        "#fields\tts\thost\thost_p\tsoftware_type\tname\tversion.major\tversion.minor\tversion.minor2\t"
        "version.minor3\tversion.addl\tunparsed_version\n"
        "1.000000\t10.0.0.1\t-\tHTTP::SERVER\t\\x2d\t1\t-\t3\t-\tbeta\ta\\x09b\\x01c\\xc3\\xa9\\\\d\\xff\n"
    )
    (o,), stats = _read_text(tsv, "software.log")
    assert stats.error_count == 0
    assert o.fields["unparsed_version"] == "a\tb\\x01c\u00e9\\d\\xff"  # as Zeek's JSON writer spells it
    assert o.fields["name"] == "-"
    assert o.fields["version"] == "1.3-beta"  # Software::software_fmt_version skips unset parts


# --- bad input: named by file and line, counted, never fatal ----------------------------------------------


def _copy(src: Path, dst: Path, edit=None) -> None:
    lines = gzip.decompress(src.read_bytes()).split(b"\n")
    if edit:
        edit(lines)
    dst.write_bytes(b"\n".join(lines))


def test_truncated_gzip_stops_that_file_only(tmp_path: Path, shared_data: Path) -> None:
    base = shared_data / ZED / "zeek-default"
    data = (base / "dns.log.gz").read_bytes()
    (tmp_path / "dns.log.gz").write_bytes(data[: len(data) // 2])
    shutil.copy(base / "ssh.log.gz", tmp_path / "ssh.log.gz")
    stats = ZeekStats()
    obs = list(read_zeek(tmp_path, stats))
    (err,) = stats.errors
    assert err.path.endswith("dns.log.gz") and "unreadable" in err.reason
    assert str(err).startswith(f"{tmp_path / 'dns.log.gz'}:{err.line}: ")
    assert err.line == 8 + stats.rows["dns"] + 1  # 8 header lines, then the rows read
    assert 0 < stats.rows["dns"] < 53615
    assert stats.rows["ssh"] == 22 and len(_by_kind(obs)["ssh.banner"]) == 22


def test_bad_rows_are_named_and_skipped(tmp_path: Path, shared_data: Path) -> None:
    base = shared_data / ZED

    def drop_field(lines: list[bytes]) -> None:
        lines[11] = lines[11].rsplit(b"\t", 1)[0]  # line 12: the 4th row loses its last field

    def bad_count(lines: list[bytes]) -> None:
        fields = lines[12].split(b"\t")
        fields[6] = b"two"  # line 13: version is a count
        lines[12] = b"\t".join(fields)

    def bad_json(lines: list[bytes]) -> None:
        lines[4] = lines[4][:40]  # line 5 cut short

    _copy(base / "zeek-default" / "ssh.log.gz", tmp_path / "ssh.a.log", drop_field)
    _copy(base / "zeek-default" / "ssh.log.gz", tmp_path / "ssh.b.log", bad_count)
    _copy(base / "zeek-json" / "ssh.json.gz", tmp_path / "ssh.c.json", bad_json)
    stats = ZeekStats()
    obs = list(read_zeek([tmp_path / "ssh.a.log", tmp_path / "ssh.b.log", tmp_path / "ssh.c.json"], stats))
    where = [(Path(e.path).name, e.line) for e in stats.errors]
    assert where == [("ssh.a.log", 12), ("ssh.b.log", 13), ("ssh.c.json", 5)]
    assert "22 fields, the #fields header names 23" in stats.errors[0].reason
    assert "version" in stats.errors[1].reason and "bad JSON" in stats.errors[2].reason
    assert stats.rows["ssh"] == 3 * 22 and len(obs) == 3 * 21 and stats.error_count == 3


def test_other_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = ZeekStats()
    assert list(read_zeek(tmp_path / "missing.log", stats)) == []
    assert stats.errors[0].line == 0 and "cannot open" in stats.errors[0].reason
    monkeypatch.setattr(zeek, "MAX_LINE", 64)
    row = json.dumps({"_path": "known_hosts", "ts": 1.0, "host": "10.0.0.1"})
    long_row = json.dumps({"_path": "known_hosts", "ts": 2.0, "host": "x" * 200})
    text = "\n".join((row, long_row, row, '{"ts": [1', "1.0\t10.0.0.1"))
    obs, stats = _read_text(text, "known_hosts.json")
    assert len(obs) == 2 and stats.rows["known_hosts"] == 5
    assert [(e.line, e.reason.split(":")[0]) for e in stats.errors] == [
        (2, "line longer than 64 bytes"),
        (4, "bad JSON"),
        (5, "neither a JSON object nor a TSV row after a #fields header"),  # a TSV row without its header
    ]


# --- fuzzing ----------------------------------------------------------------------------------------------


def _zeek_escape(value: str) -> str:
    """Zeek's ASCII writer: backslash as \\\\, unprintable bytes and separators as \\xHH, markers escaped."""
    if value == "":
        return "(empty)"
    if value in ("-", "(empty)"):
        return "".join(f"\\x{ord(c):02x}" for c in value[0]) + value[1:]
    out = []
    for b in value.encode():
        out.append("\\\\" if b == 0x5C else chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}")
    return "".join(out)


def _json_text(value: str) -> str:
    """Zeek's JSON writer spells control characters other than \\b \\t \\n \\f \\r as the text \\xHH."""
    return "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 and c not in "\b\t\n\f\r" else c for c in value)


SOFTWARE_HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
    "#path\tsoftware\n#fields\tts\thost\thost_p\tsoftware_type\tname\tversion.major\tunparsed_version\n"
)


@FUZZ
@given(st.text(), st.text(), st.integers(0, 2**42), st.none() | st.integers(0, 2**31))
def test_fuzz_tsv_and_json_rows_agree(name: str, unparsed: str, micros: int, major: int | None) -> None:
    ts = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
    tsv = (
        SOFTWARE_HEADER
        + "\t".join(
            (
                ts,
                "10.0.0.1",
                "80",
                "HTTP::SERVER",
                _zeek_escape(name),
                "-" if major is None else str(major),
                _zeek_escape(unparsed),
            )
        )
        + "\n"
    )
    stamp = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    row = {
        "_path": "software",
        "ts": iso,
        "host": "10.0.0.1",
        "host_p": 80,
        "software_type": "HTTP::SERVER",
        "name": _json_text(name),
        "unparsed_version": _json_text(unparsed),
    }
    if major is not None:
        row["version.major"] = major
    (a,), sa = _read_text(tsv, "x.log")
    (b,), sb = _read_text(json.dumps(row), "x.json")
    assert sa.error_count == sb.error_count == 0
    assert a == b
    assert a.ts == float(ts) and a.fields["name"] == _json_text(name)
    assert a.fields["unparsed_version"] == _json_text(unparsed)


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from(["conn.log", "x.json", "dns.log", "noname"]))
def test_fuzz_random_bytes(data: bytes, name: str) -> None:
    stats = ZeekStats()
    obs = list(read_stream(io.BytesIO(data), name, stats))
    assert stats.observations == len(obs) and all(isinstance(o, Observation) for o in obs)


def _head(shared_data: Path, rel: str, n: int) -> bytes:
    with gzip.open(shared_data / ZED / rel) as f:
        return b"".join(itertools.islice(f, n))


@pytest.fixture(scope="module")
def real_heads(shared_data: Path) -> list[tuple[str, bytes]]:
    return [
        (name, _head(shared_data, rel, 40))
        for name, rel in (
            ("ssl.log", "zeek-default/ssl.log.gz"),
            ("dns.log", "zeek-default/dns.log.gz"),
            ("x509.log", "zeek-default/x509.log.gz"),
            ("ssl.json", "zeek-json/ssl.json.gz"),
            ("dns.json", "zeek-json/dns.json.gz"),
            ("software.json", "zeek-json/software.json.gz"),
        )
    ]


@FUZZ
@given(st.data())
def test_fuzz_mutated_real_logs(real_heads: list[tuple[str, bytes]], data: st.DataObject) -> None:
    name, head = data.draw(st.sampled_from(real_heads))
    buf = bytearray(head)
    for _ in range(data.draw(st.integers(1, 12))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        op = data.draw(st.sampled_from(["set", "delete", "insert"]))
        byte = data.draw(st.sampled_from(b'\t\n,-\\"{}#x\x00\xff'))
        if op == "set":
            buf[pos] = byte
        elif op == "delete":
            del buf[pos]
        else:
            buf.insert(pos, byte)
    stats = ZeekStats()
    obs = list(read_stream(io.BytesIO(bytes(buf)), name, stats))
    assert stats.observations == len(obs)
    assert sum(stats.rows.values()) >= 1
    assert all(isinstance(o.ts, float) for o in obs)
