"""Protocol abuse: MQTT broad wildcard subscriptions, anonymous MQTT, publishing on another device's topic;
DICOM C-STORE/C-MOVE/C-GET/C-FIND from an unknown AE; malformed or injected HL7 and HL7 message types a
sender never sent before; FHIR/HTTP probing (path traversal and injection patterns, scanner user agents,
bursts of 4xx answers).

Topics and paths are cut to their first levels in explanations (they may name a patient or a bed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from medsentry.detect.engine import AlertStore, by_sender, endpoint
from medsentry.detect.novelty import Novelty
from medsentry.detect.state import Lru, Window
from medsentry.observe import Observation

if TYPE_CHECKING:
    from medsentry.detect.engine import Detector

_DICOM_OPS: Final = {"C-STORE-RQ", "C-MOVE-RQ", "C-GET-RQ", "C-FIND-RQ"}


def short_topic(topic: str, levels: int = 2) -> str:
    parts = topic.split("/")
    return "/".join(parts[:levels]) + ("/…" if len(parts) > levels else "")


class ProtocolAbuse:
    KINDS: tuple[str, ...] = (
        "mqtt.connect",
        "mqtt.subscribe",
        "mqtt.publish",
        "dicom.associate_rq",
        "dicom.associate_ac",
        "dicom.command",
        "hl7.message",
        "http.request",
        "http.response",
    )

    def __init__(self, det: Detector) -> None:
        self.det = det
        cfg = det.cfg
        lim = cfg["limits"]
        t = cfg["trusted"]
        self.brokers = {str(b) for b in t["mqtt_brokers"] or []}
        self.infra = {str(b) for b in t["mqtt_infrastructure"] or []}
        self.trusted_aes = {str(a).strip() for a in t["dicom_aes"] or []}
        self.mqtt_ports = {int(p) for p in cfg.get("mqtt", "ports")}
        self.min_levels = int(cfg.get("mqtt", "wildcard_min_literal_levels"))
        http = cfg["http"]
        self.agents = [a.lower() for a in http["scanner_agents"]]
        self.patterns = [p.lower() for p in http["probe_patterns"]]
        self.not_found = int(http["not_found_burst"])
        self.window = float(cfg.get("recon", "window_s"))
        ev = det.evictions
        topics = int(lim["topics"])
        self.publishers: Lru[tuple[str | None, str], dict[str, float]] = Lru(topics, "mqtt.topics", ev)
        self.conns: Lru[tuple[Any, ...], str] = Lru(int(lim["connections"]), "dicom.conns", ev)
        self.novel = Novelty(int(lim["novelty_keys"]), "protocols.novelty", ev)
        self.http_4xx: Lru[str, Window] = Lru(int(lim["sources"]), "http.4xx", ev)
        # kind -> its method, looked up once (as in recon.py) rather than built and looked up by name for
        # every observation
        self._handlers = {k: getattr(self, "_" + k.replace(".", "_")) for k in self.KINDS}

    def add(self, obs: Observation) -> None:
        self._handlers[obs.kind](obs)

    # -- MQTT ----------------------------------------------------------------------------------------------
    def _infra(self, obs: Observation, client_id: str | None = None) -> bool:
        return bool({obs.src_ip, obs.src_mac, client_id} & self.infra)

    def _mqtt_connect(self, obs: Observation) -> None:
        f = obs.fields
        if obs.dst_ip:
            self.brokers.add(obs.dst_ip)
        if not f.get("username_present") and not self._infra(obs, f.get("client_id")):
            self.det.hit(
                "abuse.mqtt_anonymous",
                obs.ts,
                explanation=f"{obs.src_ip} connected to the MQTT broker {obs.dst_ip} without a user name: "
                "the broker accepts anonymous clients, so anyone on the network can read and write its "
                "topics.",
                **by_sender(obs),
                group=obs.dst_ip,
                port=obs.dport,
            )

    def _mqtt_subscribe(self, obs: Observation) -> None:
        if self._infra(obs):
            return
        broad = [t for t in obs.fields.get("topics") or [] if self._broad(str(t))]
        if not broad:
            return
        self.det.hit(
            "abuse.mqtt_wildcard",
            obs.ts,
            explanation=f"{obs.src_ip} subscribed to {', '.join(sorted(set(broad)))} on {obs.dst_ip}: a "
            "wildcard that receives every device's messages (vitals, pump status). Only infrastructure "
            "clients (trusted.mqtt_infrastructure) should do this.",
            **by_sender(obs, wildcards=sorted(set(broad))[:5]),
            port=obs.dport,
        )

    def _broad(self, topic: str) -> bool:
        if "#" not in topic and "+" not in topic:
            return False
        literal = 0
        for level in topic.split("/"):
            if level in ("#", "+"):
                break
            literal += 1
        return "#" in topic and literal < self.min_levels

    def _mqtt_publish(self, obs: Observation) -> None:
        if obs.src_ip in self.brokers or (obs.sport in self.mqtt_ports and obs.dport not in self.mqtt_ports):
            return  # the broker relaying to a subscriber
        topic = str(obs.fields.get("topic") or "")
        who = obs.src_mac or obs.src_ip or "?"
        # topics belong to a broker's namespace: the same name on another broker is another topic
        pubs = self.publishers.touch((obs.dst_ip, topic), dict)
        if len(pubs) == 1 and who in pubs:
            return  # the topic's only publisher: the common case, decided without building anything
        others = [p for p in pubs if p != who]
        if who not in pubs and len(pubs) < 8:
            pubs[who] = obs.ts
        if not others or self._infra(obs):
            return
        if who in pubs and pubs[who] <= min(pubs.values()):
            return  # the topic's first publisher owns it: it goes on publishing after a spoofer came
        key = ("topic", obs.dst_ip, topic, who)
        if self.novel.bump(key, obs.ts):
            return
        short = short_topic(topic)
        self.novel.see(
            key,
            obs.ts,
            rule="abuse.mqtt_topic_spoof",
            attacker=endpoint(obs.src_mac, obs.src_ip),
            victims=[endpoint(obs.dst_mac, obs.dst_ip)] + [_victim(p) for p in others[:4]],
            explanation=f"{obs.src_ip} published on the MQTT topic {short} that another device publishes "
            "on: someone is injecting readings in that device's name.",
            evidence={"kind": obs.kind, "flow": f"{obs.src_ip}->{obs.dst_ip}:{obs.dport}", "topic": short},
            group=(obs.dst_ip, topic),
        )

    # -- DICOM ---------------------------------------------------------------------------------------------
    def _dicom_associate_rq(self, obs: Observation) -> None:
        self.conns.put(
            (obs.src_ip, obs.sport, obs.dst_ip, obs.dport), str(obs.fields.get("calling_ae") or "")
        )

    def _dicom_associate_ac(self, obs: Observation) -> None:
        pass  # the association is judged by what it is used for

    def _dicom_command(self, obs: Observation) -> None:
        cmd = obs.fields.get("command")
        if cmd not in _DICOM_OPS:
            return
        ae = self.conns.get((obs.src_ip, obs.sport, obs.dst_ip, obs.dport))
        if ae is None:
            return
        if not self.trusted_aes and self.novel.bump(("ae", ae, obs.src_ip), obs.ts):
            return  # seen before: what `see` would do, without building the alert text first
        info: dict[str, Any] = {
            "rule": "abuse.dicom_unknown_ae",
            "explanation": f"{obs.src_ip} sent {cmd} to the DICOM node {obs.dst_ip} as AE title '{ae}', "
            "which "
            "is not a known AE for that address: an unknown station is storing or retrieving images.",
            "group": (ae, obs.dst_ip),
            **by_sender(obs, command=cmd, calling_ae=ae),
        }
        if self.trusted_aes:
            if ae not in self.trusted_aes:
                self.det.hit(ts=obs.ts, **info)
            return
        self.novel.see(("ae", ae, obs.src_ip), obs.ts, **info)

    # -- HL7 -----------------------------------------------------------------------------------------------
    def _hl7_message(self, obs: Observation) -> None:
        f = obs.fields
        suspicious = [str(s) for s in f.get("suspicious") or []]
        if suspicious or f.get("malformed"):
            reasons = suspicious + (["malformed"] if f.get("malformed") else [])
            self.det.hit(
                "abuse.hl7_injection",
                obs.ts,
                explanation=f"{obs.src_ip} sent HL7 to {obs.dst_ip} with {', '.join(sorted(set(reasons)))}: "
                "a damaged or crafted message meant to break or fool the interface engine.",
                **by_sender(obs, reasons=sorted(set(reasons)), segments=list(f.get("segments") or [])[:12]),
            )
        mtype = f"{f.get('message_type') or '?'}^{f.get('trigger_event') or ''}"
        key = ("hl7", obs.src_ip, obs.dst_ip, mtype)
        if self.novel.bump(key, obs.ts):
            return
        self.novel.see(
            key,
            obs.ts,
            rule="abuse.hl7_unexpected_message",
            explanation=f"{obs.src_ip} sent an HL7 {mtype} message to {obs.dst_ip}, a message type it did "
            "not "
            "send during the learning period.",
            **by_sender(obs, message_type=mtype),
        )

    # -- HTTP / FHIR ---------------------------------------------------------------------------------------
    def _http_request(self, obs: Observation) -> None:
        f = obs.fields
        ua = str(f.get("user_agent") or "").lower()
        path = str(f.get("path") or "").lower()
        agent = next((a for a in self.agents if a in ua), None)
        pattern = next((p for p in self.patterns if p in path), None)
        if agent is None and pattern is None:
            return
        found = ([f"scanner user agent '{agent}'"] if agent else []) + (
            [f"probe pattern '{pattern}' in the path"] if pattern else []
        )
        self.det.hit(
            "abuse.http_probe",
            obs.ts,
            explanation=f"{obs.src_ip} sent HTTP requests to {obs.dst_ip}:{obs.dport} with "
            f"{' and '.join(found)}: automated probing of the web/FHIR service for vulnerabilities.",
            **by_sender(obs, scanner=agent, pattern=pattern, fhir=bool(f.get("fhir"))),
            port=obs.dport,
        )

    def _http_response(self, obs: Observation) -> None:
        status = obs.fields.get("status")
        if not isinstance(status, int) or not 400 <= status < 500 or not obs.dst_ip:
            return
        win = self.http_4xx.touch(
            obs.dst_ip, lambda: Window(self.window, 4096, self.det.evictions, "http.4xx")
        )
        win.add((obs.src_ip, obs.ts, len(win)), obs.ts)
        if len(win) >= self.not_found:
            self.det.hit(
                "abuse.http_probe",
                obs.ts,
                endpoint(obs.dst_mac, obs.dst_ip),
                [endpoint(obs.src_mac, obs.src_ip)],
                f"{obs.dst_ip} received {len(win)} HTTP 4xx answers within {int(self.window)} s: it is "
                "enumerating paths on the web/FHIR service.",
                evidence={
                    "kind": obs.kind,
                    "flow": f"{obs.dst_ip}->{obs.src_ip}:{obs.sport}",
                    "errors_in_window": len(win),
                },
                port=obs.sport,
            )

    # -- learning-period judgements ------------------------------------------------------------------------
    def novel_alerts(self, store: AlertStore, end: float, classes: dict[str, str]) -> None:
        self.novel.emit(store, end)


def _victim(who: str) -> dict[str, str | None]:
    return endpoint(who, None) if ":" in who and who.count(":") == 5 else endpoint(None, who)
