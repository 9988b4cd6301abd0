"""The Identifier on synthetic observations: anchoring, routed addresses, randomised MACs, evidence,
caution on weak evidence, and the merge of what several protocols say about one device."""

from __future__ import annotations

import ipaddress
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from medsentry.identify.device import Device
from medsentry.identify.inventory import LOCAL_NETWORKS, MAX_CLAIMS, Identifier
from medsentry.observe import Observation

MONITOR = "00:09:fb:72:00:ff"  # Philips Patient Monitoring OUI
ROUTER = "f4:bd:9e:a4:2e:db"  # Cisco OUI
PRINTER = "f8:0d:ac:8b:56:b9"  # HP Inc. OUI
PHONE = "da:a1:19:00:00:01"  # locally administered (randomised)
PLAIN = "00:11:22:33:44:55"  # registered to a company that makes nothing medical


def obs(kind: str, src_mac: str | None, src_ip: str | None, ts: float = 1.0, **kw: Any) -> Observation:
    fields = kw.pop("fields", {})
    return Observation(ts, kw.pop("protocol", kind.split(".")[0]), kind, src_mac, src_ip, fields=fields, **kw)


def dhcp(mac: str, ts: float = 1.0, **fields: Any) -> Observation:
    return obs(
        "dhcp.request",
        mac,
        "0.0.0.0",
        ts,
        dst_mac="ff:ff:ff:ff:ff:ff",
        dst_ip="255.255.255.255",
        sport=68,
        dport=67,
        transport="udp",
        fields={"client_mac": mac, "ciaddr": "0.0.0.0", **fields},
    )


def arp(mac: str, ip: str, ts: float = 1.0) -> Observation:
    return obs("arp.reply", mac, None, ts, fields={"sender_mac": mac, "sender_ip": ip})


def flow(
    c_mac: str | None,
    c_ip: str,
    s_mac: str | None,
    s_ip: str,
    port: int,
    ts: float = 2.0,
    app: str | None = None,
    transport: str = "tcp",
    **extra: Any,
) -> Observation:
    fields = {
        "transport": transport,
        "app": app,
        "tcp_state": "closed" if transport == "tcp" else None,
        "client_ip": c_ip,
        "client_port": 40000,
        "server_ip": s_ip,
        "server_port": port,
        "packets_c2s": 3,
        "packets_s2c": 3,
        "first_seen": ts - 1,
        "last_seen": ts,
        **extra,
    }
    return Observation(ts, "flow", "flow", c_mac, c_ip, s_mac, s_ip, 40000, port, transport, fields)


def run(observations: list[Observation], **kw: Any) -> list[Device]:
    ident = Identifier(**kw)
    for o in observations:
        ident.add(o)
    return ident.devices()


def by_key(devices: list[Device]) -> dict[str, Device]:
    return {d.key: d for d in devices}


def monitor_observations() -> list[Observation]:
    ip = "10.0.0.11"
    return [
        dhcp(MONITOR, 1.0, hostname="ICU-BED12-MON", vendor_class="Philips IntelliVue MX450"),
        dhcp(MONITOR, 5.0, hostname="ICU-BED12-MON", vendor_class="Philips IntelliVue MX450"),
        obs(
            "ssdp.notify",
            MONITOR,
            ip,
            2.0,
            dst_mac="01:00:5e:7f:ff:fa",
            dst_ip="239.255.255.250",
            transport="udp",
            fields={
                "server": "VxWorks/6.9 UPnP/1.0 IntelliVue-MX450/L.01",
                "nt": "urn:schemas-upnp-org:device:PatientMonitor:1",
            },
        ),
        obs(
            "hl7.message",
            MONITOR,
            ip,
            3.0,
            dst_mac=PLAIN,
            dst_ip="10.0.0.2",
            sport=50000,
            dport=2575,
            transport="tcp",
            fields={
                "sending_application": "IVUE_MX450",
                "sending_facility": "ICU",
                "message_type": "ORU",
                "obx_coding_systems": ["MDC"],
                "suspicious": [],
                "malformed": False,
            },
        ),
        obs(
            "mqtt.connect",
            MONITOR,
            ip,
            3.5,
            dst_mac=PLAIN,
            dst_ip="10.0.0.2",
            dport=1883,
            transport="tcp",
            fields={"client_id": "mx450-bed12"},
        ),
        obs("ip.ttl", MONITOR, ip, 1.5, fields={"ttl": 64}),
        arp(MONITOR, ip, 1.2),
    ]


