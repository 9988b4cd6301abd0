from __future__ import annotations

import contextlib
import json
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import ssdp
from medsentry.protocols.base import Malformed
from tests import pcaputil

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "captures"
NDPI = CAPTURES / "ndpi" / "cfgs" / "default"
HOSPITAL = CAPTURES / "virtual-hospital" / "general-hospital-normal-60s.pcap"

NOTIFY = (
    b"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n"
    b"lOCATION: http://10.77.0.111:80/description.xml\r\nNT: urn:schemas-upnp-org:device:PatientMonitor:1\r\n"
    b"NTS: ssdp:alive\r\nSERVER: VxWorks/6.9 UPnP/1.0 IntelliVue-MX450/L.01\r\n"
    b"USN: uuid:0123::upnp:rootdevice\r\n\r\n"
)


def test_notify() -> None:
    (msg,) = ssdp.parse_datagram(NOTIFY)
    assert msg.kind == "ssdp.notify"
    assert msg.fields == {
        "location": "http://10.77.0.111:80/description.xml",
        "nt": "urn:schemas-upnp-org:device:PatientMonitor:1", "nts": "ssdp:alive",
        "server": "VxWorks/6.9 UPnP/1.0 IntelliVue-MX450/L.01", "usn": "uuid:0123::upnp:rootdevice",
    }  # fmt: skip


def test_msearch_and_response() -> None:
    search = b'M-SEARCH * HTTP/1.1\nHost:239.255.255.250:1900\nMan:"ssdp:discover"\nST:ssdp:all\n'
    search += b"User-Agent: UPnP/1.0\n\n\0"  # LF line ends and a trailing NUL, as some stacks send
    (msg,) = ssdp.parse_datagram(search)
    assert msg.kind == "ssdp.msearch" and msg.fields == {"st": "ssdp:all", "user_agent": "UPnP/1.0"}
    reply = (
        b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\nServer: Roku/9.1\r\nLOCATION: http://10.0.0.2/\r\n\r\n"
    )
    (msg,) = ssdp.parse_datagram(reply)
    assert msg.kind == "ssdp.response" and msg.fields["server"] == "Roku/9.1"
    assert ssdp.looks_like(reply) and ssdp.looks_like(search) and not ssdp.looks_like(b"GET / HTTP/1.1")


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"GET / HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\n\r\n",
        b"NOTIFY * HTTP/1.1\r\nno colon here\r\n",
    ],
)
def test_malformed(payload: bytes) -> None:
    with pytest.raises(Malformed):
        ssdp.parse_datagram(payload)


def test_virtual_hospital_servers_match_labels(shared_data: Path) -> None:
    if not HOSPITAL.is_file():
        pytest.skip("virtual hospital capture absent")
    labels = [json.loads(line) for line in Path(f"{HOSPITAL}.labels.jsonl").read_text().splitlines()]
    devices = {
        d["mac"]: d["protocols"]["ssdp"]
        for d in labels
        if d.get("type") == "device" and "ssdp" in d.get("protocols", {})
    }
    seen: dict[str, set[tuple[str, str]]] = {}
    for seg in pcaputil.segments(HOSPITAL):
        if seg.transport == "udp" and seg.dport == 1900 and seg.src_mac in devices:
            (msg,) = ssdp.parse_datagram(seg.payload)
            seen.setdefault(seg.src_mac, set()).add((msg.fields["server"], msg.fields["nt"]))
    assert len(devices) >= 5
    assert seen == {mac: {(want["server"], want["nt"])} for mac, want in devices.items()}


def _ndpi_ssdp_flows() -> list[tuple[str, frozenset[tuple[str, int]], str | None]]:
    flows = []
    for out in sorted((NDPI / "result").glob("*.out")) if NDPI.is_dir() else []:
        for line in out.read_text(errors="replace").splitlines():
            m = re.match(r"^\s+\d+\s+UDP ([\d.]+):(\d+) <?-> ([\d.]+):(\d+) \[proto: [\d.]*12/SSDP\]", line)
            if m:
                ua = re.search(r"\[User-Agent: ([^\]]*)\]", line)
                key = frozenset({(m[1], int(m[2])), (m[3], int(m[4]))})
                flows.append((out.name.removesuffix(".out"), key, ua and ua[1]))
    return flows


