"""Alert pipeline mechanics (dedup, rate limit, stable ids, JSON contract, config) and bounded state under
synthetic floods."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from medsentry.detect import ConfigError, Detector, accept_entry, load_config, to_json_doc
from medsentry.observe import Observation
from tests.detect.helpers import ATT_IP, BROKER_IP, BROKER_MAC, PACS_IP, PACS_MAC, flow, ob, rules, run

PACS = (PACS_MAC, PACS_IP)


def _anon(ts: float) -> Observation:
    return ob("mqtt.connect", ts, dst=(BROKER_MAC, BROKER_IP), dport=1883, username_present=False)


def test_repeats_within_dedup_window_update_one_alert() -> None:
    alerts = run([_anon(1.0), _anon(50.0), _anon(3000.0)])[1]
    assert len(alerts) == 1
    assert alerts[0].count == 3 and alerts[0].first_seen == 1.0 and alerts[0].last_seen == 3000.0
    assert alerts[0].evidence[0]["count"] == 3


def test_repeat_after_dedup_window_is_a_new_alert() -> None:
    alerts = run([_anon(1.0), _anon(1.0 + 3600 + 5)])[1]
    assert len(alerts) == 2 and alerts[0].id != alerts[1].id


def test_rate_limit_per_rule_per_minute() -> None:
    obs = [
        ob(
            "mqtt.connect",
            1.0 + i * 0.01,
            src=(f"de:ad:00:00:00:{i:02x}", f"10.9.0.{i}"),
            dst=(BROKER_MAC, BROKER_IP),
            dport=1883,
            username_present=False,
        )
        for i in range(40)
    ]
    det, alerts = run(obs, {"alerts": {"rate_per_rule_per_min": 10}})
    assert len(alerts) == 10 and det.stats["rate_limited"] == 30


def test_ids_are_deterministic_and_json_contract_holds(tmp_path: Path) -> None:
    obs = [flow(1.0 + i * 0.01, ("de:ad:be:ef:00:01", ATT_IP), PACS, 1000 + i) for i in range(20)]
    a1, a2 = run(obs)[1], run(list(reversed(obs)))[1]
    assert sorted(a.id for a in a1) == sorted(a.id for a in a2) and a1
    doc = json.loads(json.dumps(to_json_doc(a1)))
    alert = doc["alerts"][0]
    assert set(alert) >= {
        "id",
        "rule",
        "technique",
        "severity",
        "attacker",
        "victims",
        "first_seen",
        "last_seen",
        "evidence",
        "explanation",
    }
    assert set(alert["attacker"]) == {"mac", "ip"} and isinstance(alert["first_seen"], float)
    assert alert["technique"]["id"].startswith("T") and alert["explanation"]


def test_user_config_overrides_and_errors(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("address_space: [172.20.0.0/16]\nrecon: {port_scan_ports: 5}\n")
    cfg = load_config(site)
    assert cfg.is_local("172.20.1.1") and not cfg.is_local("10.0.0.1")
    assert cfg.get("recon", "port_scan_total") == 25  # untouched keys keep their default
    bad = tmp_path / "bad.yaml"
    bad.write_text("address_space: [not-a-net]\n")
    with pytest.raises(ConfigError):
        load_config(bad)
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.yaml")


def test_disabled_rules_and_severity_override() -> None:
    assert not run([_anon(1.0)], {"disabled": ["abuse."]})[1]
    assert run([_anon(1.0)], {"severity": {"abuse.mqtt_anonymous": "high"}})[1][0].severity == "high"


def test_accept_entry_round_trip() -> None:
    alert = run([_anon(1.0)])[1][0]
    entry = accept_entry(alert.to_dict())
    assert entry == {"rule": "abuse.mqtt_anonymous", "attacker": ATT_IP, "victim": BROKER_IP}
    assert not run([_anon(1.0)], {"accept": [entry]})[1]


def test_bad_field_shapes_are_counted_not_fatal() -> None:
    obs = [
        ob("mqtt.subscribe", 1.0, dst=(BROKER_MAC, BROKER_IP), dport=1883, topics=5),
        ob("flow", 1.0, client_ip=ATT_IP, server_ip=PACS_IP, transport="tcp", packets_c2s="x"),
        ob("tls.server_hello", 1.0, version="TLS1.0"),
        ob("arp.reply", 1.0, sender_ip=None, sender_mac=None),
    ]
    det, alerts = run(obs)
    assert det.stats["bad_observations"] >= 2 and not alerts


# -- floods -----------------------------------------------------------------------------------------------
SMALL = {
    "limits": {
        "sources": 100,
        "targets_per_source": 50,
        "bindings": 100,
        "connections": 100,
        "novelty_keys": 500,
        "topics": 100,
        "devices": 100,
    },
    "alerts": {"max_alerts": 50, "rate_per_rule_per_min": 1000},
}


def _sizes(det: Detector) -> dict[str, int]:
    fams = {type(f).__name__: f for f in det.families}
    recon, spoof, proto, base = fams["Recon"], fams["Spoofing"], fams["ProtocolAbuse"], fams["Baseline"]
    return {
        "sources": len(recon.sources),
        "widest": max((len(s.probes) for s in recon.sources.values()), default=0),
        "owners": len(spoof.owners),
        "fingerprints": len(spoof.dhcp_fp),
        "topics": len(proto.publishers),
        "novel": len(proto.novel.keys),
        "baseline": len(base.novel.keys),
        "volume": len(base.volume),
        "alerts": len(det.store.open),
    }


def test_state_is_capped_under_a_crafted_flood() -> None:
    rnd = random.Random(7)
    det = Detector(load_config(overrides=SMALL))
    for i in range(30000):
        src = f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        mac = "02:00:{:02x}:{:02x}:{:02x}:{:02x}".format(*tuple(rnd.randrange(256) for _ in range(4)))
        ts = i * 0.001
        det.add(
            flow(
                ts,
                (mac, src),
                (None, f"10.1.{rnd.randrange(256)}.{rnd.randrange(256)}"),
                rnd.randrange(1, 65535),
            )
        )
        det.add(
            ob(
                "arp.reply",
                ts,
                src=(mac, None),
                dst=(None, None),
                sport=None,
                dport=None,
                transport=None,
                sender_mac=mac,
                sender_ip=src,
                target_mac=mac,
                target_ip=src,
                gratuitous=True,
            )
        )
        det.add(
            ob(
                "dhcp.request",
                ts,
                src=(mac, "0.0.0.0"),
                client_mac=mac,
                vendor_class=str(i),
                param_request_list=[1],
            )
        )
        det.add(
            ob("mqtt.publish", ts, src=(mac, src), dst=(BROKER_MAC, BROKER_IP), dport=1883, topic=f"t/{i}")
        )
        det.add(
            ob(
                "mqtt.connect",
                ts,
                src=(mac, src),
                dst=(BROKER_MAC, BROKER_IP),
                dport=1883,
                username_present=False,
            )
        )
    # one source sweeping many ports: its own window is capped too
    for p in range(5000):
        det.add(flow(40.0 + p * 0.0001, ("de:ad:be:ef:00:01", ATT_IP), PACS, p))
    sizes = _sizes(det)
    assert sizes["sources"] <= 100 and sizes["widest"] <= 50
    assert sizes["owners"] <= 100 and sizes["fingerprints"] <= 100 and sizes["topics"] <= 100
    assert sizes["novel"] <= 500 and sizes["baseline"] <= 500 and sizes["volume"] <= 100
    assert sizes["alerts"] <= 50
    ev = det.summary()["evictions"]
    for table in (
        "recon.sources",
        "recon.probes",
        "arp.owners",
        "dhcp.fingerprints",
        "mqtt.topics",
        "baseline.keys",
        "alerts",
    ):
        assert ev.get(table, 0) > 0, table
    alerts = det.alerts()
    assert len(alerts) <= 50 + 500  # open alerts plus at most one per novelty key
    assert "recon.port_scan" in rules(alerts)  # still detected while the tables churn


def test_malformed_dicom_and_hl7_flood_stays_bounded() -> None:
    det = Detector(load_config(overrides=SMALL))
    for i in range(20000):
        det.add(
            ob(
                "dicom.associate_rq",
                i * 0.01,
                sport=i % 65536,
                dport=11112,
                calling_ae=f"AE{i}",
                called_ae=f"X{i}",
            )
        )
        det.add(ob("hl7.message", i * 0.01, dport=2575, message_type=f"Z{i}", malformed=True, suspicious=[]))
    fams = {type(f).__name__: f for f in det.families}
    assert len(fams["Recon"].conns) <= 100 and len(fams["ProtocolAbuse"].conns) <= 100
    assert len(fams["Spoofing"].ae_home) <= 100 and len(fams["ProtocolAbuse"].novel.keys) <= 500
    assert det.summary()["evictions"]["dicom.ae_home"] > 0


def test_closed_alerts_are_capped_too() -> None:
    # the same condition every two hours: each repeat is a new alert, the superseded ones are bounded
    det, alerts = run([_anon(1.0 + i * 7200) for i in range(200)], SMALL)
    assert len(alerts) <= 2 * 50 and det.summary()["evictions"]["alerts.closed"] > 0


def test_live_learning_period_is_absolute() -> None:
    det = Detector(load_config(overrides={"learning": {"period_s": 20}}), live=True)
    det.add(_anon(0.0))
    det.add(_anon(1000.0))
    assert det.learning_end() == 20.0
    files = Detector(load_config(overrides={"learning": {"period_s": 20}}))
    files.add(_anon(0.0))
    files.add(_anon(30.0))
    assert files.learning_end() == 15.0  # half of a 30 s capture is shorter than period_s


def test_explanation_given_as_a_function_is_formatted_once_when_read() -> None:
    det = Detector()
    calls: list[int] = []

    def text(i: int) -> str:
        calls.append(i)
        return f"hit {i}"

    att = {"mac": "aa:bb:cc:00:00:01", "ip": "10.0.0.1"}
    for i in range(5):
        det.hit("cred.cleartext", 1.0 + i, att, [], lambda i=i: text(i))  # type: ignore[misc]
    det.hit("cred.cleartext", 9.0, {"mac": None, "ip": "10.0.0.2"}, [], "plain")
    assert calls == []
    alerts = {a.attacker["ip"]: a for a in det.alerts()}
    assert alerts["10.0.0.1"].explanation == "hit 4" and alerts["10.0.0.1"].count == 5
    assert alerts["10.0.0.2"].explanation == "plain"
    assert calls == [4]
    det.hit("cred.cleartext", 10.0, att, [], "plain again")  # a string after a function replaces it
    assert {a.explanation for a in det.alerts()} == {"plain again", "plain"} and calls == [4]
