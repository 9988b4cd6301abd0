"""The detection engine: observations in (streamed, cheap), deduplicated and rate-limited alerts out.

Rule families (one module each) look at the observation kinds they know and call `Detector.hit()`. A hit
opens an alert or, within the dedup window, adds to the open one (same rule, same attacker, same group).
Families whose judgement needs the end of the learning period (`novelty`/`baseline`) keep first-seen keys
and produce their alerts in `alerts()`.

An alert's `attacker` is the device whose behaviour is flagged: the scanner, the spoofer, the client that
sent a password in clear, the server exposing PHI in clear or with a self-signed certificate. Its `id` is a
hash of rule, attacker, victim set and first_seen rounded down to `alerts.id_bucket_s`: the same traffic
gives the same ids on every run.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from medsentry.detect.config import Config, accepted, load_config
from medsentry.detect.state import Lru
from medsentry.observe import Observation

# rule -> (ATT&CK id, name, matrix, default severity)
RULES: dict[str, tuple[str, str, str, str]] = {
    "recon.port_scan": ("T1046", "Network Service Discovery", "enterprise", "medium"),
    "recon.host_sweep": ("T0846", "Remote System Discovery", "ics", "medium"),
    "recon.dicom_association_scan": ("T0888", "Remote System Information Discovery", "ics", "medium"),
    "recon.dicom_aet_bruteforce": ("T1110", "Brute Force", "enterprise", "high"),
    "recon.hl7_probe": ("T0888", "Remote System Information Discovery", "ics", "medium"),
    "recon.mqtt_probe": ("T0888", "Remote System Information Discovery", "ics", "medium"),
    "recon.login_bruteforce": ("T1110", "Brute Force", "enterprise", "high"),
    "abuse.mqtt_wildcard": ("T0801", "Monitor Process State", "ics", "high"),
    "abuse.mqtt_anonymous": ("T0859", "Valid Accounts", "ics", "low"),
    "abuse.mqtt_topic_spoof": ("T0856", "Spoof Reporting Message", "ics", "high"),
    "abuse.dicom_unknown_ae": ("T1213", "Data from Information Repositories", "enterprise", "high"),
    "abuse.hl7_injection": ("T1190", "Exploit Public-Facing Application", "enterprise", "high"),
    "abuse.hl7_unexpected_message": ("T0856", "Spoof Reporting Message", "ics", "medium"),
    "abuse.http_probe": ("T1595", "Active Scanning", "enterprise", "high"),
    "spoof.arp": ("T0830", "Adversary-in-the-Middle", "ics", "critical"),
    "spoof.rogue_dhcp": ("T1557.003", "Adversary-in-the-Middle: DHCP Spoofing", "enterprise", "high"),
    "spoof.identity_change": ("T0849", "Masquerading", "ics", "high"),
    "cred.cleartext": ("T1552", "Unsecured Credentials", "enterprise", "medium"),
    "weak.tls_version": ("T1557", "Adversary-in-the-Middle", "enterprise", "low"),
    "weak.certificate": ("T1557", "Adversary-in-the-Middle", "enterprise", "low"),
    "weak.smb1": ("T1210", "Exploitation of Remote Services", "enterprise", "high"),
    "phi.cleartext": ("T1040", "Network Sniffing", "enterprise", "medium"),
    "phi.external": ("T1048", "Exfiltration Over Alternative Protocol", "enterprise", "critical"),
    "baseline.new_peer": ("T0886", "Remote Services", "ics", "medium"),
    "baseline.new_service": ("T0886", "Remote Services", "ics", "medium"),
    "baseline.outside_destination": ("T0869", "Standard Application Layer Protocol", "ics", "high"),
    "baseline.volume": ("T1030", "Data Transfer Size Limits", "enterprise", "medium"),
    "baseline.new_dhcp_server": ("T1557.003", "Adversary-in-the-Middle: DHCP Spoofing", "enterprise", "high"),
}

SEVERITIES: Final = ("info", "low", "medium", "high", "critical")


def endpoint(mac: str | None, ip: str | None) -> dict[str, str | None]:
    return {"mac": mac, "ip": ip}


def by_sender(obs: Observation, **evidence: Any) -> dict[str, Any]:
    """`attacker`, `victims` and `evidence` of an alert on one observation that flags its sender."""
    return {
        "attacker": endpoint(obs.src_mac, obs.src_ip),
        "victims": [endpoint(obs.dst_mac, obs.dst_ip)],
        "evidence": {"kind": obs.kind, "flow": f"{obs.src_ip}->{obs.dst_ip}:{obs.dport}", **evidence},
    }


def by_server(obs: Observation, **evidence: Any) -> dict[str, Any]:
    """The same, for an alert on a server's answer that flags the server (weak TLS, SMB1): its client is
    the victim, and the flow reads client -> server."""
    return by_sender(obs, **{**evidence, "flow": f"{obs.dst_ip}->{obs.src_ip}:{obs.sport}"})


@dataclass
class Alert:
    rule: str
    technique: dict[str, str]
    severity: str
    attacker: dict[str, str | None]
    victims: list[dict[str, Any]]
    first_seen: float
    last_seen: float
    evidence: list[dict[str, Any]]
    explanation: str
    count: int = 1
    id_bucket_s: int = 3600

    # Written by hand, as `Observation.__init__`: a dataclass's generated one stays interpreted under mypyc.
    def __init__(
        self,
        rule: str,
        technique: dict[str, str],
        severity: str,
        attacker: dict[str, str | None],
        victims: list[dict[str, Any]],
        first_seen: float,
        last_seen: float,
        evidence: list[dict[str, Any]],
        explanation: str,
        count: int = 1,
        id_bucket_s: int = 3600,
    ) -> None:
        self.rule, self.technique, self.severity = rule, technique, severity
        self.attacker, self.victims = attacker, victims
        self.first_seen, self.last_seen = first_seen, last_seen
        self.evidence, self.explanation = evidence, explanation
        self.count, self.id_bucket_s = count, id_bucket_s

    @property
    def id(self) -> str:
        victims = sorted(f"{v.get('mac') or ''}/{v.get('ip') or ''}" for v in self.victims)
        att = f"{self.attacker.get('mac') or ''}/{self.attacker.get('ip') or ''}"
        bucket = int(self.first_seen // self.id_bucket_s) * self.id_bucket_s
        raw = "|".join([self.rule, att, ",".join(victims), str(bucket)])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "technique": dict(self.technique),
            "severity": self.severity,
            "attacker": dict(self.attacker),
            "victims": [dict(v) for v in self.victims],
            "first_seen": round(self.first_seen, 6),
            "last_seen": round(self.last_seen, 6),
            "count": self.count,
            "evidence": [dict(e) for e in self.evidence],
            "explanation": self.explanation,
        }


@dataclass
class _Open:
    alert: Alert
    victims: dict[str, dict[str, Any]] = field(default_factory=dict)
    evidence: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    victims_dropped: int = 0
    evidence_dropped: int = 0
    text: Callable[[], str] | None = None  # the latest hit's explanation, not yet formatted

    # Written by hand: the dataclass's generated one (and its default factories) stays interpreted.
    def __init__(self, alert: Alert, text: Callable[[], str] | None = None) -> None:
        self.alert, self.text = alert, text
        self.victims: dict[str, dict[str, Any]] = {}
        self.evidence: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.victims_dropped = self.evidence_dropped = 0


class AlertStore:
    """Open alerts keyed by (rule, attacker, group): dedup window, per-rule rate limit, size cap."""

    def __init__(self, cfg: Config, stats: Counter[str], evictions: Counter[str]) -> None:
        a = cfg["alerts"]
        self.cfg = cfg
        self.window = float(a["dedup_window_s"])
        self.rate = int(a["rate_per_rule_per_min"])
        self.max_victims = int(a["max_victims"])
        self.max_evidence = int(a["max_evidence"])
        self.id_bucket = int(a["id_bucket_s"])
        self.open: Lru[tuple[Any, ...], _Open] = Lru(int(a["max_alerts"]), "alerts", evictions)
        # superseded by a later alert of the same key (outside the window); capped like the open ones
        self.closed: deque[Alert] = deque(maxlen=int(a["max_alerts"]))
        self.evictions = evictions
        self.minute: dict[str, tuple[int, int]] = {}
        self.stats = stats
        self.accept = list(cfg["accept"] or [])

    def hit(
        self,
        rule: str,
        ts: float,
        attacker: dict[str, str | None],
        victims: list[dict[str, Any]],
        explanation: str | Callable[[], str],
        evidence: dict[str, Any] | None = None,
        group: Any = None,
        severity: str | None = None,
        port: int | None = None,
    ) -> Alert | None:
        """`explanation` may be a function giving the text: only the latest hit's wording is kept, so a
        rule whose hits mostly add to an open alert formats it once, when the alert is read."""
        cfg = self.cfg
        lazy = None if isinstance(explanation, str) else explanation
        if not cfg.enabled(rule):
            return None
        if self.accept and accepted(self.accept, rule, attacker, victims, port):
            self.stats["accepted"] += 1
            return None
        key = (rule, attacker.get("ip") or attacker.get("mac"), group)
        op = self.open.get(key)
        if op is not None and ts - op.alert.last_seen > self.window and ts > op.alert.last_seen:
            if len(self.closed) == self.closed.maxlen:
                self.evictions["alerts.closed"] += 1
            self.closed.append(self._finish(op))
            del self.open[key]
            op = None
        if op is None:
            minute = int(ts // 60)
            m, n = self.minute.get(rule, (minute, 0))
            if m != minute:
                m, n = minute, 0
            if n >= self.rate:
                self.stats["rate_limited"] += 1
                return None
            self.minute[rule] = (m, n + 1)
            tid, tname, matrix, sev = RULES[rule]
            alert = Alert(
                rule=rule,
                technique={"id": tid, "name": tname, "matrix": matrix},
                severity=cfg.severity(rule, severity or sev),
                attacker=dict(attacker),
                victims=[],
                first_seen=ts,
                last_seen=ts,
                evidence=[],
                explanation="" if lazy else explanation,  # type: ignore[arg-type]
                count=0,
                id_bucket_s=self.id_bucket,
            )
            op = _Open(alert, text=lazy)
            self.open.put(key, op)
            self.stats["alerts_opened"] += 1
        else:
            self.open.move_to_end(key)
            # the latest wording carries the latest counts
            if lazy is None:
                op.alert.explanation = explanation  # type: ignore[assignment]
            op.text = lazy
            if severity and SEVERITIES.index(severity) > SEVERITIES.index(op.alert.severity):
                op.alert.severity = cfg.severity(rule, severity)
        al = op.alert
        al.count += 1
        al.first_seen = min(al.first_seen, ts)
        al.last_seen = max(al.last_seen, ts)
        for victim in victims:
            vk = f"{victim.get('mac') or ''}/{victim.get('ip') or ''}"
            if vk in op.victims:
                continue
            if len(op.victims) >= self.max_victims:
                op.victims_dropped += 1
                continue
            op.victims[vk] = dict(victim)
        if evidence is not None:
            ek = (evidence.get("kind"), evidence.get("flow"))
            ev = op.evidence.get(ek)
            if ev is None:
                if len(op.evidence) >= self.max_evidence:
                    op.evidence_dropped += 1
                    return al
                ev = {**evidence, "first": ts, "last": ts, "count": 0}
                op.evidence[ek] = ev
            ev["count"] += 1
            ev["first"] = min(ev["first"], ts)
            ev["last"] = max(ev["last"], ts)
            for k, v in evidence.items():
                if k in ("kind", "flow"):
                    continue
                if isinstance(v, list) and isinstance(ev.get(k), list) and ev[k] is not v:
                    ev[k] = sorted({*map(str, ev[k]), *map(str, v)})[:16]  # reasons, field names: union
                else:
                    ev[k] = v  # counters: latest wins
        return al

    def _finish(self, op: _Open) -> Alert:
        al = op.alert
        if op.text is not None:
            al.explanation, op.text = op.text(), None
        al.victims = sorted(op.victims.values(), key=lambda v: (str(v.get("ip")), str(v.get("mac"))))
        al.evidence = sorted(op.evidence.values(), key=lambda e: e["first"])
        for e in al.evidence:
            e["first"], e["last"] = round(e["first"], 6), round(e["last"], 6)
        if op.victims_dropped or op.evidence_dropped:
            al.evidence.append(
                {
                    "kind": "truncated",
                    "victims_dropped": op.victims_dropped,
                    "evidence_dropped": op.evidence_dropped,
                }
            )
        return al

    def all(self) -> list[Alert]:
        return list(self.closed) + [self._finish(op) for op in self.open.values()]


class Family(Protocol):
    KINDS: tuple[str, ...]

    def add(self, obs: Observation) -> None: ...


class Detector:
    """Streaming attack and PHI detection. `add()` every observation; `alerts()` whenever a list is wanted.

    `live=True` makes the learning period `learning.period_s` from the first observation; otherwise (files)
    it is min(period_s, learning.fraction x the time the observations span), and a capture too short for
    `learning.min_s` of learning gets no learning-based judgements at all.
    """

    def __init__(self, config: Config | None = None, live: bool = False) -> None:
        from medsentry.detect import baseline, credentials, phi, protocols, recon, spoofing

        self.cfg = config or load_config()
        self.live = live
        self.stats: Counter[str] = Counter()
        self.evictions: Counter[str] = Counter()
        self.store = AlertStore(self.cfg, self.stats, self.evictions)
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.observations = 0
        self.families: list[Family] = [
            recon.Recon(self),
            protocols.ProtocolAbuse(self),
            spoofing.Spoofing(self),
            credentials.Credentials(self),
            phi.Phi(self),
            baseline.Baseline(self),
        ]
        self._by_kind: dict[str, list[Any]] = {}
        for fam in self.families:
            for kind in fam.KINDS:
                self._by_kind.setdefault(kind, []).append(fam.add)
        self._novelty = [f for f in self.families if hasattr(f, "novel_alerts")]

    # -- input --------------------------------------------------------------------------------------------
    def add(self, obs: Observation) -> None:
        handlers = self._by_kind.get(obs.kind)
        ts = obs.ts
        if self.first_ts is None or ts < self.first_ts:
            self.first_ts = ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        self.observations += 1
        if not handlers:
            return
        for handle in handlers:
            try:
                handle(obs)
            except (KeyError, TypeError, ValueError, AttributeError):
                # a field of an unexpected shape (Zeek, a dissector bug): counted, never fatal
                self.stats["bad_observations"] += 1

    @property
    def kinds(self) -> frozenset[str]:
        """The observation kinds some family reads; `add` only counts the others."""
        return frozenset(self._by_kind)

    def saw(self, first_ts: float, last_ts: float, n: int) -> None:
        """`n` observations of kinds no family reads, spanning first_ts..last_ts, as if each were `add`ed
        (a `--workers` shard summarises them instead of sending them)."""
        if not n:
            return
        if self.first_ts is None or first_ts < self.first_ts:
            self.first_ts = first_ts
        if self.last_ts is None or last_ts > self.last_ts:
            self.last_ts = last_ts
        self.observations += n

    def hit(
        self,
        rule: str,
        ts: float,
        attacker: dict[str, str | None],
        victims: list[dict[str, Any]],
        explanation: str | Callable[[], str],
        **kw: Any,
    ) -> Alert | None:
        return self.store.hit(rule, ts, attacker, victims, explanation, **kw)

    # -- learning -------------------------------------------------------------------------------------------
    def learning_end(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return float("inf")
        period = float(self.cfg.get("learning", "period_s"))
        if not self.live:
            period = min(period, float(self.cfg.get("learning", "fraction")) * (self.last_ts - self.first_ts))
            if period < float(self.cfg.get("learning", "min_s")):
                return float("inf")  # too little history to call anything new: no baseline judgements
        return self.first_ts + period

    # -- output -------------------------------------------------------------------------------------------
    def alerts(self, classes: dict[str, str] | None = None) -> list[Alert]:
        """All alerts so far, oldest first. `classes` (device MAC or IP -> device_class, e.g. from the
        inventory) lets baseline deviations that are normal for a device's class pass."""
        out = self.store.all()
        scratch_stats: Counter[str] = Counter()
        scratch = AlertStore(self.cfg, scratch_stats, self.evictions)
        end = self.learning_end()
        for fam in self._novelty if end != float("inf") else ():
            fam.novel_alerts(scratch, end, classes or {})
        out += scratch.all()
        # set, not added: every call judges the same keys again
        self.stats["novelty_alerts"] = len(scratch.open) + len(scratch.closed)
        self.stats["novelty_accepted"] = scratch_stats["accepted"]
        self.stats["novelty_rate_limited"] = scratch_stats["rate_limited"]
        out.sort(key=lambda a: (a.first_seen, a.rule, a.id))
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "observations": self.observations,
            **dict(self.stats),
            "evictions": dict(self.evictions),
            "learning_end": end if (end := self.learning_end()) != float("inf") else None,
        }


def to_json_doc(alerts: list[Alert]) -> dict[str, Any]:
    """The `--alerts FILE` document."""
    return {"alerts": [a.to_dict() for a in alerts]}