def test_one_record_per_mac_merging_protocols() -> None:
    devices = by_key(run(monitor_observations()))
    d = devices[MONITOR]
    assert d.ips == ["10.0.0.11"]  # the DHCP observation (no address yet) and the IP traffic are one device
    assert d.device_class == "patient_monitor" and d.confidence > 0.9
    assert (d.vendor, d.model, d.firmware) == ("Philips", "IntelliVue MX450", "L.01")
    assert d.hostname == "ICU-BED12-MON"
    assert d.os == "VxWorks 6.9"  # the SSDP OS token outweighs the TTL guess
    assert d.identities["hl7_application"] == ["IVUE_MX450"]
    assert d.identities["mqtt_client_id"] == ["mx450-bed12"]
    assert d.first_seen == 1.0 and d.last_seen == 5.0
    assert not d.mac_randomized


def test_evidence_for_every_attribute_deduplicated_with_count() -> None:
    d = by_key(run(monitor_observations()))[MONITOR]
    attributes = {e.attribute for e in d.evidence}
    for name in ("device_class", "vendor", "model", "firmware", "os", "hostname"):
        assert getattr(d, name) is not None
        assert name in attributes, name
    for key in d.identities:
        assert f"identity.{key}" in attributes
    assert all(0 < e.weight <= 1 and e.protocol and e.detail for e in d.evidence)
    # the two DHCP requests gave the same evidence: one entry, counted twice, with the first time
    vc = [e for e in d.evidence if e.attribute == "model" and e.protocol == "dhcp"]
    assert len(vc) == 1 and vc[0].count == 2 and vc[0].ts == 1.0
    assert any(e.attribute == "vendor" and e.protocol == "oui" for e in d.evidence)


def test_evidence_stays_bounded() -> None:
    many = [dhcp(MONITOR, float(i), vendor_class=f"Philips IntelliVue MX{i}") for i in range(500)]
    ident = Identifier()
    for o in many:
        ident.add(o)
    assert len(ident._endpoints) == 1
    assert all(len(e.claims) <= MAX_CLAIMS for e in ident._endpoints.values())
    d = ident.devices()[0]
    assert d.model == "IntelliVue MX0"  # the earliest values stay; later ones cannot push them out
    assert len(d.evidence) < 40
    # ... whatever order they come in
    import random

    shuffled = many[:]
    random.Random(7).shuffle(shuffled)
    again = Identifier()
    for o in shuffled:
        again.add(o)
    assert again.devices()[0].evidence == d.evidence


def _routed_observations() -> list[Observation]:
    return [
        arp(ROUTER, "10.0.0.1"),
        obs(
            "dhcp.offer",
            ROUTER,
            "10.0.0.1",
            dst_mac=MONITOR,
            dst_ip="10.0.0.11",
            transport="udp",
            fields={"server_id": "10.0.0.1"},
        ),
        arp(MONITOR, "10.0.0.11"),
        # answers from two Internet hosts reach the monitor through the router's MAC
        flow(MONITOR, "10.0.0.11", ROUTER, "203.0.113.5", 443, app="tls"),
        flow(MONITOR, "10.0.0.11", ROUTER, "198.51.100.7", 8883),
        obs(
            "http.response",
            ROUTER,
            "203.0.113.5",
            3.0,
            dst_mac=MONITOR,
            dst_ip="10.0.0.11",
            sport=443,
            transport="tcp",
            fields={"server": "Microsoft-IIS/10.0"},
        ),
    ]


