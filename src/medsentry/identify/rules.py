"""Fingerprint rules: human-editable data (data/fingerprints/*.yaml) mapping observations to attributes.

A rule file is a YAML document `{rules: [rule, ...]}`; a rule:

    id: dhcp.vc.intellivue            unique, shown in evidence
    kind: [dhcp.discover, dhcp.request]   observation kinds; "dhcp.*" matches a kind prefix
    about: src                        whose attribute it is: the sender (src, default) or receiver (dst)
    field: vendor_class               an Observation field (or sport, dport, transport); a list of
                                      names: the first one that matches
    match: '^Philips IntelliVue (?P<model>MX\\d+)'   regex, searched case-insensitively
    in: [...]                         alternatively: the value equals one of these
    range: [1, 64]                    alternatively: a number in [lo, hi]
    when: {dport: [1883, 8883]}       further conditions: field or address attribute -> allowed values
                                      (null in the list also allows an absent field)
    peers: 3                          counts only once the device matched it with that many distinct peers
    set: {vendor: Philips, model: 'IntelliVue {model}', device_class: patient_monitor}
    weight: 0.9                       how strongly one firing supports each value (0..1)
    weights: {device_class: 0.6}      per-attribute override of weight
    why: ...                          the justification, for the reader

Matching text: a string as is; a list of numbers joined with "," ("1,3,6,15"); a list of strings or a
dict ("key=value") element by element, the first matching element giving the groups; a list of dicts
as the "key=value" items of each. Without match / in / range a rule fires when the field is present
(not empty, not false). `in` compares
the value or any list element as text. `set` values are templates over the regex's named groups; an
attribute whose template names a group that did not participate is not set: nothing is guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

from medsentry.observe import Observation
from medsentry.yamlload import safe_load

ATTRIBUTES: Final = frozenset({"device_class", "vendor", "model", "firmware", "os"})
_ADDRESS_ATTRS: Final = frozenset({"sport", "dport", "transport"})
_TEMPLATE_FIELD: Final = re.compile(r"{(\w+)}")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kinds: tuple[str, ...]
    fields: tuple[str, ...]
    set: dict[str, str]
    weights: dict[str, float]
    about: str = "src"
    pattern: re.Pattern[str] | None = None
    values: frozenset[str] | None = None
    range: tuple[float, float] | None = None
    when: dict[str, frozenset[str | None]] = field(default_factory=dict)
    peers: int = 0
    why: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        unknown = set(d) - {"id", "kind", "about", "field", "match", "in", "range", "when", "peers", "set",
                            "weight", "weights", "why"}
        if unknown:
            raise ValueError(f"rule {d.get('id')}: unknown keys {sorted(unknown)}")
        if not set(d["set"]) <= ATTRIBUTES:
            raise ValueError(f"rule {d['id']}: can only set {sorted(ATTRIBUTES)}")
        if sum(k in d for k in ("match", "in", "range")) > 1:
            raise ValueError(f"rule {d['id']}: use one of match / in / range")
        if d.get("about", "src") not in ("src", "dst"):
            raise ValueError(f"rule {d['id']}: about must be src or dst")
        kinds = d["kind"] if isinstance(d["kind"], list) else [d["kind"]]
        names = d["field"] if isinstance(d["field"], list) else [d["field"]]
        pattern = re.compile(d["match"], re.IGNORECASE) if "match" in d else None
        if pattern is not None:
            for template in d["set"].values():
                missing = set(_TEMPLATE_FIELD.findall(str(template))) - set(pattern.groupindex)
                if missing:
                    raise ValueError(f"rule {d['id']}: template names unknown groups {sorted(missing)}")
        weight = float(d.get("weight", 0.5))
        weights = {a: float(d.get("weights", {}).get(a, weight)) for a in d["set"]}
        if not all(0.0 < w <= 1.0 for w in weights.values()):
            raise ValueError(f"rule {d['id']}: weights must be in (0, 1]")
        return cls(
            id=d["id"],
            kinds=tuple(kinds),
            fields=tuple(names),
            set={a: str(v) for a, v in d["set"].items()},
            weights=weights,
            about=d.get("about", "src"),
            pattern=pattern,
            values=frozenset(str(v) for v in d["in"]) if "in" in d else None,
            range=(float(d["range"][0]), float(d["range"][1])) if "range" in d else None,
            when={  # compared as `apply` sees values: booleans as "true"/"false"
                k: frozenset(None if v is None else _scalar(v) for v in vs)
                for k, vs in d.get("when", {}).items()
            },
            peers=int(d.get("peers", 0)),
            why=d.get("why", ""),
        )

    def _match(self, value: Any) -> tuple[dict[str, str | None], str] | None:
        if self.pattern is not None:
            for text in _texts(value):
                if m := self.pattern.search(text):
                    return m.groupdict(), text
            return None
        if self.values is not None:
            items = value if isinstance(value, list) else [value]
            hit = next((t for t in map(_scalar, items) if t in self.values), None)
            return None if hit is None else ({}, hit)
        if self.range is not None:
            ok = isinstance(value, (int, float)) and self.range[0] <= value <= self.range[1]
            return ({}, str(value)) if ok else None
        return {}, _scalar(value) if not isinstance(value, (list, dict)) else str(value)

    def apply(self, obs: Observation) -> tuple[dict[str, str], str] | None:
        """The attribute values this rule assigns for `obs`, and the matched text; None if it doesn't fire."""
        for name, allowed in self.when.items():
            value = _get(obs, name)
            if (None if value is None else _scalar(value)) not in allowed:
                return None
        for name in self.fields:
            value = _get(obs, name)
            if _present(value) and (hit := self._match(value)) is not None:
                break
        else:
            return None
        groups, matched = hit
        out = {}
        for attr, template in self.set.items():
            names = _TEMPLATE_FIELD.findall(template)
            if any(groups.get(n) is None for n in names):
                continue
            text = " ".join(_TEMPLATE_FIELD.sub(lambda m: str(groups[m.group(1)]), template).split())
            if text:
                out[attr] = text
        return (out, matched) if out else None


