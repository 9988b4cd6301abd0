"""Detection configuration: `data/detect.yaml` merged with an optional user file (see its comments)."""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from medsentry.observe import ipv4_number, ipv4_ranges
from medsentry.yamlload import safe_load

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(ValueError):
    pass


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def default_document() -> dict[str, Any]:
    return safe_load((files("medsentry") / "data" / "detect.yaml").read_text("utf-8"))


@dataclass
class Config:
    doc: dict[str, Any]
    networks: list[Network] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            self.networks = [ipaddress.ip_network(n, strict=False) for n in self.doc["address_space"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"address_space: {exc}") from exc
        self._v4_ranges = ipv4_ranges(self.networks)  # `is_local`'s fast path
        self._local_cache: dict[str, bool] = {}
        self._enabled: dict[str, bool] = {}

    def __getitem__(self, section: str) -> Any:
        return self.doc[section]

    def get(self, section: str, key: str) -> Any:
        return self.doc[section][key]

    def is_local(self, ip: str | None) -> bool:
        """Inside the declared address space (or not routable at all): not a place PHI may leak to."""
        if ip is None:
            return True
        hit = self._local_cache.get(ip)
        if hit is not None:
            return hit
        n = ipv4_number(ip)
        if n is not None:
            # multicast 224/4, loopback 127/8, link-local 169.254/16, unspecified, the limited broadcast
            local = (
                n >> 28 == 0xE
                or n >> 24 == 127
                or n >> 16 == 0xA9FE
                or n == 0
                or n == 0xFFFFFFFF
                or any(lo <= n <= hi for lo, hi in self._v4_ranges)
            )
        else:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return True
            local = (
                addr.is_multicast
                or addr.is_loopback
                or addr.is_link_local
                or addr.is_unspecified
                or str(addr) == "255.255.255.255"
                or any(addr in n for n in self.networks)
            )
        if len(self._local_cache) > 65536:  # a flood of addresses must not grow the cache
            self._local_cache.clear()
        self._local_cache[ip] = local
        return local

    def enabled(self, rule: str) -> bool:
        hit = self._enabled.get(rule)
        if hit is None:
            hit = self._enabled[rule] = not any(_rule_match(d, rule) for d in self.doc.get("disabled") or [])
        return hit

    def severity(self, rule: str, default: str) -> str:
        return (self.doc.get("severity") or {}).get(rule, default)


def _rule_match(pattern: str, rule: str) -> bool:
    return rule == pattern or (pattern.endswith(".") and rule.startswith(pattern))


def accepted(
    accept: list[dict[str, Any]],
    rule: str,
    attacker: dict[str, str | None],
    victims: list[dict[str, Any]],
    port: int | None = None,
) -> bool:
    """True when an "accept as normal" entry covers this alert (every key it gives must match)."""
    ids = {v for v in attacker.values() if v}
    vids = {v for victim in victims for k, v in victim.items() if k in ("ip", "mac") and v}
    for entry in accept:
        if "rule" in entry and not _rule_match(str(entry["rule"]), rule):
            continue
        if "attacker" in entry and str(entry["attacker"]).lower() not in ids:
            continue
        if "victim" in entry and str(entry["victim"]).lower() not in vids:
            continue
        if "port" in entry and entry["port"] != port:
            continue
        return True
    return False


def accept_entry(alert: dict[str, Any]) -> dict[str, Any]:
    """The `accept:` entry that makes an alert (as in `Alert.to_dict()`) count as normal from now on."""
    entry: dict[str, Any] = {"rule": alert["rule"]}
    att = alert.get("attacker") or {}
    if att.get("ip") or att.get("mac"):
        entry["attacker"] = att.get("ip") or att.get("mac")
    victims = alert.get("victims") or []
    if len(victims) == 1 and (victims[0].get("ip") or victims[0].get("mac")):
        entry["victim"] = victims[0].get("ip") or victims[0].get("mac")
    return entry


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The default configuration, with a user YAML file and then `overrides` merged over it."""
    doc = default_document()
    if path is not None:
        import yaml  # here, as below: a run without these files never imports it (yamlload)

        try:
            user = yaml.safe_load(Path(path).read_text("utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(user, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        doc = _merge(doc, user)
    if overrides:
        doc = _merge(doc, overrides)
    for entry in doc.get("accept") or []:
        if not isinstance(entry, dict):
            raise ConfigError(f"accept: entries are mappings, got {entry!r}")
        for key in ("attacker", "victim"):
            if key in entry:
                entry[key] = str(entry[key]).lower()
    return Config(doc)


def read_accepted(path: Path) -> list[dict[str, Any]]:
    """The "accept as normal" entries recorded by `medsentry alerts accept` (none if the file is absent)."""
    if not path.exists():
        return []
    import yaml

    try:
        entries = yaml.safe_load(path.read_text("utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{path}: a list of accept entries (mappings) is expected")
    return entries


def add_accepted(path: Path, entry: dict[str, Any]) -> bool:
    """Record one entry (False if it is there already). This file is medsentry's own, apart from the user's
    rules file, so rewriting it never loses a hand-written comment."""
    entries = read_accepted(path)
    if entry in entries:
        return False
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# 'Accept as normal' entries from `medsentry alerts accept` (the form of accept: in detect.yaml)\n"
    )
    path.write_text(header + yaml.safe_dump([*entries, entry], sort_keys=True), "utf-8")
    return True