def test_routed_addresses_are_devices_of_their_own() -> None:
    # a hospital whose address space includes the two public blocks (its other site, say)
    public = [ipaddress.ip_network("203.0.113.0/24"), ipaddress.ip_network("198.51.100.0/24")]
    devices = by_key(run(_routed_observations(), address_space=[*LOCAL_NETWORKS, *public]))
    router = devices[ROUTER]
    assert router.ips == ["10.0.0.1"]
    assert router.device_class == "network_infrastructure"
    assert any("forwards traffic of 2 off-link addresses" in e.detail for e in router.evidence)
    assert router.os is None  # the IIS banner is the remote server's, not the router's
    remote = devices["203.0.113.5"]
    assert remote.mac is None and remote.ips == ["203.0.113.5"]
    assert remote.vendor is None  # a router's OUI says nothing about what is behind it
    assert remote.os == "Windows"
    assert [(s.role, s.port, s.app) for s in remote.services] == [("offers", 443, "tls")]
    assert "198.51.100.7" in devices
    assert [s.port for s in devices[MONITOR].services if s.role == "uses"] == [443, 8883]


def test_hosts_outside_the_address_space_are_counted_not_inventoried() -> None:
    ident = Identifier()  # the private ranges: the two Internet hosts are remote
    for o in _routed_observations():
        ident.add(o)
    devices = by_key(ident.devices())
    assert set(devices) == {ROUTER, MONITOR} and ident.remote_hosts == 2
    assert devices[ROUTER].device_class == "network_infrastructure" and devices[ROUTER].os is None
    monitor = devices[MONITOR]  # what the local device talks to stays in its services
    assert [(s.role, s.port, s.peers) for s in monitor.services] == [("uses", 443, 1), ("uses", 8883, 1)]
    # a MAC is on the sensor's segment: kept whatever its address
    ident = Identifier(address_space=[])
    for o in [arp(MONITOR, "10.0.0.11"), *_routed_observations()[2:]]:
        ident.add(o)
    assert MONITOR in by_key(ident.devices()) and ident.remote_hosts == 2


def test_a_gateway_carrying_one_remote_host_is_not_given_its_address() -> None:
    # The TTL of the remote side's first packet says it came through a router (64 - 12 hops).
    observations = [
        flow(MONITOR, "10.0.0.11", ROUTER, "203.0.113.5", 443, app="tls", client_ttl=64, server_ttl=52),
        flow(MONITOR, "10.0.0.11", ROUTER, "10.9.0.20", 2575, client_ttl=64, server_ttl=63),
    ]
    ident = Identifier()
    for o in observations[:1]:
        ident.add(o)
    devices = by_key(ident.devices())
    assert set(devices) == {MONITOR, ROUTER} and ident.remote_hosts == 1
    assert devices[ROUTER].ips == [] and devices[ROUTER].vendor == "Cisco"
    # inside the address space the TTL is not trusted that far (an embedded stack may start at 60): a
    # MAC's only address stays its own
    ident = Identifier()
    ident.add(observations[1])
    assert by_key(ident.devices())[ROUTER].ips == ["10.9.0.20"]
    # without TTL evidence (or with a sender on the segment) the only address stays the MAC's own
    for ttl in (None, 64):
        ident = Identifier()
        ident.add(flow(MONITOR, "10.0.0.11", ROUTER, "203.0.113.5", 443, server_ttl=ttl))
        assert by_key(ident.devices())[ROUTER].ips == ["203.0.113.5"] and ident.remote_hosts == 0


def test_router_without_arp_still_splits_and_keeps_its_mac() -> None:
    observations = [flow(MONITOR, "10.0.0.11", ROUTER, f"10.7.0.{i}", 443) for i in range(1, 4)]
    devices = by_key(run(observations))
    assert {f"10.7.0.{i}" for i in range(1, 4)} <= set(devices)
    assert devices[ROUTER].ips == [] and devices[ROUTER].vendor == "Cisco"


def test_spoofed_arp_does_not_steal_an_address() -> None:
    attacker = PLAIN
    observations = [
        arp(MONITOR, "10.0.0.11", 1.0),
        arp(attacker, "10.0.0.50", 1.5),
        *[arp(attacker, "10.0.0.11", 2.0 + i) for i in range(10)],  # "10.0.0.11 is at <attacker>"
        obs("ip.ttl", attacker, "10.0.0.50", 3.0, fields={"ttl": 64}),
    ]
    devices = by_key(run(observations))
    assert devices[MONITOR].ips == ["10.0.0.11"]
    assert devices[attacker].ips == ["10.0.0.50"]


