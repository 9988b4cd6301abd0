"""First-seen keys judged against the end of the learning period, which for a capture file is only known at
the end: keys first seen after it become alerts in `Detector.alerts()`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medsentry.detect.engine import AlertStore
from medsentry.detect.state import Lru


@dataclass(slots=True)
class Seen:
    first: float
    last: float
    count: int = 1
    attacker: dict[str, str | None] = field(default_factory=dict)
    victims: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] | None = None
    explanation: str = ""
    rule: str = ""
    group: Any = None
    port: int | None = None
    device_class_key: Any = None  # what a device of the same class having learned makes normal

    # Written by hand, as `Observation.__init__`: a dataclass's generated one stays interpreted under mypyc
    # (with its default factories' lambdas, ≈ 2 us a key; a capture's baseline makes tens of thousands).
    def __init__(
        self,
        first: float,
        last: float,
        count: int = 1,
        attacker: dict[str, str | None] | None = None,
        victims: list[dict[str, Any]] | None = None,
        evidence: dict[str, Any] | None = None,
        explanation: str = "",
        rule: str = "",
        group: Any = None,
        port: int | None = None,
        device_class_key: Any = None,
    ) -> None:
        self.first, self.last, self.count = first, last, count
        self.attacker = {} if attacker is None else attacker
        self.victims = [] if victims is None else victims
        self.evidence, self.explanation, self.rule = evidence, explanation, rule
        self.group, self.port, self.device_class_key = group, port, device_class_key


class Novelty:
    def __init__(self, cap: int, name: str, evictions: Counter[str]) -> None:
        self.keys: Lru[Any, Seen] = Lru(cap, name, evictions)

    def see(self, key: Any, ts: float, **info: Any) -> Seen:
        """Record key at ts; `info` (rule, attacker, ...) is kept from its first sighting."""
        if self.bump(key, ts):
            return self.keys[key]
        s = Seen(first=ts, last=ts, **info)
        self.keys.put(key, s)
        return s

    def bump(self, key: Any, ts: float) -> bool:
        """Update a known key (cheap: the common case); False when the key is new and needs `see`."""
        s = self.keys.get(key)
        if s is None:
            return False
        self.keys.move_to_end(key)
        s.count += 1
        if ts < s.first:
            s.first = ts
        elif ts > s.last:
            s.last = ts
        return True

    def learned(self, key: Any, end: float) -> bool:
        s = self.keys.get(key)
        return s is not None and s.first < end

    def emit(self, store: AlertStore, end: float, skip: Any = None) -> None:
        """Alerts for keys first seen at or after `end` (and not excused by `skip(seen)`)."""
        for s in list(self.keys.values()):
            if s.first < end or not s.rule or (skip is not None and skip(s)):
                continue
            for ts in (s.first, s.last) if s.last > s.first else (s.first,):
                store.hit(
                    s.rule,
                    ts,
                    s.attacker,
                    s.victims,
                    s.explanation,
                    evidence=s.evidence,
                    group=s.group,
                    port=s.port,
                )