def test_every_ndpi_ssdp_flow_parses(shared_data: Path) -> None:
    """The first packet of every flow nDPI labels SSDP parses, with nDPI's User-Agent where it has one."""
    flows = _ndpi_ssdp_flows()
    assert len(flows) >= 10
    by_pcap: dict[str, dict[frozenset[tuple[str, int]], str | None]] = {}
    for pcap, key, ua in flows:
        by_pcap.setdefault(pcap, {})[key] = ua
    checked, unreadable = 0, []
    for pcap, wanted in by_pcap.items():
        first: dict[frozenset[tuple[str, int]], bytes] = {}
        try:
            for seg in pcaputil.segments(NDPI / "pcap" / pcap):
                key = frozenset({(seg.src, seg.sport), (seg.dst, seg.dport)})
                if seg.transport == "udp" and key in wanted:
                    first.setdefault(key, seg.payload)
        except struct.error:  # pcaputil stops at frames shorter than an Ethernet header
            unreadable.append(pcap)
            continue
        for key, ua in wanted.items():
            (msg,) = ssdp.parse_datagram(first[key])
            assert ua is None or msg.fields.get("user_agent") == ua, (pcap, key)
            checked += 1
    assert unreadable in ([], ["gnutella.pcap"]) and checked >= 10


SAMPLES = [NOTIFY, b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\n\r\n", b"HTTP/1.1 200 OK\r\nSERVER: x\r\n\r\n"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    s = draw(st.sampled_from(SAMPLES))
    i = draw(st.integers(0, len(s)))
    j = draw(st.integers(i, len(s)))
    return s[:i] + draw(st.binary(max_size=8)) + s[j:]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), mutated()))
def test_fuzz_only_malformed_escapes(payload: bytes) -> None:
    with contextlib.suppress(Malformed):
        for msg in ssdp.parse_datagram(payload):
            json.dumps(msg.fields)


def test_answers_from_ephemeral_ports_are_recognised_by_content(tmp_path: Path) -> None:
    """A device may answer an M-SEARCH from an ephemeral port: the flow is SSDP by its first datagram,
    in every batch; other datagrams between ephemeral ports are left alone."""
    from medsentry import pipeline
    from medsentry.capture import files, records
    from tests.decode.test_flows import pcap_records, udp

    answer = (b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: upnp:rootdevice\r\n"
              b"SERVER: Linux/4.14 UPnP/1.0 Axis M3106-L Mk II/10.12\r\nUSN: uuid:1::upnp:rootdevice\r\n\r\n")
    camera, searcher = ("10.0.0.40", 38616), ("10.0.0.5", 61328)
    frames = [udp(camera, searcher, answer), udp(("10.0.0.41", 40000), searcher, b"\x00\x01 not ssdp"),
              udp(camera, searcher, answer)]  # fmt: skip
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    pcap = tmp_path / "answers.pcap"
    pcap.write_bytes(header + pcap_records([(1_700_000_000 + i, f) for i, f in enumerate(frames)]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(records, "BATCH", 1)  # one packet a batch: the flow is found again in the next one
        assert [len(batch.recs) for batch in files.CaptureFile(pcap)] == [1, 1, 1]
        observations, _ = pipeline.observe_files([pcap])
    answers = [o for o in observations if o.kind == "ssdp.response"]
    assert [o.fields["server"] for o in answers] == ["Linux/4.14 UPnP/1.0 Axis M3106-L Mk II/10.12"] * 2
    apps = {o.src_ip: o.fields["app"] for o in observations if o.kind == "flow"}
    assert apps == {"10.0.0.40": "ssdp", "10.0.0.41": None}