def test_randomised_mac_takes_vendor_only_from_other_evidence() -> None:
    ip = "10.0.0.77"
    bare = by_key(run([dhcp(PHONE, vendor_class="android-dhcp-13"), arp(PHONE, ip)]))[PHONE]
    assert bare.mac_randomized and bare.vendor is None
    assert bare.os == "Android"
    assert any(e.attribute == "mac_randomized" for e in bare.evidence)
    ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    apple = by_key(
        run(
            [
                arp(PHONE, ip),
                obs(
                    "http.request",
                    PHONE,
                    ip,
                    dst_mac=PLAIN,
                    dst_ip="10.0.0.2",
                    dport=80,
                    transport="tcp",
                    fields={"user_agent": ua},
                ),
            ]
        )
    )[PHONE]
    assert apple.mac_randomized and apple.vendor == "Apple"
    assert all(e.protocol != "oui" for e in apple.evidence if e.attribute == "vendor")


def test_weak_evidence_is_unknown() -> None:
    ip = "10.0.0.40"
    weak = [
        arp(PLAIN, ip),
        obs("ip.ttl", PLAIN, ip, fields={"ttl": 128}),
        obs(
            "mdns.service",
            PLAIN,
            ip,
            dst_mac="01:00:5e:00:00:fb",
            dst_ip="224.0.0.251",
            fields={"service": "_smb._tcp", "target_host": "box.local"},
        ),
    ]
    d = by_key(run(weak))[PLAIN]
    assert d.device_class == "unknown"  # one 0.4 hint (an SMB share) names no class
    assert d.confidence < 0.5
    assert d.os == "Windows" and d.hostname == "box"
    assert any(e.attribute == "device_class" and e.value == "general_it" for e in d.evidence)


def test_contradicting_strong_evidence_is_unknown() -> None:
    ip = "10.0.0.41"
    both = [
        arp(PLAIN, ip),
        obs(
            "mdns.service",
            PLAIN,
            ip,
            dst_mac="01:00:5e:00:00:fb",
            dst_ip="224.0.0.251",
            fields={"service": "_ipp._tcp"},
        ),  # printer, 0.8
        obs(
            "mdns.service",
            PLAIN,
            ip,
            dst_mac="01:00:5e:00:00:fb",
            dst_ip="224.0.0.251",
            fields={"service": "_axis-video._tcp"},
        ),  # camera, 0.85
    ]
    d = by_key(run(both))[PLAIN]
    assert d.device_class == "unknown"
    assert {e.value for e in d.evidence if e.attribute == "device_class"} == {"printer", "iot_camera"}


def test_services_offered_only_when_answered() -> None:
    scanner, server = PLAIN, PRINTER
    observations = [arp(scanner, "10.0.0.5"), arp(server, "10.0.0.9")]
    observations.append(flow(scanner, "10.0.0.5", server, "10.0.0.9", 9100))
    # a closed port: SYN answered by RST
    observations.append(
        flow(scanner, "10.0.0.5", server, "10.0.0.9", 23, tcp_state="reset", packets_c2s=1, packets_s2c=1)
    )
    # no answer at all
    observations.append(flow(scanner, "10.0.0.5", server, "10.0.0.9", 22, tcp_state="syn", packets_s2c=0))
    # open port, half-open scan: SYN, SYN-ACK, RST
    observations.append(
        flow(scanner, "10.0.0.5", server, "10.0.0.9", 631, tcp_state="reset", packets_c2s=2, packets_s2c=1)
    )
    devices = by_key(run(observations))
    offered = [(s.transport, s.port) for s in devices[server].services if s.role == "offers"]
    assert offered == [("tcp", 631), ("tcp", 9100)]
    assert devices[server].device_class == "printer"  # port 9100 + 631 (JetDirect, IPP)
    assert all(s.role == "uses" for s in devices[scanner].services)


def test_unanswered_receiver_is_no_device() -> None:
    observations = [flow(PLAIN, "10.0.0.5", ROUTER, "203.0.113.9", 22, tcp_state="syn", packets_s2c=0)]
    assert "203.0.113.9" not in by_key(run(observations))


