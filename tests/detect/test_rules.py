"""One or more tests per detection rule, on synthetic observations (above and below each threshold)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsentry.observe import Observation
from tests.detect.helpers import (
    ATT_IP,
    ATT_MAC,
    BROKER_IP,
    BROKER_MAC,
    CT_IP,
    CT_MAC,
    PACS_IP,
    PACS_MAC,
    flow,
    learning,
    ob,
    rules,
    run,
)

ATT = (ATT_MAC, ATT_IP)
PACS = (PACS_MAC, PACS_IP)
CT = (CT_MAC, CT_IP)
BROKER = (BROKER_MAC, BROKER_IP)


# -- reconnaissance ---------------------------------------------------------------------------------------
def test_port_scan_over_threshold_names_scanner_and_host() -> None:
    _, alerts = run([flow(1.0 + i * 0.01, ATT, PACS, 1000 + i) for i in range(20)])
    scans = [a for a in alerts if a.rule == "recon.port_scan"]
    assert len(scans) == 1
    assert scans[0].attacker == {"mac": ATT_MAC, "ip": ATT_IP}
    assert [v["ip"] for v in scans[0].victims] == [PACS_IP]
    assert scans[0].technique["id"] == "T1046"


def test_few_failed_connections_are_not_a_scan() -> None:
    _, alerts = run([flow(1.0 + i, ATT, PACS, 1000 + i) for i in range(10)])
    assert "recon.port_scan" not in rules(alerts)


def test_established_flows_are_not_probes() -> None:
    obs = [flow(1.0 + i * 0.01, ATT, PACS, 1000 + i, state="closed", c2s=6, s2c=6) for i in range(40)]
    assert not [r for r in rules(run(obs)[1]) if r.startswith("recon.")]


def test_probes_spread_beyond_the_window_are_not_a_scan() -> None:
    _, alerts = run([flow(1.0 + i * 10, ATT, PACS, 1000 + i) for i in range(20)])  # one per 10 s, window 60
    assert "recon.port_scan" not in rules(alerts)


def test_host_sweep() -> None:
    obs = [flow(1.0 + i * 0.1, ATT, (None, f"10.0.1.{i}"), 0, transport="icmp", s2c=0) for i in range(15)]
    _, alerts = run(obs)
    sweep = [a for a in alerts if a.rule == "recon.host_sweep"]
    assert sweep and len(sweep[0].victims) >= 3


def test_udp_one_way_logging_is_not_a_sweep() -> None:
    obs = [flow(1.0 + i, ATT, (None, f"10.0.1.{i}"), 514, transport="udp", s2c=0) for i in range(20)]
    assert "recon.host_sweep" not in rules(run(obs)[1])


def _assoc(ts: float, sport: int, called: str, accept: bool) -> list:
    rq = ob("dicom.associate_rq", ts, sport=sport, dport=11112, calling_ae="SCANNER", called_ae=called)
    back = ob(
        "dicom.associate_ac" if accept else "dicom.associate_rj",
        ts + 0.001,
        src=PACS,
        dst=ATT,
        sport=11112,
        dport=sport,
        result=1,
        source=1,
        reason=7,
    )
    return [rq, back]


def test_dicom_ae_title_bruteforce() -> None:
    obs = [
        o
        for i, ae in enumerate(["ANY", "STORESCP", "ORTHANC", "PACS", "ARCHIVE", "SERVER"])
        for o in _assoc(1.0 + i * 0.01, 30000 + i, ae, False)
    ]
    alerts = run(obs)[1]
    brute = [a for a in alerts if a.rule == "recon.dicom_aet_bruteforce"]
    assert brute and brute[0].attacker["ip"] == ATT_IP and brute[0].victims[0]["ip"] == PACS_IP
    assert any(e.get("called_aes_tried", 0) >= 5 for e in brute[0].evidence)


def test_repeated_rejects_of_one_ae_are_an_association_scan_not_bruteforce() -> None:
    obs = [o for i in range(6) for o in _assoc(1.0 + i * 0.01, 30000 + i, "PACS01", False)]
    found = rules(run(obs)[1])
    assert "recon.dicom_association_scan" in found and "recon.dicom_aet_bruteforce" not in found


def test_four_rejects_are_below_threshold() -> None:
    obs = [o for i, ae in enumerate("ABCD") for o in _assoc(1.0 + i, 30000 + i, ae, False)]
    assert not [r for r in rules(run(obs)[1]) if r.startswith("recon.dicom")]


def test_hl7_probe_from_negative_acks() -> None:
    obs = [
        ob("hl7.ack", 1.0 + i, src=PACS, dst=ATT, sport=2575, dport=40000, ack_code="AR") for i in range(5)
    ]
    assert "recon.hl7_probe" in rules(run(obs)[1])
    ok = [ob("hl7.ack", 1.0 + i, src=PACS, dst=ATT, sport=2575, dport=40000, ack_code="AA") for i in range(9)]
    assert "recon.hl7_probe" not in rules(run(ok)[1])


def test_mqtt_probe_from_refusals() -> None:
    obs = [
        ob("mqtt.connack", 1.0 + i, src=BROKER, dst=ATT, sport=1883, dport=40000 + i, return_code=5)
        for i in range(5)
    ]
    assert "recon.mqtt_probe" in rules(run(obs)[1])


def test_login_bruteforce() -> None:
    obs = [
        ob("ftp.login", 1.0 + i, dport=21, user_present=True, password_present=True, success=False)
        for i in range(4)
    ]
    assert "recon.login_bruteforce" in rules(run(obs)[1])


# -- protocol abuse ---------------------------------------------------------------------------------------
def test_mqtt_broad_wildcard_but_not_a_narrow_one() -> None:
    sub = ob("mqtt.subscribe", 1.0, dst=BROKER, dport=1883, topics=["#"])
    assert "abuse.mqtt_wildcard" in rules(run([sub])[1])
    narrow = ob("mqtt.subscribe", 1.0, dst=BROKER, dport=1883, topics=["hospital/pumps/#", "a/+/vitals"])
    assert "abuse.mqtt_wildcard" not in rules(run([narrow])[1])


def test_mqtt_wildcard_by_infrastructure_client_is_allowed() -> None:
    sub = ob("mqtt.subscribe", 1.0, dst=BROKER, dport=1883, topics=["#"])
    assert not run([sub], {"trusted": {"mqtt_infrastructure": [ATT_IP]}})[1]


def test_mqtt_anonymous_connect() -> None:
    anon = ob("mqtt.connect", 1.0, dst=BROKER, dport=1883, client_id="x", username_present=False)
    assert rules(run([anon])[1]) == ["abuse.mqtt_anonymous"]
    auth = ob("mqtt.connect", 1.0, dst=BROKER, dport=1883, client_id="x", username_present=True)
    assert "abuse.mqtt_anonymous" not in rules(run([auth])[1])


def test_mqtt_publishing_on_another_devices_topic_after_learning() -> None:
    topic = "hospital/icu/BED12/vitals"
    owner = [ob("mqtt.publish", t, src=CT, dst=BROKER, sport=40001, dport=1883, topic=topic) for t in (1, 20)]
    relay = [ob("mqtt.publish", 21.0, src=BROKER, dst=ATT, sport=1883, dport=40002, topic=topic)]
    spoof = [ob("mqtt.publish", 70.0, dst=BROKER, sport=40002, dport=1883, topic=topic)]
    alerts = run(learning() + owner + relay + spoof)[1]
    spoofs = [a for a in alerts if a.rule == "abuse.mqtt_topic_spoof"]
    assert len(spoofs) == 1 and spoofs[0].attacker["ip"] == ATT_IP
    assert "BED12" not in spoofs[0].explanation  # topics are cut: they may name a bed or a patient
    assert not [a for a in run(learning() + owner + relay)[1] if a.rule == "abuse.mqtt_topic_spoof"]
    # the owner goes on publishing after the spoofer came: still only the spoofer is flagged
    later = [ob("mqtt.publish", t, src=CT, dst=BROKER, sport=40001, dport=1883, topic=topic)
             for t in (75, 80)]
    alerts = run(learning() + owner + relay + spoof + later)[1]
    assert [a.attacker["ip"] for a in alerts if a.rule == "abuse.mqtt_topic_spoof"] == [ATT_IP]


def _dicom_op(ts: float, src: tuple[str, str], ae: str, cmd: str, sport: int) -> list:
    return [
        ob("dicom.associate_rq", ts, src=src, sport=sport, dport=11112, calling_ae=ae, called_ae="PACS01"),
        ob("dicom.command", ts + 0.01, src=src, sport=sport, dport=11112, command=cmd),
    ]


def test_dicom_store_from_unknown_ae_after_learning() -> None:
    learned = _dicom_op(5.0, CT, "CT01", "C-STORE-RQ", 30001) + _dicom_op(
        80.0, CT, "CT01", "C-STORE-RQ", 30002
    )
    rogue = _dicom_op(70.0, ATT, "EVIL", "C-MOVE-RQ", 30003)
    alerts = run(learning() + learned + rogue)[1]
    unknown = [a for a in alerts if a.rule == "abuse.dicom_unknown_ae"]
    assert len(unknown) == 1 and unknown[0].attacker["ip"] == ATT_IP
    assert not [a for a in run(learning() + learned)[1] if a.rule == "abuse.dicom_unknown_ae"]


def test_dicom_trusted_ae_list_is_strict() -> None:
    obs = _dicom_op(1.0, CT, "CT01", "C-STORE-RQ", 30001) + _dicom_op(2.0, ATT, "EVIL", "C-GET-RQ", 30002)
    alerts = run(obs, {"trusted": {"dicom_aes": ["CT01"]}})[1]
    assert [a.attacker["ip"] for a in alerts if a.rule == "abuse.dicom_unknown_ae"] == [ATT_IP]


def test_hl7_injection_and_malformed() -> None:
    bad = ob(
        "hl7.message", 1.0, dport=2575, suspicious=["sql_injection"], malformed=False, message_type="ADT"
    )
    broken = ob("hl7.message", 2.0, dport=2575, suspicious=[], malformed=True, message_type="ADT")
    alerts = [a for a in run([bad, broken])[1] if a.rule == "abuse.hl7_injection"]
    assert len(alerts) == 1 and alerts[0].count == 2
    assert {"malformed", "sql_injection"} <= set(alerts[0].evidence[0]["reasons"])
    clean = ob("hl7.message", 1.0, dport=2575, suspicious=[], malformed=False, message_type="ORU")
    assert "abuse.hl7_injection" not in rules(run([clean])[1])


def test_hl7_unexpected_message_type_after_learning() -> None:
    def msg(t: float, mtype: str) -> object:
        return ob("hl7.message", t, src=CT, dport=2575, message_type=mtype, trigger_event="R01")

    alerts = run([*learning(), msg(1, "ORU"), msg(60, "ORU"), msg(70, "ADT")])[1]
    assert [a.evidence[0]["message_type"] for a in alerts if a.rule == "abuse.hl7_unexpected_message"] == [
        "ADT^R01"
    ]


def test_http_scanner_agent_traversal_and_4xx_burst() -> None:
    ua = ob("http.request", 1.0, dport=8080, user_agent="sqlmap/1.7.2#stable", path="/fhir/Patient")
    trav = ob("http.request", 1.0, dport=80, user_agent="curl/8", path="/../../etc/passwd")
    benign = ob("http.request", 1.0, dport=80, user_agent="Mozilla/5.0", path="/fhir/Observation")
    assert "abuse.http_probe" in rules(run([ua])[1])
    assert "abuse.http_probe" in rules(run([trav])[1])
    assert "abuse.http_probe" not in rules(run([benign])[1])
    nf = [
        ob("http.response", 1.0 + i * 0.1, src=PACS, dst=ATT, sport=80, dport=40000, status=404)
        for i in range(20)
    ]
    probe = [a for a in run(nf)[1] if a.rule == "abuse.http_probe"]
    assert probe and probe[0].attacker["ip"] == ATT_IP


# -- spoofing ---------------------------------------------------------------------------------------------
def _arp(ts: float, frame_src: str, sender: tuple[str, str], target: tuple[str, str]) -> object:
    return ob(
        "arp.reply",
        ts,
        src=(frame_src, None),
        dst=(target[0], None),
        sport=None,
        dport=None,
        transport=None,
        sender_mac=sender[0],
        sender_ip=sender[1],
        target_mac=target[0],
        target_ip=target[1],
        gratuitous=False,
    )


def test_arp_spoofing_blames_the_claimant_not_the_owner() -> None:
    obs = [
        _arp(1.0, PACS_MAC, PACS, CT),
        _arp(2.0, ATT_MAC, (ATT_MAC, ATT_IP), CT),  # the attacker's own address
        _arp(10.0, ATT_MAC, (ATT_MAC, PACS_IP), CT),  # poison: PACS_IP is at ATT_MAC
        _arp(11.0, PACS_MAC, PACS, CT),  # the real owner answers again
    ]
    alerts = [a for a in run(obs)[1] if a.rule == "spoof.arp"]
    assert len(alerts) == 1
    assert alerts[0].attacker == {"mac": ATT_MAC, "ip": ATT_IP}
    assert {v["ip"] for v in alerts[0].victims} == {PACS_IP, CT_IP}
    assert alerts[0].severity == "critical"


def test_arp_owner_silent_past_rebind_may_be_replaced() -> None:
    obs = [_arp(1.0, PACS_MAC, PACS, CT), _arp(5000.0, ATT_MAC, (ATT_MAC, PACS_IP), CT)]
    assert "spoof.arp" not in rules(run(obs)[1])


def _dhcp(kind: str, ts: float, server: str, mac: str) -> object:
    return ob(
        kind,
        ts,
        src=(mac, server),
        dst=("ff:ff:ff:ff:ff:ff", "255.255.255.255"),
        sport=67,
        dport=68,
        transport="udp",
        server_id=server,
        client_mac=CT_MAC,
        yiaddr=CT_IP,
    )


def test_rogue_dhcp_server_after_learning_and_strict_list() -> None:
    gw = ("f4:bd:9e:00:00:01", "10.0.0.1")
    good = [_dhcp("dhcp.offer", 2.0, gw[1], gw[0])]
    rogue = [_dhcp("dhcp.offer", 70.0, ATT_IP, ATT_MAC)]
    alerts = run(learning() + good + rogue)[1]
    assert [a.attacker["ip"] for a in alerts if a.rule == "baseline.new_dhcp_server"] == [ATT_IP]
    strict = run(good + rogue, {"trusted": {"dhcp_servers": [gw[1]]}})[1]
    assert [a.attacker["ip"] for a in strict if a.rule == "spoof.rogue_dhcp"] == [ATT_IP]


def test_identity_change_dhcp_fingerprint_and_dicom_ae() -> None:
    def req(ts: float, vendor: str) -> object:
        return ob(
            "dhcp.request",
            ts,
            src=(CT_MAC, "0.0.0.0"),
            sport=68,
            dport=67,
            transport="udp",
            client_mac=CT_MAC,
            vendor_class=vendor,
            param_request_list=[1, 3, 6],
        )

    alerts = run([req(1.0, "GEHC-CT"), req(2.0, "GEHC-CT"), req(3.0, "MSFT 5.0")])[1]
    assert rules(alerts) == ["spoof.identity_change"]
    ae = [
        ob("dicom.associate_rq", 1.0, src=CT, calling_ae="CT01", called_ae="PACS01"),
        ob("dicom.associate_rq", 2.0, src=ATT, calling_ae="CT01", called_ae="PACS01"),
    ]
    moved = [a for a in run(ae)[1] if a.rule == "spoof.identity_change"]
    assert moved and moved[0].attacker["ip"] == ATT_IP and moved[0].victims[0]["ip"] == CT_IP


# -- credentials and weak channels ------------------------------------------------------------------------
def test_cleartext_passwords_flagged_per_protocol() -> None:
    obs = [
        ob("ftp.login", 1.0, dport=21, user_present=True, password_present=True, success=True),
        ob("telnet.login", 1.0, dport=23, user_present=True, password_present=True),
        ob("http.request", 1.0, dport=80, basic_auth_present=True, path="/"),
        ob("mqtt.connect", 1.0, dst=BROKER, dport=1883, username_present=True, password_present=True),
    ]
    alerts = [a for a in run(obs)[1] if a.rule == "cred.cleartext"]
    assert len(alerts) == 4
    ftp = next(a for a in alerts if a.evidence[0]["kind"] == "ftp.login")
    assert ftp.severity == "high"  # the login worked
    none = ob("ftp.login", 1.0, dport=21, user_present=True, password_present=False)
    assert "cred.cleartext" not in rules(run([none])[1])


def test_ntlm_over_plain_http_is_a_credential_exposure() -> None:
    auth = ob("http.request", 1.0, src=CT, dst=PACS, sport=40000, dport=80, ntlm="authenticate",
              domain="HOSP", user_hash="ab12")  # fmt: skip
    (alert,) = run([auth])[1]
    assert alert.rule == "cred.cleartext" and alert.attacker["ip"] == CT_IP
    assert alert.evidence[0]["protocol"] == "HTTP NTLM authentication" and "HOSP" not in alert.explanation
    # the server's challenge, and a request without NTLM, expose nothing
    challenge = ob("http.request", 1.0, src=CT, dst=PACS, sport=40000, dport=80, ntlm="challenge")
    assert not run([challenge, ob("http.request", 2.0, src=CT, dst=PACS, sport=40001, dport=80)])[1]


def test_weak_tls_version_and_certificates() -> None:
    old = ob("tls.server_hello", 1.0, src=PACS, dst=CT, sport=443, dport=40000, version=0x0301)
    new = ob("tls.server_hello", 1.0, src=PACS, dst=CT, sport=443, dport=40000, version=0x0303)
    assert rules(run([old])[1]) == ["weak.tls_version"]
    assert not run([new])[1]

    def cert(sport: int, **fields: Any) -> Observation:
        return ob("tls.certificate", 100.0, src=PACS, dst=CT, sport=sport, dport=40000, **fields)

    selfsigned = cert(443, self_signed=True, not_before=0, not_after=10**10, sha256="ab")
    expired = cert(9999, self_signed=False, not_before=0, not_after=50, sha256="cd")
    alerts = run([selfsigned, expired])[1]
    assert {a.severity for a in alerts} == {"medium", "low"}  # 443 is a clinical port, 9999 is not
    assert any("expired" in e["problems"] for a in alerts for e in a.evidence)


def test_a_server_speaking_smb1_is_flagged_not_its_client() -> None:
    smb1 = ob("smb.negotiate", 1.0, src=PACS, dst=CT, sport=445, dport=40000, smb1=True, dialect="1")
    smb2 = ob("smb.negotiate", 1.0, src=PACS, dst=CT, sport=445, dport=40001, smb1=False, dialect="3.1.1")
    alerts = run([smb1, smb2])[1]
    assert rules(alerts) == ["weak.smb1"]
    assert alerts[0].attacker == {"mac": PACS_MAC, "ip": PACS_IP} and alerts[0].severity == "high"
    assert [v["ip"] for v in alerts[0].victims] == [CT_IP] and alerts[0].technique["id"] == "T1210"


def _judged(capture: Path) -> list[Any]:
    from medsentry.detect import Detector
    from medsentry.pipeline import observe_files

    out, _ = observe_files([capture])
    det = Detector()
    for o in out:
        det.add(o)
    return det.alerts()


def test_smb1_and_http_ntlm_in_real_captures(shared_data: Path) -> None:
    pcaps = shared_data / "captures/ndpi/cfgs/default/pcap"
    (smb1,) = [a for a in _judged(pcaps / "smbv1.pcap") if a.rule == "weak.smb1"]
    assert smb1.attacker["ip"] == "10.128.0.243" and "172.16.156.130" in smb1.explanation
    (ntlm,) = [a for a in _judged(pcaps / "webdav.pcap") if a.rule == "cred.cleartext"]
    assert ntlm.attacker["ip"] == "192.168.16.173" and ntlm.count > 1  # each AUTHENTICATE, one alert
    assert {e["protocol"] for e in ntlm.evidence} == {"HTTP NTLM authentication"}


# -- PHI --------------------------------------------------------------------------------------------------
def test_phi_cleartext_inside_and_exfiltration_outside() -> None:
    inside = ob(
        "hl7.message",
        1.0,
        src=CT,
        dst=PACS,
        sport=40000,
        dport=2575,
        phi_segments=["PID"],
        phi_fields_present=["PID-5"],
        patient_id_hash="h1",
        message_type="ORU",
    )
    out = ob(
        "hl7.message",
        2.0,
        dst=(None, "203.0.113.50"),
        sport=40001,
        dport=2575,
        phi_segments=["PID"],
        phi_fields_present=["PID-5", "PID-7"],
        patient_id_hash="h2",
        message_type="ADT",
    )
    alerts = run([inside, out])[1]
    ext = [a for a in alerts if a.rule == "phi.external"]
    assert len(ext) == 1 and ext[0].attacker["ip"] == ATT_IP and ext[0].severity == "critical"
    assert ext[0].evidence[0]["phi_fields"] == ["PID-5", "PID-7"]
    clear = [a for a in alerts if a.rule == "phi.cleartext"]
    assert {a.attacker["ip"] for a in clear} == {PACS_IP, "203.0.113.50"}  # the services


def test_phi_to_declared_ehr_endpoint_outside_is_not_exfiltration() -> None:
    out = ob(
        "dicom.command",
        2.0,
        dst=(None, "198.51.100.7"),
        dport=104,
        command="C-STORE-RQ",
        patient_attributes_present=["PatientName"],
    )
    alerts = run([out], {"trusted": {"ehr_endpoints": ["198.51.100.7"]}})[1]
    assert "phi.external" not in rules(alerts) and "phi.cleartext" in rules(alerts)


def test_fhir_patient_resource() -> None:
    req = ob("http.request", 1.0, dport=8080, path="/fhir/Patient/1", fhir_resource="Patient")
    obs_req = ob("http.request", 1.0, dport=8080, path="/fhir/Observation", fhir_resource="Observation")
    assert "phi.cleartext" in rules(run([req])[1])
    assert "phi.cleartext" not in rules(run([obs_req])[1])


# -- baseline ---------------------------------------------------------------------------------------------
def test_baseline_new_peer_service_outside_after_learning_only() -> None:
    learned = [flow(t, CT, PACS, 104, state="closed", c2s=8, s2c=8) for t in (1.0, 30.0, 60.0)]
    after = [
        flow(70.0, CT, BROKER, 1883, state="closed", c2s=8, s2c=8),
        flow(75.0, CT, (None, "198.51.100.9"), 443, state="closed", c2s=8, s2c=8),
    ]
    alerts = run(learning() + learned + after)[1]
    found = rules(alerts)
    assert found.count("baseline.new_peer") == 1 and "baseline.outside_destination" in found
    assert "baseline.new_service" in found
    assert not run(learning() + learned)[1]


def test_baseline_class_peers_make_it_normal() -> None:
    other = ("a0:f2:17:00:00:66", "10.0.0.102")
    obs = [
        *learning(),
        flow(1.0, other, PACS, 104, state="closed", c2s=8, s2c=8),
        flow(70.0, CT, PACS, 104, state="closed", c2s=8, s2c=8),
    ]
    assert "baseline.new_peer" in rules(run(obs)[1])
    classes = {CT_IP: "imaging_modality", other[1]: "imaging_modality"}
    assert not [r for r in rules(run(obs, classes=classes)[1]) if r.startswith("baseline.")]


def test_accept_as_normal_entry() -> None:
    obs = [*learning(), flow(70.0, CT, BROKER, 1883, state="closed", c2s=8, s2c=8)]
    det, alerts = run(obs, {"accept": [{"attacker": CT_IP, "victim": BROKER_IP}]})
    assert not alerts and det.stats["novelty_accepted"] >= 1


def test_volume_outlier() -> None:
    obs = [
        *learning(),
        *[flow(1.0 + 5 * i, CT, PACS, 104, state="closed", c2s=8, s2c=8, nbytes=10_000) for i in range(9)],
        flow(80.0, CT, PACS, 104, state="closed", c2s=800, s2c=8, nbytes=5_000_000),
    ]
    vol = [a for a in run(obs)[1] if a.rule == "baseline.volume"]
    assert len(vol) == 1 and vol[0].attacker["ip"] == CT_IP


def test_phi_alert_text_carries_the_latest_hit_and_bad_names_are_counted() -> None:
    def hl7(ts: float, fields: list[Any], patient: str) -> Observation:
        return ob("hl7.message", ts, src=CT, dst=PACS, sport=40000, dport=2575, phi_segments=["PID"],
                  phi_fields_present=fields, patient_id_hash=patient, message_type="ORU")

    det, alerts = run(
        [hl7(1.0, ["PID-5"], "h1"), hl7(2.0, ["PID-7", "PID-5"], "h2"), hl7(3.0, [5, "x"], "h3")]
    )
    clear = [a for a in alerts if a.rule == "phi.cleartext"]
    assert len(clear) == 1 and clear[0].count == 2
    # the wording is formatted when the alert is read, from the latest hit's names and patient count
    assert "(PID-5, PID-7; 2 patient(s) so far)" in clear[0].explanation
    assert clear[0].evidence[0]["phi_fields"] == ["PID-5", "PID-7"]
    assert det.stats["bad_observations"] == 1  # a name that is no string, as before
