#!/usr/bin/env python3
"""How many DHCP client fingerprints does medsentry recover from the benchmark capture, against the ward
labels, and how many does NFStream (flows keyed by 5-tuple) keep?

    .venv/bin/python bench/dhcp_fingerprints.py [CAPTURE] [--wards 75] [--nfstream-python PY]

CAPTURE defaults to /work/bench-data/big.pcap (bench/make_bench_capture.sh): N re-addressed wards of
general-hospital-normal-60s.pcap plus general-hospital-60s.pcap (attacks, original addresses).
Ground truth: every device of the normal capture's labels with a DHCP profile appears once per ward k
with its MAC's fourth byte XORed with k+1 (/work/shared/testbed/ward_clone.py), and every DHCP device
of the attack capture's labels with its own MAC.  A fingerprint is the client's option 55 list (in
order), option 60 and option 12, exactly as labelled (a part the label leaves null is not compared:
the attacker's label names only its host name); a client counts as recovered when the
pipeline reports that fingerprint from a client message (DISCOVER/REQUEST/INFORM) for its MAC.

NFStream's DHCP flow (one per 5-tuple: every DISCOVER is 0.0.0.0:68 -> 255.255.255.255:67) reports the
option 55 list and host name of its first packet's client only; it is run with a BPF filter on the
DHCP ports and counted the same way (option 60 is not exported by NFStream, so it is not required).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from medsentry.observe import Observation
from medsentry.pipeline import analyze_files

VH = Path(__file__).resolve().parents[2] / "shared/data/captures/virtual-hospital"
NORMAL_LABELS = VH / "general-hospital-normal-60s.pcap.labels.jsonl"
ATTACK_LABELS = VH / "general-hospital-60s.pcap.labels.jsonl"
CLIENT_TYPES = {1, 3, 8}  # DISCOVER, REQUEST, INFORM
NFSTREAM_SNIPPET = """
import json, sys
from nfstream import NFStreamer
flows = NFStreamer(source=sys.argv[1], bpf_filter="udp and (port 67 or port 68)", statistical_analysis=False)
for f in flows:
    if f.src_port == 68:
        print(json.dumps([f.src_mac, f.client_fingerprint, f.requested_server_name]))
"""

Fingerprint = tuple[tuple[int, ...] | None, str | None, str | None]  # option 55, 60, 12


def ward_mac(mac: str, ward: int) -> str:
    b = bytes.fromhex(mac.replace(":", ""))
    return (b[:3] + bytes([b[3] ^ (ward + 1)]) + b[4:]).hex(":")


def dhcp_devices(labels: Path) -> dict[str, Fingerprint]:
    out = {}
    for line in labels.read_text().splitlines():
        d = json.loads(line)
        dhcp = d.get("dhcp") if d.get("type") == "device" else None
        if dhcp:
            prl = dhcp.get("param_request_list")
            fp = (tuple(prl) if prl else None, dhcp.get("vendor_class"), dhcp.get("hostname"))
            out[d["mac"].lower()] = fp
    return out


def matches(label: Fingerprint, seen: Fingerprint) -> bool:
    """A label leaves out what its profile does not fix (the attacker's DHCP client): only what it names
    must agree."""
    return all(want is None or want == got for want, got in zip(label, seen, strict=True))


def expected(wards: int) -> dict[str, Fingerprint]:
    truth = {ward_mac(mac, k): fp for k in range(wards) for mac, fp in dhcp_devices(NORMAL_LABELS).items()}
    truth.update(dhcp_devices(ATTACK_LABELS))
    return truth


def medsentry_fingerprints(capture: Path) -> dict[str, set[Fingerprint]]:
    seen: dict[str, set[Fingerprint]] = {}

    def emit(o: Observation) -> None:
        f = o.fields
        if o.protocol != "dhcp" or f.get("message_type") not in CLIENT_TYPES:
            return
        mac = f.get("client_mac") or o.src_mac
        prl = f.get("param_request_list")
        fp = (tuple(prl) if prl else None, f.get("vendor_class"), f.get("hostname"))
        seen.setdefault(mac, set()).add(fp)

    analyze_files([capture], emit)
    return seen


def nfstream_fingerprints(capture: Path, python: str) -> dict[str, set[tuple[str, str]]]:
    out = subprocess.run([python, "-c", NFSTREAM_SNIPPET, str(capture)], check=True, capture_output=True,
                         text=True).stdout
    seen: dict[str, set[tuple[str, str]]] = {}
    for line in out.splitlines():
        mac, prl, host = json.loads(line)
        seen.setdefault(mac, set()).add((prl or "", host or ""))
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("capture", nargs="?", type=Path, default=Path("/work/bench-data/big.pcap"))
    ap.add_argument("--wards", type=int, default=75, help="N_COPIES the capture was made with")
    ap.add_argument("--nfstream-python", default="/work/peers-venv/bin/python")
    args = ap.parse_args()
    truth = expected(args.wards)
    full = sum(1 for fp in truth.values() if fp[0])  # clients that send an option 55 list

    ours = medsentry_fingerprints(args.capture)
    got = sum(1 for mac, fp in truth.items() if any(matches(fp, g) for g in ours.get(mac, set())))
    unexpected = sorted(set(ours) - set(truth))
    print(f"medsentry: {got}/{len(truth)} labelled DHCP clients' fingerprints (options 55+60+12) recovered "
          f"exactly; {len(ours)} client MACs seen, {len(unexpected)} not in the labels")

    if Path(args.nfstream_python).exists():
        theirs = nfstream_fingerprints(args.capture, args.nfstream_python)
        kept = sum(
            1 for mac, (prl, _, host) in truth.items()
            if prl and (",".join(map(str, prl)), host or "") in theirs.get(mac, set())
        )
        print(f"NFStream: {kept}/{full} clients' option 55 + host name kept "
              f"({sum(len(v) for v in theirs.values())} DHCP client flows, {len(theirs)} client MACs)")
    else:
        print(f"NFStream: skipped ({args.nfstream_python} missing; bench/setup_peers.sh installs it)")
    return 0 if got == len(truth) else 1


if __name__ == "__main__":
    sys.exit(main())