def test_hostname_sources_and_dns_names() -> None:
    ip = "10.0.0.60"
    observations = [
        arp(PRINTER, ip),
        obs(
            "syslog.message",
            PRINTER,
            ip,
            2.0,
            dst_ip="10.0.0.1",
            transport="udp",
            fields={"hostname": "printer-syslog"},
        ),
        obs(
            "dns.response",
            ROUTER,
            "10.0.0.1",
            3.0,
            dst_mac=PLAIN,
            dst_ip="10.0.0.5",
            transport="udp",
            fields={
                "mdns": False,
                "answers": [
                    {"name": "60.0.0.10.in-addr.arpa", "type": "PTR", "data": "prn-2f.hospital.local"},
                    {"name": "print.hospital.local", "type": "A", "data": ip},
                ],
            },
        ),
    ]
    d = by_key(run(observations))[PRINTER]
    assert d.hostname == "printer-syslog"  # what the device calls itself beats what DNS calls it
    assert d.identities["dns_names"] == ["print.hospital.local"]
    assert {"hostname", "identity.dns_names"} <= {e.attribute for e in d.evidence}
    later = by_key(run([*observations, dhcp(PRINTER, 4.0, hostname="HP-LJ-2F")]))[PRINTER]
    assert later.hostname == "HP-LJ-2F"
    only_dns = by_key(run([arp(PRINTER, ip), observations[2]]))[PRINTER]
    assert only_dns.hostname == "prn-2f.hospital.local"


def test_reverse_names_give_the_address_they_map() -> None:
    from medsentry.identify.inventory import _ptr_address

    assert _ptr_address("60.0.0.10.in-addr.arpa.") == "10.0.0.60"
    v6 = "b.9.0.b.4.1.e.f.f.f.c.8.e.0.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa"
    assert _ptr_address(v6) == "fe80::20e:8cff:fe14:b09b"
    assert _ptr_address("x.0.0.10.in-addr.arpa") is None  # not an address
    assert _ptr_address("printer.local") is None and _ptr_address("1.2.in-addr.arpa") is None


def test_peer_rules_need_distinct_peers() -> None:
    pacs, ip = PLAIN, "10.0.0.10"

    def ac(peer: str) -> Observation:
        return obs(
            "dicom.associate_ac",
            pacs,
            ip,
            dst_ip=peer,
            sport=104,
            transport="tcp",
            fields={"called_ae": "PACS01", "calling_ae": "X"},
        )

    one = by_key(run([arp(pacs, ip), ac("10.0.0.20"), ac("10.0.0.20"), ac("10.0.0.20")]))[pacs]
    assert one.device_class == "unknown"
    four = by_key(run([arp(pacs, ip), *[ac(f"10.0.0.{20 + i}") for i in range(4)]]))[pacs]
    assert four.device_class == "pacs"
    assert four.identities["dicom_ae"] == ["PACS01"]


def test_dhcp_relay_facts_belong_to_the_client() -> None:
    relayed = obs(
        "dhcp.request",
        ROUTER,
        "10.0.5.1",
        dst_ip="10.0.0.1",
        transport="udp",
        fields={
            "client_mac": PRINTER,
            "ciaddr": "0.0.0.0",
            "giaddr": "10.0.5.1",
            "vendor_class": "Hewlett-Packard JetDirect",
            "hostname": "NPI8B56B9",
        },
    )
    devices = by_key(run([relayed]))
    assert devices[PRINTER].device_class == "printer" and devices[PRINTER].hostname == "NPI8B56B9"
    assert ROUTER not in devices or devices[ROUTER].device_class != "printer"


