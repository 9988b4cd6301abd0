"""Attack detection against labelled captures.

Virtual hospital: every `type: attack` episode of `general-hospital-60s.pcap.labels.jsonl` is matched
with the alerts whose time span overlaps the episode (± SLACK_S) and that involve its attacker or a
victim: detected = such an alert exists; right technique = one of them has a rule that detects the labelled
technique (EXPECTED below, fixed from the rules' definitions, not from results) or, where the label gives
MITRE ids, that technique id; right attacker = that alert names the labelled attacker (MAC or IP).
The normal capture must give zero alerts first seen after its learning period (for a capture file:
min(learning.period_s, learning.fraction x capture length) = its first 30 s by default).

IoT-23 42-1: the labelled Zeek conn.log is fed through the detector; each alert is reported with the
labels of the flows between its attacker and its victims.

    .venv/bin/python scripts/eval_attacks.py [--data ../shared/data] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from medsentry.capture.zeek import read_zeek
from medsentry.detect import Alert, Detector, detect_files, load_config

SLACK_S = 5.0
EXPECTED = {
    "network_service_scan": {"recon.port_scan", "recon.host_sweep"},
    "dicom_aet_bruteforce": {"recon.dicom_aet_bruteforce", "recon.dicom_association_scan"},
    "arp_spoofing_mitm": {"spoof.arp"},
    "mqtt_wildcard_sub_and_spoof": {"abuse.mqtt_wildcard", "abuse.mqtt_topic_spoof"},
    "hl7_malformed_injection": {"abuse.hl7_injection"},
    "ftp_cleartext_default_login": {"cred.cleartext", "recon.login_bruteforce"},
    "fhir_web_probe": {"abuse.http_probe"},
    "hl7_phi_exfiltration": {"phi.external"},
}


def run_capture(path: Path, config_path: str | None = None) -> tuple[Detector, list[Alert]]:
    return detect_files([path], load_config(config_path))


def _ids(d: dict[str, Any] | None) -> set[str]:
    return {str(v).lower() for k, v in (d or {}).items() if k in ("mac", "ip") and v}


def score_episodes(alerts: list[Alert], labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for ep in (lab for lab in labels if lab.get("type") == "attack"):
        t0, t1 = float(ep["t_start"]) - SLACK_S, float(ep["t_end"]) + SLACK_S
        att = _ids(ep.get("attacker"))
        vic = set().union(*(_ids(v) for v in ep.get("victims") or [])) if ep.get("victims") else set()
        near = [
            a
            for a in alerts
            if a.first_seen <= t1
            and a.last_seen >= t0
            and (_ids(a.attacker) & att or any(_ids(v) & (att | vic) for v in a.victims))
        ]
        mitre = set(str(ep.get("mitre") or "").split("/")) - {""}
        tech = [
            a for a in near if a.rule in EXPECTED.get(ep["technique"], set()) or a.technique["id"] in mitre
        ]
        right = [a for a in tech if _ids(a.attacker) & att]
        rows.append(
            {
                "technique": ep["technique"],
                "t_start": ep["t_start"],
                "detected": bool(near),
                "right_technique": bool(tech),
                "right_attacker": bool(right),
                "rules": sorted({a.rule for a in tech}) or sorted({a.rule for a in near}),
                "attacker": (ep.get("attacker") or {}).get("ip"),
                "ok": bool(right),
            }
        )
    return rows


def iot23(data: Path) -> dict[str, Any]:
    log = data / "captures" / "iot23-42-1" / "bro" / "conn.log.labeled"
    labels: dict[tuple[str, str], Counter[str]] = {}
    for line in log.read_text("utf-8", "replace").splitlines():
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 6:
            continue
        tail = cols[-1].split()
        label = tail[-2] if len(tail) >= 2 else "?"
        labels.setdefault((cols[2], cols[4]), Counter())[label] += 1
    det = Detector(load_config())
    for obs in read_zeek(log):
        det.add(obs)
    alerts = det.alerts()
    malicious_pairs = {p for p, c in labels.items() if c.get("Malicious")}
    out = []
    for a in alerts:
        src = a.attacker.get("ip")
        c: Counter[str] = Counter()
        for v in a.victims:
            c.update(labels.get((str(src), str(v.get("ip"))), Counter()))
        out.append(
            {
                "rule": a.rule,
                "attacker": src,
                "victims": len(a.victims),
                "count": a.count,
                "flow_labels": dict(c),
            }
        )
    covered = {
        p
        for p in malicious_pairs
        if any(a.attacker.get("ip") == p[0] and any(v.get("ip") == p[1] for v in a.victims) for a in alerts)
    }
    return {
        "alerts": out,
        "malicious_pairs": len(malicious_pairs),
        "malicious_pairs_alerted": len(covered),
        "flows": sum(sum(c.values()) for c in labels.values()),
        "summary": det.summary(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    ap.add_argument("--config", help="a detect.yaml override file")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    data = Path(args.data)
    vh = data / "captures" / "virtual-hospital"
    result: dict[str, Any] = {}

    attack = vh / "general-hospital-60s.pcap"
    det, alerts = run_capture(attack, args.config)
    labels = [
        json.loads(x) for x in (vh / (attack.name + ".labels.jsonl")).read_text().splitlines() if x.strip()
    ]
    rows = score_episodes(alerts, labels)
    ok = sum(r["ok"] for r in rows)
    print(
        f"# {attack.name}: {len(alerts)} alerts, learning ends "
        f"{det.learning_end() - (det.first_ts or 0):.1f} s "
        "into the capture"
    )
    print("| episode | detected | right technique | right attacker | rules |")
    print("|---|---|---|---|---|")
    for r in rows:
        yn = {True: "yes", False: "NO"}
        print(
            f"| {r['technique']} | {yn[r['detected']]} | {yn[r['right_technique']]} | "
            f"{yn[r['right_attacker']]} | {', '.join(r['rules'])} |"
        )
    print(
        f"episodes detected with right technique and attacker: {ok}/{len(rows)} "
        f"({100 * ok / len(rows):.0f} %)"
    )
    attacker_ids = set().union(*(_ids(lab.get("attacker")) for lab in labels if lab.get("type") == "attack"))
    end = det.learning_end()
    others = [a for a in alerts if a.first_seen >= end and not _ids(a.attacker) & attacker_ids]
    names = ", ".join(sorted(f"{a.rule}@{a.attacker.get('ip')}" for a in others))
    print(f"alerts after learning not naming the labelled attacker: {len(others)} ({names})")
    result["attack"] = {
        "episodes": rows,
        "ok": ok,
        "total": len(rows),
        "alerts": len(alerts),
        "other_alerts_after_learning": [a.to_dict() for a in others],
    }

    normal = vh / "general-hospital-normal-60s.pcap"
    det_n, alerts_n = run_capture(normal, args.config)
    end_n = det_n.learning_end()
    after = [a for a in alerts_n if a.first_seen >= end_n]
    during = Counter(a.rule for a in alerts_n if a.first_seen < end_n)
    print(
        f"\n# {normal.name}: learning ends {end_n - (det_n.first_ts or 0):.1f} s in; alerts after learning: "
        f"{len(after)}; during learning (conditions present from the start): {dict(sorted(during.items()))}"
    )
    for a in after:
        print("  after learning:", a.rule, a.attacker, a.explanation)
    result["normal"] = {"after_learning": [a.to_dict() for a in after], "during_learning": dict(during)}

    iot = iot23(data)
    print(
        f"\n# IoT-23 42-1 (Zeek conn.log, {iot['flows']} flows): {len(iot['alerts'])} alerts; "
        "labelled-malicious "
        f"(orig, resp) pairs covered by an alert: {iot['malicious_pairs_alerted']}/{iot['malicious_pairs']}"
    )
    by_rule: dict[str, Counter[str]] = {}
    for a in iot["alerts"]:
        by_rule.setdefault(a["rule"], Counter()).update(a["flow_labels"])
    for rule, c in sorted(by_rule.items()):
        n = sum(1 for a in iot["alerts"] if a["rule"] == rule)
        print(f"  {rule}: {n} alert(s); flows between alerted endpoints by label: {dict(c)}")
    result["iot23"] = iot
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    return 0 if ok >= 0.95 * len(rows) and not after else 1


if __name__ == "__main__":
    sys.exit(main())