def _get(obs: Observation, name: str) -> Any:
    if name in _ADDRESS_ATTRS:
        return getattr(obs, name)
    return obs.fields.get(name)


def _present(v: Any) -> bool:
    return v is not None and v is not False and not (isinstance(v, (str, list, dict)) and not v)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, list):
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            yield ",".join(str(v) for v in value)
        else:
            for v in value:
                if isinstance(v, dict):
                    yield from (f"{k}={x}" for k, x in v.items())
                elif not isinstance(v, list):
                    yield _scalar(v)
    elif isinstance(value, dict):
        yield from (f"{k}={v}" for k, v in value.items())
    else:
        yield _scalar(value)


@dataclass
class Fingerprints:
    """A rule set, indexed by observation kind."""

    rules: list[Rule]
    _by_kind: dict[str, tuple[Rule, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, paths: Iterable[Path] | None = None) -> Fingerprints:
        """The packaged rule files (data/fingerprints/*.yaml), or the given ones."""
        if paths is None:
            return cls(list(_packaged()))
        return cls(_parse([Path(p).read_text("utf-8") for p in paths]))

    @cached_property
    def _prefixed(self) -> list[tuple[str, Rule]]:
        return [(k[:-1], r) for r in self.rules for k in r.kinds if k.endswith("*")]

    def for_kind(self, kind: str) -> tuple[Rule, ...]:
        rules = self._by_kind.get(kind)
        if rules is None:
            rules = tuple(r for r in self.rules if kind in r.kinds)
            rules += tuple(r for prefix, r in self._prefixed if kind.startswith(prefix))
            self._by_kind[kind] = rules
        return rules


def _parse(texts: list[str]) -> list[Rule]:
    rules = [Rule.from_dict(r) for text in texts for r in (safe_load(text) or {}).get("rules", [])]
    ids = [r.id for r in rules]
    if len(ids) != len(set(ids)):
        raise ValueError(f"duplicate rule ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    return rules


@cache
def _packaged() -> tuple[Rule, ...]:
    """Parsed once per process (rules are frozen): `analyze --workers` forks after the parent's
    identifier read them, so workers do not parse the YAML again."""
    folder = files("medsentry") / "data" / "fingerprints"
    return tuple(_parse([p.read_text("utf-8") for p in sorted(folder.iterdir(), key=lambda p: p.name)
                         if p.name.endswith(".yaml")]))
