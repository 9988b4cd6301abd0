"""Spoofing: ARP cache poisoning (a MAC claiming an IP another MAC owns, gratuitous or not), rogue DHCP
servers, and a device changing its identity (a MAC whose DHCP fingerprint changes, a DICOM AE title used
from another machine).

The owner of an IP is the first MAC seen with it (ARP or DHCP ACK); it stays the owner while heard from
within `arp.rebind_after_s`, so a real owner answering again is never blamed for the attacker's claims. A
DHCP ACK from a known server hands the IP to its new client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medsentry.detect.engine import AlertStore, endpoint
from medsentry.detect.novelty import Novelty
from medsentry.detect.state import Lru
from medsentry.observe import Observation

if TYPE_CHECKING:
    from medsentry.detect.engine import Detector


class _Owner:
    __slots__ = ("last", "mac")

    def __init__(self, mac: str, ts: float) -> None:
        self.mac, self.last = mac, ts


class Spoofing:
    KINDS: tuple[str, ...] = (
        "arp.reply",
        "arp.request",
        "dhcp.offer",
        "dhcp.ack",
        "dhcp.discover",
        "dhcp.request",
        "dicom.associate_rq",
    )

    def __init__(self, det: Detector) -> None:
        self.det = det
        cfg = det.cfg
        lim = int(cfg["limits"]["bindings"])
        ev = det.evictions
        self.rebind = float(cfg.get("arp", "rebind_after_s"))
        self.ignore = tuple(p.lower() for p in cfg.get("arp", "ignore_mac_prefixes"))
        self.owners: Lru[str, _Owner] = Lru(lim, "arp.owners", ev)
        self.own_ip: Lru[str, str] = Lru(lim, "arp.mac_ip", ev)  # mac -> an IP it holds itself
        self.dhcp_fp: Lru[str, tuple[Any, ...]] = Lru(lim, "dhcp.fingerprints", ev)
        self.ae_home: Lru[str, tuple[str | None, str | None]] = Lru(lim, "dicom.ae_home", ev)
        self.dhcp_trusted = {str(s) for s in cfg["trusted"]["dhcp_servers"] or []}
        self.servers = Novelty(lim, "dhcp.servers", ev)

    def add(self, obs: Observation) -> None:
        if obs.kind.startswith("arp."):
            self._arp(obs)
        elif obs.kind.startswith("dhcp."):
            self._dhcp(obs)
        else:
            self._ae(obs)

    # -- ARP -----------------------------------------------------------------------------------------------
    def _arp(self, obs: Observation) -> None:
        f = obs.fields
        ip, mac = f.get("sender_ip"), str(f.get("sender_mac") or "").lower()
        if not ip or ip == "0.0.0.0" or not mac or mac == "00:00:00:00:00:00" or mac.startswith(self.ignore):
            return
        ts = obs.ts
        owner = self.owners.get(ip)
        if owner is None or (owner.mac != mac and ts - owner.last > self.rebind):
            self.owners.put(ip, _Owner(mac, ts))
            self.own_ip.put(mac, ip)
            return
        if owner.mac == mac:
            owner.last = max(owner.last, ts)
            self.own_ip.put(mac, ip)
            return
        target_ip, target_mac = f.get("target_ip"), f.get("target_mac")
        victims = [endpoint(owner.mac, ip)]
        if target_ip and target_ip != ip:
            tmac = obs.dst_mac if obs.dst_mac and not obs.dst_mac.startswith("ff:ff") else target_mac
            victims.append(endpoint(tmac if tmac and tmac != "00:00:00:00:00:00" else None, target_ip))
        kind = (
            "gratuitous ARP"
            if f.get("gratuitous")
            else {"arp.reply": "ARP replies"}.get(obs.kind, "ARP requests")
        )
        self.det.hit(
            "spoof.arp",
            ts,
            endpoint(mac, self.own_ip.get(mac)),
            victims,
            f"{mac} sent {kind} claiming {ip}, which belongs to {owner.mac}: ARP cache poisoning, traffic "
            f"for {ip} is being redirected through {mac} (man in the middle).",
            evidence={
                "kind": obs.kind,
                "flow": f"{mac} claims {ip}",
                "owner_mac": owner.mac,
                "frame_src_mac": obs.src_mac,
            },
        )

    # -- DHCP ----------------------------------------------------------------------------------------------
    def _dhcp(self, obs: Observation) -> None:
        f = obs.fields
        if obs.kind in ("dhcp.offer", "dhcp.ack"):
            server = str(f.get("server_id") or obs.src_ip or "")
            if (
                obs.kind == "dhcp.ack"
                and f.get("yiaddr")
                and f.get("client_mac")
                and f["yiaddr"] != "0.0.0.0"
            ):
                self.owners.put(str(f["yiaddr"]), _Owner(str(f["client_mac"]).lower(), obs.ts))
                self.own_ip.put(str(f["client_mac"]).lower(), str(f["yiaddr"]))
            if not server:
                return
            info: dict[str, Any] = {
                "attacker": endpoint(obs.src_mac, server),
                "victims": [endpoint(f.get("client_mac"), f.get("yiaddr"))],
                "explanation": f"{server} ({obs.src_mac}) answered DHCP clients although it is not a known "
                "DHCP server: a rogue server can hand out a malicious gateway or DNS server.",
                "evidence": {"kind": obs.kind, "flow": f"{server}->{f.get('client_mac')}"},
            }
            if self.dhcp_trusted:
                if server not in self.dhcp_trusted:
                    self.det.hit(
                        "spoof.rogue_dhcp",
                        obs.ts,
                        info.pop("attacker"),
                        info.pop("victims"),
                        info.pop("explanation"),
                        **info,
                    )
                return
            self.servers.see(("dhcp", server, obs.src_mac), obs.ts, rule="baseline.new_dhcp_server", **info)
            return
        mac = str(f.get("client_mac") or obs.src_mac or "").lower()
        vendor, prl = f.get("vendor_class"), tuple(f.get("param_request_list") or ())
        if not mac or (vendor is None and not prl):
            return
        fp = (vendor, prl)
        old = self.dhcp_fp.get(mac)
        self.dhcp_fp.put(mac, fp)
        if old is None or old == fp:
            return
        changed = [
            n
            for n, a, b in (("vendor class", old[0], fp[0]), ("parameter request list", old[1], fp[1]))
            if a != b
        ]
        self.det.hit(
            "spoof.identity_change",
            obs.ts,
            endpoint(mac, f.get("requested_ip") or obs.src_ip),
            [endpoint(mac, None)],
            f"The device with MAC {mac} now asks DHCP with a different {' and '.join(changed)}: another "
            "machine is using this device's MAC address (or it was replaced without notice).",
            evidence={"kind": obs.kind, "flow": f"dhcp {mac}", "changed": changed},
        )

    # -- DICOM AE titles -----------------------------------------------------------------------------------
    def _ae(self, obs: Observation) -> None:
        ae = str(obs.fields.get("calling_ae") or "")
        if not ae or not obs.src_ip:
            return
        # an AE title names a station in the called node's configuration: judged per called node
        key = f"{obs.dst_ip}|{ae}"
        home = self.ae_home.get(key)
        self.ae_home.put(key, home or (obs.src_mac, obs.src_ip))
        if home is None:
            return
        hmac, hip = home
        moved = (hmac != obs.src_mac) if (hmac and obs.src_mac) else (hip != obs.src_ip)
        if not moved:
            return
        self.det.hit(
            "spoof.identity_change",
            obs.ts,
            endpoint(obs.src_mac, obs.src_ip),
            [endpoint(hmac, hip)],
            f"{obs.src_ip} opened a DICOM association as AE title '{ae}', which belongs to {hip}: a machine "
            "is masquerading as another DICOM station.",
            evidence={"kind": obs.kind, "flow": f"{obs.src_ip}->{obs.dst_ip}:{obs.dport}", "calling_ae": ae},
            group=key,
        )

    def novel_alerts(self, store: AlertStore, end: float, classes: dict[str, str]) -> None:
        self.servers.emit(store, end)