def test_learned_model_labels_and_fills_only_an_unknown_class(tmp_path: Path) -> None:
    learn = pytest.importorskip("medsentry.identify.learn")
    ip = "10.0.0.90"
    taught = [
        arp(PLAIN, ip),
        dhcp(
            PLAIN, hostname="acme-widget", vendor_class="acme-fw 2.1", param_request_list=[1, 3, 6, 15, 119]
        ),
        flow(PLAIN, ip, ROUTER, "203.0.113.20", 8883),
    ]
    model = learn.learn_profiles(
        {"acme-widget": [learn.profile_observations(taught, PLAIN)]}, {"acme-widget": "building_iot"}
    )
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model))
    assert by_key(run(taught))[PLAIN].device_class == "unknown"  # the rules know nothing of it
    d = by_key(run(taught, learned=path))[PLAIN]
    assert d.label == "acme-widget"
    assert d.device_class == "building_iot"  # the rules gave none: the learned type's class is used
    assert any(e.attribute == "label" and e.protocol == "learned" for e in d.evidence)
    assert any(e.attribute == "device_class" and e.protocol == "learned" for e in d.evidence)
    # a device unlike anything taught gets no label, and keeps the rules' class
    m = by_key(run(monitor_observations(), learned=path))[MONITOR]
    assert m.label is None and m.device_class == "patient_monitor"


def test_zeek_observations_without_macs_anchor_on_ip() -> None:
    seen = Observation(
        1.0,
        "zeek.known_services",
        "service.seen",
        None,
        "10.1.0.5",
        sport=443,
        transport="tcp",
        fields={"port": 443, "transport": "tcp", "service": ["SSL"]},
        source="zeek",
    )
    devices = by_key(run([seen, flow(None, "10.1.0.9", None, "10.1.0.5", 443, app="tls")]))
    server = devices["10.1.0.5"]
    assert server.mac is None and server.ips == ["10.1.0.5"]
    assert [(s.role, s.port, s.app, s.peers) for s in server.services] == [("offers", 443, "ssl", 1)]
    assert [(s.role, s.port) for s in devices["10.1.0.9"].services] == [("uses", 443)]


def test_malformed_fields_are_skipped_not_fatal() -> None:
    ident = Identifier()
    bad = [
        obs(
            "dhcp.request", MONITOR, "0.0.0.0", fields={"client_mac": 5, "hostname": 7, "vendor_class": None}
        ),
        obs("dns.response", ROUTER, "10.0.0.1", fields={"answers": "not a list"}),
        obs("ip.ttl", MONITOR, "not-an-ip", fields={"ttl": "abc"}),
        obs("arp.reply", "zz:zz", None, fields={"sender_mac": None, "sender_ip": 3}),
        flow(MONITOR, "10.0.0.11", ROUTER, "10.0.0.1", 53, server_port="x", packets_s2c=None),
        *monitor_observations(),
    ]
    for o in bad:
        ident.add(o)
    assert ident.observations == len(bad)
    devices = by_key(ident.devices())
    assert devices[MONITOR].device_class == "patient_monitor"  # the good observations still count


def test_lldp_med_inventory_and_neighbour_name() -> None:
    switch = "00:1b:54:00:00:01"
    lldp = obs("lldp", switch, None, dst_mac="01:80:c2:00:00:0e", fields={
        "system_name": "core-sw-2f", "capabilities_enabled": ["bridge", "router"],
        "manufacturer": "Acme Networks", "model": "AX-4800", "software_revision": "5.2.1",
    })  # fmt: skip
    d = by_key(run([lldp]))[switch]
    assert d.device_class == "network_infrastructure"
    assert (d.vendor, d.model, d.firmware, d.hostname) == ("Acme Networks", "AX-4800", "5.2.1", "core-sw-2f")


def test_endpoint_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from medsentry.identify import inventory

    monkeypatch.setattr(inventory, "MAX_ENDPOINTS", 10)
    ident = Identifier()
    for i in range(50):
        ident.add(flow(MONITOR, "10.0.0.11", ROUTER, f"203.0.113.{i}", 443))
    assert len(ident._endpoints) == 10 and ident.dropped > 0
    assert len(ident.devices()) <= 11  # the endpoints, and the record of the router they came through


def test_small_registry_blocks_name_their_owner() -> None:
    mas = "70:b3:d5:d9:f1:23"  # an MA-S (36-bit) block inside the IEEE RA's 70:B3:D5
    d = by_key(run([arp(mas, "10.0.0.70")]))[mas]
    assert d.vendor == '"Digital Solutions" JSC'
    (e,) = [e for e in d.evidence if e.attribute == "vendor"]
    assert e.protocol == "oui" and "MA-M/MA-S" in e.detail and e.weight == 0.7


