"""NTLMSSP (MS-NLMP): CHALLENGE and AUTHENTICATE messages built by hand and the real ones of nDPI's
webdav.pcap (HTTP NTLM authentication, Wireshark as the oracle); secrets never leave the parser."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medsentry.protocols import http, ntlmssp
from medsentry.protocols.base import Malformed

NDPI = Path(__file__).resolve().parents[2].parent / "shared/data/captures/ndpi/cfgs/default"
WEBDAV = NDPI / "pcap/webdav.pcap"


def challenge(names: dict[int, str], version: bytes | None = b"\x0a\x00\x4c\x4f\x00\x00\x00\x0f") -> bytes:
    info = b"".join(struct.pack("<HH", k, len(v.encode("utf-16-le"))) + v.encode("utf-16-le")
                    for k, v in names.items()) + b"\x00\x00\x00\x00"  # fmt: skip
    flags = 0x00000001 | (0x02000000 if version else 0)
    body_at = 56
    head = ntlmssp.SIGNATURE + struct.pack("<IHHII", 2, 0, 0, body_at, flags)
    head += bytes(16) + struct.pack("<HHI", len(info), len(info), body_at) + (version or bytes(8))
    return head + info


def authenticate(user: str, workstation: str, domain: str, version: bool) -> bytes:
    at = 72 + 16 if version else 64
    parts, payload = [], b""
    for value in (b"\x01" * 24, b"\x02" * 24, domain.encode("utf-16-le"), user.encode("utf-16-le"),
                  workstation.encode("utf-16-le"), b""):  # fmt: skip
        parts.append(struct.pack("<HHI", len(value), len(value), at + len(payload)))
        payload += value
    flags = 0x00000001 | (0x02000000 if version else 0)
    msg = ntlmssp.SIGNATURE + struct.pack("<I", 3) + b"".join(parts) + struct.pack("<I", flags)
    if version:
        msg += b"\x06\x01\xb1\x1d\x00\x00\x00\x0f" + bytes(16)  # 6.1 build 7601, and a MIC
    return msg + payload


def test_challenge_names_the_server_and_its_build() -> None:
    fields = ntlmssp.parse(challenge({1: "PACS-01", 2: "RADIOLOGY", 3: "pacs-01.rad.local", 4: "rad.local"}))
    assert fields == {"ntlm": "challenge", "netbios_computer": "PACS-01", "netbios_domain": "RADIOLOGY",
                      "dns_computer": "pacs-01.rad.local", "dns_domain": "rad.local", "os_version": "10.0",
                      "os_build": 20300}  # fmt: skip
    assert "os_build" not in ntlmssp.parse(challenge({1: "X"}, version=None))  # type: ignore[operator]


def test_authenticate_names_the_client_never_its_user_or_responses() -> None:
    msg = authenticate("dr.house", "ICU-WS-07", "HOSPITAL", version=True)
    fields = ntlmssp.parse(msg)
    assert fields is not None
    assert (fields["workstation"], fields["domain"], fields["os_version"], fields["os_build"]) == (
        "ICU-WS-07", "HOSPITAL", "6.1", 7601)
    assert "dr.house" not in repr(fields) and fields["user_hash"]
    # the flag set but the field left out: the payload starts where the Version would be
    unversioned = authenticate("dr.house", "ICU-WS-07", "HOSPITAL", version=False)
    flagged = unversioned[:60] + struct.pack("<I", 0x02000001) + unversioned[64:]
    assert "os_build" not in (ntlmssp.parse(flagged) or {})


@pytest.mark.parametrize("blob", [b"", b"NTLMSSP\x00", ntlmssp.SIGNATURE + struct.pack("<I", 9) + bytes(60),
                                  challenge({1: "X"})[:40], b"NTLMSSP\x00\x02\x00\x00\x00" + bytes(28)
                                  + struct.pack("<HHI", 400, 400, 56)])  # fmt: skip
def test_malformed(blob: bytes) -> None:
    with pytest.raises(Malformed):
        ntlmssp.parse(blob)


def test_negotiate_says_nothing_and_http_headers_carry_the_messages() -> None:
    assert ntlmssp.parse(ntlmssp.SIGNATURE + struct.pack("<I", 1) + bytes(24)) is None
    token = base64.b64encode(challenge({1: "PACS-01"})).decode()
    assert http.ntlm_fields(f"NTLM {token}")["netbios_computer"] == "PACS-01"
    assert http.ntlm_fields("NTLM !!!not base64") == {} and http.ntlm_fields("Basic Zm9vOmJhcg==") == {}


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200), kind=st.sampled_from([1, 2, 3, 4]))
def test_fuzz_returns_or_raises_malformed(data: bytes, kind: int) -> None:
    with contextlib.suppress(Malformed):
        ntlmssp.parse(ntlmssp.SIGNATURE + struct.pack("<I", kind) + data)


def test_webdav_handshakes_read_as_wireshark_reads_them(shared_data: Path) -> None:
    from medsentry.analysis import run_inputs
    from medsentry.pipeline import observe_files

    if not WEBDAV.is_file() or shutil.which("tshark") is None:
        pytest.skip("needs nDPI's webdav.pcap and tshark")
    fields = ["-e", "ntlmssp.challenge.target_info.nb_computer_name", "-e", "ntlmssp.version.build_number",
              "-e", "ntlmssp.auth.hostname", "-e", "ntlmssp.auth.domain"]  # fmt: skip
    args = ["tshark", "-r", str(WEBDAV), "-Y", "ntlmssp.messagetype != 1", "-T", "fields", *fields]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    theirs = sorted({tuple(line.split("\t")) for line in out.splitlines()})
    observations, _ = observe_files([WEBDAV])
    ours = sorted({(f.get("netbios_computer", ""), str(f.get("os_build", "")), f.get("workstation", ""),
                    f.get("domain", "")) for o in observations if (f := o.fields).get("ntlm")})  # fmt: skip
    assert len(ours) == 2 and ours == theirs
    # The server is 20 routers away on a public address: a remote host unless the address space has it.
    assert "DLP-TEST-R5" not in {d.hostname for d in run_inputs([WEBDAV]).devices}
    everything = [ipaddress.ip_network("0.0.0.0/0")]
    named = {d.hostname: d.os for d in run_inputs([WEBDAV], address_space=everything).devices if d.hostname}
    assert named["DLP-TEST-R5"] == "Windows Server 2022"  # build 20348
