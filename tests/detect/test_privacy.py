"""PHI and credential findings are raised on real captures, and nothing sensitive reaches alerts or logs.

The sensitive values are read from the inputs themselves (the PID segment of nDPI's hl7.pcap, the
password suricata-verify's test.yaml expects) and searched for, as whole tokens, in everything detection
produced: the alerts' JSON document, their repr and the log records written meanwhile.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from medsentry.detect import Detector, to_json_doc
from medsentry.pipeline import analyze_files


def _detect(path: Path, caplog: pytest.LogCaptureFixture, out: Path) -> tuple[list, str]:
    caplog.set_level(logging.DEBUG)
    det = Detector()
    analyze_files([path], det.add)
    alerts = det.alerts()
    out.write_text(json.dumps(to_json_doc(alerts)) + "\n" + repr(alerts) + "\n" + caplog.text)
    return alerts, out.read_text()


def _present(value: str, text: str) -> bool:
    return re.search(r"(?<![0-9A-Za-z])" + re.escape(value) + r"(?![0-9A-Za-z])", text) is not None


def _pid_values(pcap: Path) -> set[str]:
    raw = pcap.read_bytes()
    values: set[str] = set()
    for m in re.finditer(rb"PID\|[^\r\n]*", raw):
        for part in re.split(r"[|^~&]", m.group().decode("latin-1")):
            part = part.strip()
            if sum(ch.isalpha() for ch in part) >= 4 or sum(ch.isdigit() for ch in part) >= 6:
                values.add(part)
    return values


def test_hl7_phi_raised_without_phi(
    shared_data: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    pcap = shared_data / "captures" / "ndpi" / "cfgs" / "default" / "pcap" / "hl7.pcap"
    if not pcap.exists():
        pytest.skip("nDPI hl7.pcap not present")
    secrets = _pid_values(pcap)
    assert len(secrets) >= 4, secrets  # the sample does carry names, birth date, address, phone
    alerts, text = _detect(pcap, caplog, tmp_path / "out.txt")
    phi = [a for a in alerts if a.rule == "phi.cleartext"]
    assert phi, [a.rule for a in alerts]
    assert any(f.startswith("PID-") for e in phi[0].evidence for f in e.get("phi_fields", []))
    leaked = sorted(v for v in secrets if _present(v, text))
    assert not leaked


def _mqtt_userpass(shared_data: Path) -> list[tuple[Path, str]]:
    root = shared_data / "captures" / "suricata-verify"
    out = []
    for test in sorted(root.glob("mqtt*userpass*/test.yaml")):
        doc = yaml.safe_load(test.read_text())
        passwords = {
            str(m["match"]["mqtt.connect.password"])
            for m in doc.get("checks", [])
            if isinstance(m, dict) and "mqtt.connect.password" in m.get("filter", {}).get("match", {})
            for m in [m["filter"]]
        }
        pcaps = sorted(test.parent.glob("*.pcap"))
        if passwords and pcaps:
            out.append((pcaps[0], passwords.pop()))
    return out


def test_mqtt_cleartext_credentials_raised_without_secret(
    shared_data: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    cases = _mqtt_userpass(shared_data)
    if not cases:
        pytest.skip("suricata-verify MQTT captures not present")
    assert len(cases) >= 5
    for pcap, password in cases:
        alerts, text = _detect(pcap, caplog, tmp_path / "out.txt")
        creds = [a for a in alerts if a.rule == "cred.cleartext"]
        assert creds, (pcap, [a.rule for a in alerts])
        assert "MQTT" in creds[0].explanation
        assert not _present(password, text), pcap
        # a capture of a few packets is too short to learn a baseline from: nothing "new" is claimed
        assert not [a for a in alerts if a.rule.startswith("baseline.")], pcap
