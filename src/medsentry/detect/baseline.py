"""Baseline deviation: per device (the client side of each flow) learn the peers it talks to, the services
it uses and its traffic volume during the learning period; afterwards report new peers, new services,
destinations outside the address space and volume outliers.

Per device class: when `Detector.alerts(classes)` is given the device classes (from the inventory), a new
peer or service that another device of the same class already used during learning is normal (the third
infusion pump talking to the pump server is not news). Accepted entries (`accept:` in the config) make
keys normal too. Multicast and broadcast destinations are not peers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from medsentry.detect.engine import AlertStore, endpoint
from medsentry.detect.novelty import Novelty, Seen
from medsentry.detect.recon import _group
from medsentry.detect.state import Lru
from medsentry.observe import Observation

if TYPE_CHECKING:
    from medsentry.detect.engine import Detector

_MAX_BUCKETS: Final = 4096


class Baseline:
    KINDS: tuple[str, ...] = ("flow",)

    def __init__(self, det: Detector) -> None:
        self.det = det
        cfg = det.cfg
        lim = cfg["limits"]
        b = cfg["baseline"]
        self.bucket = float(b["bucket_s"])
        self.factor = float(b["volume_factor"])
        self.min_bytes = int(b["volume_min_bytes"])
        self.min_buckets = int(b["volume_min_buckets"])
        ev = det.evictions
        self.novel = Novelty(int(lim["novelty_keys"]), "baseline.keys", ev)
        # (peer or service key) -> {client: first seen}: what other devices learned, for class judgements
        self.users: Lru[tuple[Any, ...], dict[str, float]] = Lru(
            int(lim["novelty_keys"]), "baseline.users", ev
        )
        self.volume: Lru[str, dict[int, int]] = Lru(int(lim["devices"]), "baseline.volume", ev)
        self.macs: Lru[str, str] = Lru(int(lim["devices"]), "baseline.macs", ev)

    def add(self, obs: Observation) -> None:
        f = obs.fields
        client, server = f.get("client_ip"), f.get("server_ip")
        if not client or not server or client in ("0.0.0.0", "::") or _group(server):
            return
        transport = str(f.get("transport"))
        port = int(f.get("server_port") or 0)
        service = f"{transport}/{port if port < 49152 else 'ephemeral'}"
        first = float(f.get("first_seen") or obs.ts)
        last = float(f.get("last_seen") or obs.ts)
        cmac = obs.src_mac
        nbytes = int(f.get("bytes_c2s") or 0) + int(f.get("bytes_s2c") or 0)
        self._volume(client, first, last, nbytes)
        novel = self.novel
        peer_key, svc_key = ("peer", client, server), ("svc", client, service)
        peer_known, svc_known = novel.bump(peer_key, first), novel.bump(svc_key, first)
        if peer_known and svc_known:
            return  # the common case: nothing to build
        if cmac:
            self.macs.put(client, cmac)
        att = endpoint(cmac, client)
        victim = endpoint(obs.dst_mac, server)
        flow = f"{client}->{server}:{port}/{transport}"
        outside = not self.det.cfg.is_local(server)
        if outside:
            rule, what = "baseline.outside_destination", f"{server} (outside the hospital's address space)"
        else:
            rule, what = "baseline.new_peer", server
        if not peer_known:
            self._see(
                peer_key,
                ("peer", server),
                client,
                first,
                rule,
                att,
                [victim],
                f"{client} talked to {what}, a peer it did not talk to during the learning period.",
                {"kind": "flow", "flow": flow},
                port,
            )
        if not svc_known:
            self._see(
                svc_key,
                ("svc", service),
                client,
                first,
                "baseline.new_service",
                att,
                [victim],
                f"{client} used the service {service}, which it did not use during the learning period.",
                {"kind": "flow", "flow": flow, "service": service},
                port,
            )

    def _see(
        self,
        key: tuple[Any, ...],
        class_key: tuple[Any, ...],
        client: str,
        ts: float,
        rule: str,
        att: dict[str, str | None],
        victims: list[dict[str, Any]],
        explanation: str,
        evidence: dict[str, Any],
        port: int,
    ) -> None:
        self.novel.see(
            key,
            ts,
            rule=rule,
            attacker=att,
            victims=victims,
            explanation=explanation,
            evidence=evidence,
            port=port,
            device_class_key=class_key,
        )
        users = self.users.touch(class_key, dict)
        if client in users:
            users[client] = min(users[client], ts)
        elif len(users) < 64:
            users[client] = ts

    def _volume(self, client: str, first: float, last: float, nbytes: int) -> None:
        buckets = self.volume.touch(client, dict)
        b0, b1 = int(first // self.bucket), int(last // self.bucket)
        if b1 == b0:  # most flows: one bucket
            buckets[b0] = buckets.get(b0, 0) + nbytes
        else:
            b1 = min(b1, b0 + 99)
            share = nbytes // (b1 - b0 + 1)
            for b in range(b0, b1 + 1):
                buckets[b] = buckets.get(b, 0) + share
        while len(buckets) > _MAX_BUCKETS:
            del buckets[min(buckets)]
            self.det.evictions["baseline.buckets"] += 1

    # -- judgement at the end of learning --------------------------------------------------------------------
    def novel_alerts(self, store: AlertStore, end: float, classes: dict[str, str]) -> None:
        def class_of(ip: str | None) -> str | None:
            if ip is None:
                return None
            return classes.get(ip) or classes.get(self.macs.get(ip) or "")

        def normal_for_class(s: Seen) -> bool:
            mine = class_of(s.attacker.get("ip"))
            if not mine or mine == "unknown":
                return False
            users = self.users.get(s.device_class_key) or {}
            return any(
                t < end and c != s.attacker.get("ip") and class_of(c) == mine for c, t in users.items()
            )

        # devices first seen after the learning period are reported once, by their peers/services
        self.novel.emit(store, end, skip=normal_for_class)
        self._volume_alerts(store, end)

    def _volume_alerts(self, store: AlertStore, end: float) -> None:
        edge = int(end // self.bucket)
        for client, buckets in self.volume.items():
            learned = [v for b, v in buckets.items() if b < edge]
            if len(learned) < self.min_buckets:
                continue
            top = max(learned)
            for b, v in sorted(buckets.items()):
                if b < edge or v < self.min_bytes or v <= self.factor * top:
                    continue
                ts = b * self.bucket
                store.hit(
                    "baseline.volume",
                    ts,
                    endpoint(self.macs.get(client), client),
                    [],
                    f"{client} moved {v} bytes in {int(self.bucket)} s, more than {self.factor:g} times its "
                    f"largest {int(self.bucket)} s volume during learning ({top} bytes).",
                    evidence={"kind": "flow", "flow": f"{client} volume", "bytes": v, "learned_max": top},
                )