def test_rule_results_remembered_per_dict_and_list_of_dict_values() -> None:
    """Rule hits are remembered per field values, DNS questions (dicts in a list) included: a repeated
    question counts again, a question with other values (or a non-scalar inside) is judged on its own."""
    ident = Identifier()
    host, other = "00:11:22:33:44:66", "00:11:22:33:44:77"

    def query(mac: str, ip: str, ts: float, name: str, extra: Any = "A") -> Observation:
        return obs("dns.query", mac, ip, ts, protocol="dns", dst_ip="10.0.0.53", dport=53, transport="udp",
                   fields={"queries": [{"name": name, "type": extra}]})

    for ts in (1.0, 2.0, 3.0):
        ident.add(query(host, "10.0.0.5", ts, "www.msftconnecttest.com"))
    ident.add(query(other, "10.0.0.6", 1.0, "printer.example.org"))
    ident.add(query(other, "10.0.0.6", 2.0, "www.msftncsi.com", extra=["A", "AAAA"]))  # not a plain value
    by_mac = {d.mac: d for d in ident.devices()}
    os_evidence = [e for e in by_mac[host].evidence if e.attribute == "os"]
    assert [(e.value, e.count) for e in os_evidence] == [("Windows", 3)]
    assert [(e.value, e.count) for e in by_mac[other].evidence if e.attribute == "os"] == [("Windows", 1)]


def test_fact_kinds_cover_every_kind_facts_reads() -> None:
    """`_add` calls `_facts` only for `_FACT_KINDS`: a kind `_facts` handles but the set lacks would be
    silently ignored."""
    import ast
    import re

    from medsentry.identify import inventory

    # From the source file: `inspect.getsource` does not read a module compiled by mypyc (setup.py).
    text = (Path(inventory.__file__).parent / "inventory.py").read_text()
    facts = next(
        node
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef) and node.name == "_facts"
    )
    source = ast.get_source_segment(text, facts) or ""
    named = set(re.findall(r'kind == "([^"]+)"', source))
    for group in re.findall(r"kind in \(([^)]*)\)", source):
        named |= set(re.findall(r'"([^"]+)"', group))
    assert len(named) > 15
    assert named <= inventory._FACT_KINDS
    assert "kind in _DHCP_CLIENT" in source and inventory._DHCP_CLIENT <= inventory._FACT_KINDS


@pytest.mark.parametrize("name", ["general-hospital-60s.pcap", "general-hospital-normal-60s.pcap"])
def test_inventory_does_not_depend_on_observation_order_or_split(shared_data: Path, name: str) -> None:
    """Shuffled and dealt to three identifiers that are then merged (what `--workers` does), a capture's
    observations give the very inventory of one identifier seeing them in order: evidence, its counts
    and first times, identities and their order included."""
    import random

    from medsentry.pipeline import observe_files
    from medsentry.report.serialize import device_to_dict

    cap = shared_data / "captures/virtual-hospital" / name
    if not cap.exists():
        pytest.skip("shared capture absent")
    obs, _ = observe_files([cap])
    one = Identifier()
    for o in obs:
        one.add(o)
    expected = [device_to_dict(d) for d in one.devices()]
    assert len(expected) > 10
    for seed in range(3):
        rnd = random.Random(seed)
        shuffled = obs[:]
        rnd.shuffle(shuffled)
        parts = [Identifier() for _ in range(3)]
        for o in shuffled:
            parts[rnd.randrange(3)].add(o)
        for p in parts[1:]:  # through pickle, as a worker's state reaches the parent
            parts[0].merge(pickle.loads(pickle.dumps(p.shard_state(), pickle.HIGHEST_PROTOCOL)))
        assert [device_to_dict(d) for d in parts[0].devices()] == expected, seed


