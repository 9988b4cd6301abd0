"""Reconnaissance: TCP/UDP/ICMP port scans and host sweeps (from flows), DICOM association scans and
AE-title brute force (A-ASSOCIATE-RJ bursts), HL7 and MQTT probing, login guessing.

A probe flow is a connection attempt that exchanged nothing: a TCP flow left at SYN or reset with at most
`recon.probe_max_packets` client packets, a unicast UDP flow or ICMP exchange that got no answer. Per
client, the distinct (host, port) probes of the last `recon.window_s` decide: many ports on one host is a
port scan, many hosts a sweep.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from medsentry.detect.engine import by_sender, endpoint
from medsentry.detect.state import Lru, Window
from medsentry.observe import Observation

if TYPE_CHECKING:
    from medsentry.detect.engine import Detector

_NAK: Final = {"AE", "AR", "CE", "CR"}


class _Source:
    __slots__ = (
        "called",
        "dicom_servers",
        "hl7_naks",
        "hosts",
        "login_failures",
        "mac",
        "mqtt_refused",
        "probes",
        "rejects",
    )

    def __init__(self, window: float, cap: int, ev: Counter[str]) -> None:
        self.mac: str | None = None
        self.probes = Window(window, cap, ev, "recon.probes")
        self.hosts: Counter[str] = Counter()  # host -> probes in the window (kept in step with `probes`)
        self.rejects = Window(window, cap, ev, "recon.dicom_rejects")
        self.called = Window(window, cap, ev, "recon.dicom_called")
        self.dicom_servers = Window(window, cap, ev, "recon.dicom_servers")
        self.hl7_naks = Window(window, cap, ev, "recon.hl7_naks")
        self.mqtt_refused = Window(window, cap, ev, "recon.mqtt_refused")
        self.login_failures = Window(window, cap, ev, "recon.login_failures")


class Recon:
    KINDS: tuple[str, ...] = (
        "flow",
        "dicom.associate_rq",
        "dicom.associate_rj",
        "hl7.ack",
        "hl7.message",
        "mqtt.connack",
        "ftp.login",
        "telnet.login",
    )

    def __init__(self, det: Detector) -> None:
        self.det = det
        c = det.cfg["recon"]
        self.c = c
        self.window = float(c["window_s"])
        lim = det.cfg["limits"]
        self.cap = int(lim["targets_per_source"])
        self.sources: Lru[str, _Source] = Lru(int(lim["sources"]), "recon.sources", det.evictions)
        self.conns: Lru[tuple[Any, ...], str] = Lru(
            int(lim["connections"]), "recon.dicom_conns", det.evictions
        )
        # kind -> its method, looked up once rather than per observation (one per flow)
        self._handlers = {k: getattr(self, "_" + k.replace(".", "_")) for k in self.KINDS}

    def _src(self, ip: str) -> _Source:
        return self.sources.touch(ip, lambda: _Source(self.window, self.cap, self.det.evictions))

    def add(self, obs: Observation) -> None:
        self._handlers[obs.kind](obs)

    # -- scans -------------------------------------------------------------------------------------------
    def _flow(self, obs: Observation) -> None:
        f = obs.fields
        client, server = f.get("client_ip"), f.get("server_ip")
        if not client or not server or not self._is_probe(f, server):
            return
        ts = float(f.get("first_seen") or obs.ts)
        src = self._src(client)
        src.mac = obs.src_mac or src.mac
        port = f.get("server_port") if f.get("transport") in ("tcp", "udp") else f.get("transport")
        if not src.probes.add((server, port, f.get("transport")), ts):
            return
        src.hosts[server] += 1
        for item in src.probes.dropped:  # aged out: keep the host counts in step
            host = item[0]  # type: ignore[index]
            src.hosts[host] -= 1
            if src.hosts[host] <= 0:
                del src.hosts[host]
        c = self.c
        total = len(src.probes)
        widest = max(src.hosts.values())
        rule = None
        if widest >= int(c["port_scan_ports"]) or (total >= int(c["port_scan_total"]) and len(src.hosts) < 3):
            rule = "recon.port_scan"
        elif len(src.hosts) >= int(c["host_sweep_hosts"]):
            rule = "recon.host_sweep"
        if rule is None:
            return
        victims = [endpoint(obs.dst_mac, server)]
        what = "ports" if rule == "recon.port_scan" else "hosts"
        self.det.hit(
            rule,
            ts,
            endpoint(src.mac, client),
            victims,
            f"{client} made {total}{'+' if total >= self.cap else ''} connection attempts that exchanged "
            f"no data to {len(src.hosts)} host(s) "
            f"(up to {widest} ports on one) within {int(self.window)} s: it is scanning for {what}.",
            evidence={
                "kind": "flow",
                "flow": f"{client}->{server}/{f.get('transport')}",
                "probes_in_window": total,
                "hosts_in_window": len(src.hosts),
            },
        )

    def _is_probe(self, f: dict[str, Any], server: str) -> bool:
        transport = f.get("transport")
        c2s, s2c = int(f.get("packets_c2s") or 0), int(f.get("packets_s2c") or 0)
        if c2s > int(self.c["probe_max_packets"]) or c2s == 0:
            return False
        if transport == "tcp":
            return f.get("tcp_state") in ("syn", "reset")
        if self.det.cfg.is_local(server) and _group(server):
            return False  # multicast / broadcast: announcements, not probes
        if transport == "udp":
            return s2c == 0 and int(f.get("server_port") or 0) not in _ONE_WAY_UDP
        return transport in ("icmp", "icmp6") and s2c == 0

    # -- DICOM ---------------------------------------------------------------------------------------------
    def _dicom_associate_rq(self, obs: Observation) -> None:
        f = obs.fields
        self.conns.put((obs.src_ip, obs.sport, obs.dst_ip, obs.dport), str(f.get("called_ae") or ""))
        if not obs.src_ip:
            return
        src = self._src(obs.src_ip)
        src.mac = obs.src_mac or src.mac
        if src.dicom_servers.add(obs.dst_ip, obs.ts) and len(src.dicom_servers) >= int(c_hosts(self.c)):
            self.det.hit(
                "recon.dicom_association_scan",
                obs.ts,
                explanation=f"{obs.src_ip} opened DICOM associations with {len(src.dicom_servers)} different "
                f"hosts within {int(self.window)} s: it is looking for DICOM nodes.",
                **by_sender(obs),
            )

    def _dicom_associate_rj(self, obs: Observation) -> None:
        client, server = obs.dst_ip, obs.src_ip  # the reject goes from the called node to the caller
        if not client:
            return
        called = self.conns.get((client, obs.dport, server, obs.sport))
        src = self._src(client)
        src.mac = obs.dst_mac or src.mac
        src.rejects.add((server, obs.dport, obs.ts), obs.ts)
        if called is not None:
            src.called.add((server, called), obs.ts)
        n = len(src.rejects)
        if n < int(self.c["dicom_rejects"]):
            return
        aes = len(src.called)
        brute = aes >= int(self.c["dicom_called_aes"])
        rule = "recon.dicom_aet_bruteforce" if brute else "recon.dicom_association_scan"
        why = f"tried {aes} different called AE titles" if brute else "was refused repeatedly"
        self.det.hit(
            rule,
            obs.ts,
            endpoint(src.mac, client),
            [endpoint(obs.src_mac, server)],
            f"{client} had {n} DICOM associations rejected (A-ASSOCIATE-RJ) within {int(self.window)} s and "
            f"{why}: it is guessing the application entity titles of the DICOM node.",
            evidence={
                "kind": obs.kind,
                "flow": f"{client}->{server}:{obs.sport}",
                "rejects_in_window": n,
                "called_aes_tried": aes,
                "reason": obs.fields.get("reason"),
            },
        )

    # -- HL7 / MQTT / logins ---------------------------------------------------------------------------
    def _hl7_ack(self, obs: Observation) -> None:
        if str(obs.fields.get("ack_code") or "").upper() in _NAK:
            self._burst(obs)

    def _hl7_message(self, obs: Observation) -> None:
        if obs.fields.get("malformed"):
            self._burst(obs)

    def _mqtt_connack(self, obs: Observation) -> None:
        if obs.fields.get("return_code") not in (0, None):
            self._burst(obs)

    def _ftp_login(self, obs: Observation) -> None:
        if obs.fields.get("success") is False:
            self._burst(obs)

    def _telnet_login(self, obs: Observation) -> None:
        self._ftp_login(obs)

    def _burst(self, obs: Observation) -> None:
        to_client, window, rule, what = _BURSTS[obs.kind]
        if to_client:
            client, client_mac, server, server_mac = obs.dst_ip, obs.dst_mac, obs.src_ip, obs.src_mac
        else:
            client, client_mac, server, server_mac = obs.src_ip, obs.src_mac, obs.dst_ip, obs.dst_mac
        if not client:
            return
        src = self._src(client)
        win: Window = getattr(src, window)
        win.add((server, obs.ts, len(win)), obs.ts)
        n = len(win)
        if n >= int(self.c[window]):
            self.det.hit(
                rule,
                obs.ts,
                endpoint(client_mac, client),
                [endpoint(server_mac, server)],
                f"{client}: {n} {what} within {int(self.window)} s.",
                evidence={"kind": obs.kind, "flow": f"{client}->{server}", "in_window": n},
            )


_HL7_PROBE: Final = "HL7 messages refused (negative ACK) or malformed"
# kind -> (sent to the client: NAKs and refusals are answers; the `_Source` window, also the name of its
# threshold in the recon config; rule; what is counted)
_BURSTS: dict[str, tuple[bool, str, str, str]] = {
    "hl7.ack": (True, "hl7_naks", "recon.hl7_probe", _HL7_PROBE),
    "hl7.message": (False, "hl7_naks", "recon.hl7_probe", _HL7_PROBE),
    "mqtt.connack": (True, "mqtt_refused", "recon.mqtt_probe", "MQTT connections refused by the broker"),
    "ftp.login": (False, "login_failures", "recon.login_bruteforce", "failed FTP logins"),
    "telnet.login": (False, "login_failures", "recon.login_bruteforce", "failed Telnet logins"),
}


def c_hosts(c: dict[str, Any]) -> int:
    # a DICOM association scan is a host sweep made of associations: same threshold, fewer hosts exist
    return max(3, int(c["host_sweep_hosts"]) // 3)


# UDP services that normally get no answer (logging, announcements, traps, time broadcasts)
_ONE_WAY_UDP: Final = {514, 162, 123, 1900, 5353, 137, 138, 67, 68, 2055, 4739, 6343}


def _group(ip: str) -> bool:
    if ":" in ip:
        return ip.lower().startswith("ff")
    first = int(ip.split(".", 1)[0])
    return 224 <= first <= 239 or ip == "255.255.255.255" or ip.endswith(".255")