@pytest.mark.parametrize("clients", [40, 255, 256, 3000])
def test_a_busy_servers_peers_are_counted_once_each_whatever_the_order(clients: int) -> None:
    """Up to MAX_PEERS distinct clients are counted exactly; beyond, estimated (a k-minimum-values sketch,
    ~6 % standard error) — not recounted with every flow of a client already past the bound, and the same
    for any order of the flows or split over shards."""
    import random

    from medsentry.identify.inventory import MAX_PEERS

    server = ("00:50:56:00:00:01", "10.1.0.1")
    flows = [
        flow(f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", f"10.2.{i // 256}.{i % 256}", *server, 53,
             transport="udp", app="dns", ts=2.0 + i)
        for i in range(clients)
        for _ in range(4)  # every client asks four times
    ]

    def peers(observations: list[Observation]) -> int:
        (s,) = [s for s in by_key(run(observations))[server[0]].services if s.role == "offers"]
        return s.peers

    counted = peers(flows)
    if clients <= MAX_PEERS:
        assert counted == clients
    else:
        assert abs(counted - clients) <= 0.2 * clients
    shuffled = flows[:]
    random.Random(1).shuffle(shuffled)
    assert peers(shuffled) == counted
    halves = Identifier(), Identifier()
    for i, o in enumerate(shuffled):
        halves[i % 2].add(o)
    halves[0].merge(halves[1].shard_state())
    (s,) = [s for s in by_key(halves[0].devices())[server[0]].services if s.role == "offers"]
    assert s.peers == counted


def test_bounded_identities_keep_the_earliest_values_whatever_the_order() -> None:
    """A workstation with more user agents than MAX_IDENTITY_VALUES keeps the earliest ones: a flood of
    later values pushes none out, and arrival order or a shard split does not change which are kept."""
    import random

    from medsentry.identify.inventory import MAX_IDENTITY_VALUES

    ws = ("00:11:22:33:44:66", "10.0.0.20")
    agents = [f"Agent/{i}.0" for i in range(3 * MAX_IDENTITY_VALUES)]
    requests = [
        obs("http.request", *ws, ts=10.0 + i + k / 10, dst_mac=ROUTER, dst_ip="10.0.0.1", sport=40000 + i,
            dport=80, transport="tcp", fields={"user_agent": ua, "host": "intranet"})
        for i, ua in enumerate(agents)
        for k in range(3)
    ]

    def kept(observations: list[Observation]) -> list[str]:
        return by_key(run(observations))[ws[0]].identities["http_user_agent"]

    in_order = kept(requests)
    assert in_order == agents[:MAX_IDENTITY_VALUES]
    for seed in range(3):
        shuffled = requests[:]
        random.Random(seed).shuffle(shuffled)
        assert kept(shuffled) == in_order
        parts = Identifier(), Identifier()
        for i, o in enumerate(shuffled):
            parts[i % 2].add(o)
        parts[0].merge(parts[1].shard_state())
        assert by_key(parts[0].devices())[ws[0]].identities["http_user_agent"] == in_order


def test_bounded_services_keep_the_earliest_whatever_the_order() -> None:
    import random

    from medsentry.identify.inventory import MAX_SERVICES

    client = (PLAIN, "10.0.0.5")
    flows = [flow(*client, PRINTER, "10.0.0.9", 1000 + i, ts=5.0 + i) for i in range(MAX_SERVICES + 40)]

    def used(observations: list[Observation]) -> list[int]:
        return [s.port for s in by_key(run(observations))[PLAIN].services if s.role == "uses"]

    in_order = used(flows)
    assert in_order == [1000 + i for i in range(MAX_SERVICES)]
    shuffled = flows[:]
    random.Random(3).shuffle(shuffled)
    assert used(shuffled) == in_order


def test_rule_conditions_on_boolean_fields() -> None:
    """`when: {flag: [false]}` in YAML compares as the rule engine reads the field: booleans as
    "true"/"false" (it used to compare "False" with "false" and never fire)."""
    from medsentry.identify.rules import Rule

    when = {"unix": [False], "server": [True, None]}
    rule = Rule.from_dict({"id": "t", "kind": "x.y", "field": "version", "in": ["6.1"], "when": when,
                           "set": {"os": "Windows 7"}})  # fmt: skip

    def fires(**fields: Any) -> bool:
        return rule.apply(obs("x.y", PLAIN, "10.0.0.1", fields={"version": "6.1", **fields})) is not None

    assert fires(unix=False, server=True) and fires(unix=False)
    assert not fires(unix=True, server=True) and not fires(server=True)
    assert not fires(unix=False, server=False)
