"""Learned fingerprints: device types taught by example captures, recognised by similarity.

`medsentry learn DIR` reads one folder per device type (folder name = label; captures at any depth; the
device is the MAC in `mac.txt` or `_iotdevice-mac.txt`, else the most frequent source; `class.txt` or
`classes.yaml` may name its taxonomy class) and keeps, per type, a few exemplar feature vectors and
their centroid. A device seen later is summarised the same way (`DeviceProfile`) and compared by cosine
similarity. Below `threshold` the answer is "unknown" rather than the nearest type, because a device
whose type was never taught still has a nearest type; types within `margin` of the best are a tie,
answered without a label but with the `candidates`.

Features are sparse strings "group|value" ("dhcp|prl=1,3,6,15", "flow|tcp:c:443",
"dns|dom=tplinkcloud.com"). Each group is normalised on its own so the many flow features of a chatty
device cannot drown its single DHCP fingerprint, then weighted. Identifiers that differ per unit (the
NIC part of the MAC and text derived from it, IPs, UUIDs, long hex serials) are replaced by
placeholders so one unit's capture teaches the type, not the unit; of the MAC only the OUI is used.

Model file (JSON, format "medsentry-learned/1", editable): threshold, margin, conflict_penalty,
group_weights, idf (per feature, over types) and default_idf (unseen features), and per label in
`types`: device_class, samples, identities (names and versions seen), unit_shapes (name shapes whose
digits vary between the type's units), centroid and exemplars (feature -> weight); `skipped` and
`warnings` report on the learning run. No unit's MAC, no HTTP path beyond its first segment and no MQTT
topic beyond its second level is kept: deeper ones may identify a patient.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from medsentry.observe import Observation

FORMAT: Final = "medsentry-learned/1"
DEFAULT_THRESHOLD: Final = 0.75  # from IoT Sentinel (docs/accuracy.md): taught types pass, most untaught fail
MAX_EXEMPLARS: Final = 12  # per type: enough for setup variants, small enough to keep the file readable
_MAX_PER_GROUP: Final = 256  # distinct features kept per group in one profile
_MAX_PEERS: Final = 512
_HIGH_PORT: Final = 10000
_DUPLICATE: Final = 0.999  # exemplars at least this similar to a kept one add nothing
_CAPTURE_SUFFIXES: Final = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz")
_MAC_FILES: Final = ("mac.txt", "_iotdevice-mac.txt")

# Relative weight of each feature group in the final vector. Application identities (DHCP, DNS names,
# TLS and HTTP fingerprints) describe firmware; flows and sizes describe behaviour and vary with setup.
GROUP_WEIGHTS: dict[str, float] = {
    "oui": 0.8,
    "kind": 0.7,
    "arp": 0.4,
    "ip": 0.6,
    "flow": 0.8,
    "dst": 0.5,
    "size": 0.5,
    "peers": 0.3,
    "dhcp": 1.2,
    "dns": 1.0,
    "mdns": 1.0,
    "ssdp": 1.0,
    "http": 1.0,
    "tls": 1.0,
    "id": 1.0,
}

_IPV4: Final = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_REVERSE: Final = re.compile(r"^[0-9a-f.]+\.(ip6\.arpa|in-addr\.arpa)$")
_UUID: Final = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_LONGHEX: Final = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b")
_DIGITS: Final = re.compile(r"\d+")
# Second-level labels under which registrations happen one level deeper (co.uk, com.cn, ...).
_SLD: Final = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go"})

# Features in which a device names its own model or software. A device that names one model cannot be
# a type that always named another: a disagreement here vetoes a match that the bulk of the traffic
# (shared by every product of one firmware family) would otherwise carry. Version strings are compared
# by their digit-free shape, so a firmware update is no disagreement. Names are compared exactly: their
# digits may name the model (HS100 / HS110, DCH-S150 / DCH-S220) or the unit (icu-bed12-mon, an asset
# tag), and only a type taught with several units shows which; where its samples carry several values
# of one shape, that shape matches any digits.
NAME_KEYS: Final = ("dhcp|host=", "dhcp|fqdn=", "mdns|inst=")
VERSION_KEYS: Final = ("http|ua=", "http|server=", "ssdp|notify:server=", "ssdp|response:server=")
IDENTITY_KEYS: Final = NAME_KEYS + VERSION_KEYS
CONFLICT_PENALTY: Final = 0.8  # score factor per disagreeing identity
AMBIGUOUS_MARGIN: Final = 0.01  # types this close to the best are indistinguishable: no label

# Identity-bearing fields of the other dissectors (see docs/observations.md).
_ID_FIELDS: Final = (
    "banner",
    "server",
    "user_agent",
    "system_name",
    "system_description",
    "platform",
    "software_version",
    "sys_descr",
    "sys_object_id",
    "client_id",
    "calling_ae",
    "called_ae",
    "implementation_class_uid",
    "implementation_version_name",
    "sending_application",
    "sending_facility",
    "message_type",
    "app_name",
    "hostname",
    "protocol_version",
    "name",
)


def registered_domain(name: str) -> str:
    """example.co.uk from a.b.example.co.uk: an approximation of the public suffix list that holds for
    the vendor clouds devices call."""
    labels = [x for x in name.lower().rstrip(".").split(".") if x]
    if len(labels) >= 3 and labels[-2] in _SLD and len(labels[-1]) == 2:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


class DeviceProfile:
    """A bounded summary of one device's traffic as feature counts.

    Pass the device's `mac` when known: then flows are seen from the device's side (client or server)
    and messages to it are told from messages by it. Without it every observation is taken as the
    device's own and every flow as one it opened.
    """

    def __init__(self, mac: str | None = None) -> None:
        self.mac = mac.lower() if mac else None
        self.groups: dict[str, Counter[str]] = {}
        self.observations = 0
        self.skipped = 0
        self._peers: set[str] = set()
        self._unit_mac: str | None = None  # the sender's MAC when none was given, to mask it in text

    # -- accumulation --------------------------------------------------------------------------------
    def add(self, obs: Observation) -> None:
        mine = self.mac is None or obs.src_mac == self.mac
        toward = self.mac is not None and obs.dst_mac == self.mac
        if not (mine or toward):
            return
        self.observations += 1
        if obs.kind == "flow":
            self._flow(obs, client=mine)
            return
        if not mine:
            return  # what others send the device says more about them than about it
        if self.mac is None and obs.src_mac:
            self._unit_mac = obs.src_mac
        if obs.src_mac:
            self._put("oui", obs.src_mac[:8])
        self._put("kind", obs.kind)
        handler = _HANDLERS.get(obs.protocol)
        try:
            if handler is not None:
                handler(self, obs, obs.fields)
            else:
                self._identities(obs.kind, obs.fields)
        except (AttributeError, TypeError, ValueError, KeyError):
            self.skipped += 1  # fields not shaped as docs/observations.md says: counted, not fatal

    def _put(self, group: str, value: str, n: int = 1) -> None:
        c = self.groups.get(group)
        if c is None:
            c = self.groups[group] = Counter()
        c[value] += n
        if len(c) > _MAX_PER_GROUP:
            # keep the most frequent: rare one-off values (serials, random ports) are the noise
            for key, _ in c.most_common()[_MAX_PER_GROUP * 3 // 4 :]:
                del c[key]

    def _shape(self, value: Any) -> str:
        """Lower-case text with per-unit identifiers replaced by placeholders."""
        s = str(value).strip().lower()[:120]
        mac = self.mac or self._unit_mac
        if mac:
            s = s.replace(mac, "<mac>").replace(mac.replace(":", "-"), "<mac>")
            hexmac = mac.replace(":", "")
            for n in (12, 8, 6, 4):  # hostnames carry the MAC's tail: GainSpanca9152, esp_06d902
                s = s.replace(hexmac[-n:], "<mac>")
        s = _REVERSE.sub(r"<addr>.\1", s)  # reverse names spell the address, often MAC-derived (EUI-64)
        s = _UUID.sub("<uuid>", s)
        s = _IPV4.sub("<ip>", s)
        return _LONGHEX.sub("<hex>", s)

    def _text(self, group: str, key: str, value: Any) -> None:
        """Both the exact (unit-neutral) value and its digit-free shape: the first tells HS100 from
        HS110, the second still matches after a firmware update."""
        if value is None or value == "" or value == []:
            return
        s = self._shape(value)
        self._put(group, f"{key}={s}")
        shape = _DIGITS.sub("#", s)
        if shape != s:
            self._put(group, f"{key}~{shape}")

    def _flow(self, obs: Observation, client: bool) -> None:
        f = obs.fields
        transport = f.get("transport") or obs.transport or "?"
        role = "c" if client else "s"
        port = _port(f.get("server_port"))
        self._put("flow", f"{transport}:{role}:{port}")
        if f.get("app"):
            self._put("flow", f"app:{f['app']}:{role}")
        if f.get("tcp_state"):
            self._put("flow", f"state:{f['tcp_state']}")
        peer = f.get("server_ip") if client else f.get("client_ip")
        if peer:
            self._put("dst", f"{transport}:{role}:{_ip_class(str(peer))}")
            if len(self._peers) < _MAX_PEERS:
                self._peers.add(str(peer))
        out_p, out_b = ("packets_c2s", "bytes_c2s") if client else ("packets_s2c", "bytes_s2c")
        in_p, in_b = ("packets_s2c", "bytes_s2c") if client else ("packets_c2s", "bytes_c2s")
        for d, pk, by in (("o", out_p, out_b), ("i", in_p, in_b)):
            packets, size = int(f.get(pk) or 0), int(f.get(by) or 0)
            if packets:
                self._put("size", f"{transport}:{port}:{d}:{_log2(size / packets)}")
                self._put("size", f"{transport}:{d}:n{_log2(packets)}")

    def _identities(self, kind: str, f: Mapping[str, Any]) -> None:
        for key in _ID_FIELDS:
            if key in f and isinstance(f[key], (str, int)):
                self._text("id", f"{kind}.{key}", f[key])
        topic = f.get("topic")
        if isinstance(topic, str):
            # the first levels name the application; deeper ones may carry bed or patient identifiers
            levels = topic.split("/")
            self._put(
                "id", f"{kind}.topic~{_DIGITS.sub('#', '/'.join(levels[:2]).lower()[:60])}:{len(levels)}"
            )

    # -- the vector ----------------------------------------------------------------------------------
    def features(self) -> dict[str, float]:
        """Feature -> raw weight (1 + ln count), before IDF and group normalisation."""
        out: dict[str, float] = {}
        for group, counts in self.groups.items():
            for key, n in counts.items():
                out[f"{group}|{key}"] = 1.0 + math.log(n)
        if self._peers:
            out[f"peers|n{_log2(len(self._peers))}"] = 1.0
        return out

    def merge(self, other: DeviceProfile) -> None:
        for group, counts in other.groups.items():
            for key, n in counts.items():
                self._put(group, key, n)
        self.observations += other.observations
        self._peers.update(list(other._peers)[: max(0, _MAX_PEERS - len(self._peers))])


def _port(port: Any) -> str:
    """High ports are mostly ephemeral or per-session (relays, P2P): one bucket, or every session would
    add a feature of its own."""
    return str(port) if isinstance(port, int) and port < _HIGH_PORT else "hi"


def _log2(x: float) -> int:
    return int(math.log2(x)) if x >= 1 else 0


def _ip_class(ip: str) -> str:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return "?"
    if a.is_multicast:
        return "mcast"
    if str(a) in ("255.255.255.255",) or str(a).endswith(".255"):
        return "bcast"
    if a.is_link_local:
        return "link"
    if a.is_private or a.is_loopback:
        return "local"
    return "global"


# -- per-protocol feature extraction -------------------------------------------------------------------
def _dhcp(p: DeviceProfile, obs: Observation, f: Mapping[str, Any]) -> None:
    kind = obs.kind
    if f.get("op") == 2:
        return  # a server's reply
    if f.get("param_request_list"):
        p._put("dhcp", "prl=" + ",".join(map(str, f["param_request_list"])))
    if f.get("options"):
        p._put("dhcp", f"opts:{kind}=" + ",".join(map(str, f["options"])))
    if f.get("max_msg_size"):
        p._put("dhcp", f"mms={f['max_msg_size']}")
    cid = f.get("client_id")
    if isinstance(cid, str):
        # type byte and length only: the rest is usually the MAC
        p._put("dhcp", f"cid={cid[:2]}:{len(cid)}")
    p._text("dhcp", "vc", f.get("vendor_class"))
    p._text("dhcp", "host", f.get("hostname"))
    p._text("dhcp", "fqdn", f.get("fqdn"))


def _dns(p: DeviceProfile, obs: Observation, f: Mapping[str, Any]) -> None:
    if obs.kind == "mdns.service":
        p._put("mdns", f"svc={f.get('service')}")
        p._text("mdns", "inst", f.get("instance"))
        p._text("mdns", "target", f.get("target_host"))
        txt = f.get("txt")
        if isinstance(txt, dict):
            for k in list(txt)[:32]:
                p._put("mdns", f"txt:{f.get('service')}={str(k).lower()}")
        return
    mdns = bool(f.get("mdns"))
    group = "mdns" if mdns or f.get("llmnr") else "dns"
    if obs.kind == "dns.query":
        for q in f.get("queries") or []:
            name = str(q.get("name", "")).lower()
            if not name:
                continue
            if group == "dns":
                p._put("dns", f"dom={registered_domain(name)}")
            p._text(group, "q", name)
            p._put(group, f"qtype={q.get('type')}")
    else:  # the device answering: mDNS/LLMNR responder records
        for a in (f.get("answers") or [])[:32]:
            p._text(group, f"ans:{a.get('type')}", a.get("name"))


def _http(p: DeviceProfile, obs: Observation, f: Mapping[str, Any]) -> None:
    if obs.kind.endswith("request"):
        host = f.get("host")
        if host:
            p._text("http", "host", host)
            if not _IPV4.search(str(host)):
                p._put("http", f"dom={registered_domain(str(host).split(':')[0])}")
        p._text("http", "ua", f.get("user_agent"))
        path = str(f.get("path") or "").split("?")[0]
        # only the first segment and the depth: deeper segments may name a patient (/Patient/<id>)
        segments = [x for x in path.split("/") if x]
        first = _DIGITS.sub("#", segments[0].lower()[:40]) if segments else ""
        p._put("http", f"path:{f.get('method')}=/{first}:{min(len(segments), 8)}")
        for k in (f.get("query_keys") or [])[:16]:
            p._put("http", f"qk={k}")
    else:
        p._text("http", "server", f.get("server"))
        p._put("http", f"status={f.get('status')}")
        p._text("http", "ctype", f.get("content_type"))
        p._text("http", "auth", f.get("www_authenticate"))


def _tls(p: DeviceProfile, obs: Observation, f: Mapping[str, Any]) -> None:
    if obs.kind == "tls.client_hello":
        for key in ("ja3", "ja4"):
            if f.get(key):
                p._put("tls", f"{key}={f[key]}")
        sni = f.get("sni")
        if sni:
            p._put("tls", f"dom={registered_domain(str(sni))}")
            p._text("tls", "sni", sni)
    elif obs.kind == "tls.server_hello":
        if f.get("ja3s"):
            p._put("tls", f"ja3s={f['ja3s']}")
    elif obs.kind == "tls.certificate":
        p._text("tls", "subject", f.get("subject"))
        p._text("tls", "issuer", f.get("issuer"))
        p._put("tls", f"selfsigned={bool(f.get('self_signed'))}")


def _ssdp(p: DeviceProfile, obs: Observation, f: Mapping[str, Any]) -> None:
    kind = obs.kind.split(".")[-1]
    for key in ("server", "user_agent", "nt", "st"):
        p._text("ssdp", f"{kind}:{key}", f.get(key))
    loc = f.get("location")
    if loc:
        # the path names the description document, the host part is the unit's address
        p._text("ssdp", "loc", re.sub(r"^\w+://[^/]*", "", str(loc)))
    usn = f.get("usn")
    if usn:
        p._text("ssdp", "usn", str(usn).split("::")[-1])


def _arp(p: DeviceProfile, obs: Observation, f: Mapping[str, Any]) -> None:
    probe = f.get("sender_ip") == "0.0.0.0"
    p._put("arp", f"{obs.kind}:probe={probe}:grat={bool(f.get('gratuitous'))}")


def _ip(p: DeviceProfile, obs: Observation, f: Mapping[str, Any]) -> None:
    if "ttl" in f:
        p._put("ip", f"ttl={f['ttl']}")
    if "tcp_window" in f:
        p._put("ip", f"win={f['tcp_window']}")
    if f.get("tcp_options"):
        p._put("ip", f"tcpopt={f['tcp_options']}")


_HANDLERS: Final = {
    "dhcp": _dhcp, "dns": _dns, "http": _http, "tls": _tls, "ssdp": _ssdp, "arp": _arp, "ip": _ip
}


# -- vectors -------------------------------------------------------------------------------------------
def _vector(
    raw: Mapping[str, float],
    idf: Mapping[str, float],
    default_idf: float,
    weights: Mapping[str, float] = GROUP_WEIGHTS,
) -> dict[str, float]:
    """IDF-weighted, normalised per group, group-weighted, unit length."""
    groups: dict[str, dict[str, float]] = {}
    for feat, w in raw.items():
        groups.setdefault(feat.split("|", 1)[0], {})[feat] = w * idf.get(feat, default_idf)
    out: dict[str, float] = {}
    for group, feats in groups.items():
        norm = math.sqrt(sum(v * v for v in feats.values()))
        if norm <= 0:
            continue
        gw = weights.get(group, 0.5) / norm
        for feat, v in feats.items():
            out[feat] = v * gw
    total = math.sqrt(sum(v * v for v in out.values()))
    return {k: v / total for k, v in out.items()} if total > 0 else {}


def _cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(k, 0.0) for k, v in a.items())


def _rounded(v: Mapping[str, float]) -> dict[str, float]:
    return {k: round(x, 5) for k, x in sorted(v.items()) if abs(x) >= 1e-5}


def learn_profiles(
    samples: Mapping[str, list[DeviceProfile]],
    device_classes: Mapping[str, str | None] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    """The model from labelled profiles (one profile per capture, several captures per label)."""
    raws = {label: [p.features() for p in profs if p.observations] for label, profs in samples.items()}
    raws = {label: r for label, r in raws.items() if r}
    n_types = len(raws)
    # document frequency over types: a feature every type shows (an ARP request) separates nothing
    df: Counter[str] = Counter()
    for r in raws.values():
        df.update({f for sample in r for f in sample})
    idf = {f: math.log((1 + n_types) / (1 + n)) + 1.0 for f, n in df.items()}
    default_idf = math.log(1 + n_types) + 1.0
    types: dict[str, Any] = {}
    for label, r in sorted(raws.items()):
        vecs = [_vector(x, idf, default_idf) for x in r]
        centroid: dict[str, float] = {}
        for v in vecs:
            for feat, w in v.items():
                centroid[feat] = centroid.get(feat, 0.0) + w
        norm = math.sqrt(sum(x * x for x in centroid.values())) or 1.0
        types[label] = {
            "device_class": (device_classes or {}).get(label),
            "samples": len(vecs),
            "identities": (ids := _identities(f for sample in r for f in sample)),
            "unit_shapes": _unit_shapes(ids),
            "centroid": _rounded({k: x / norm for k, x in centroid.items()}),
            "exemplars": [_rounded(v) for v in _spread(vecs, MAX_EXEMPLARS)],
        }
    return {
        "format": FORMAT,
        "labels": sorted(types),
        "threshold": threshold,
        "margin": AMBIGUOUS_MARGIN,
        "conflict_penalty": CONFLICT_PENALTY,
        "group_weights": dict(GROUP_WEIGHTS),
        "default_idf": round(default_idf, 5),
        "idf": {f: round(x, 5) for f, x in sorted(idf.items())},
        "types": types,
    }


def _identities(features: Iterable[str]) -> dict[str, list[str]]:
    """IDENTITY_KEYS prefix -> the exact values seen, from feature names."""
    out: dict[str, set[str]] = {}
    for f in features:
        for key in IDENTITY_KEYS:
            if f.startswith(key):
                out.setdefault(key, set()).add(f[len(key) :])
    return {k: sorted(v) for k, v in sorted(out.items())}


def _shapes(values: Iterable[str]) -> set[str]:
    return {_DIGITS.sub("#", v) for v in values}


def _unit_shapes(identities: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Name key -> the shapes the type's samples fill with different digits (bed numbers, serials)."""
    out = {}
    for key, values in identities.items():
        seen = Counter(_DIGITS.sub("#", v) for v in values)
        varying = sorted(shape for shape, n in seen.items() if n > 1)
        if varying:
            out[key] = varying
    return out


def _disagree(key: str, mine: list[str], theirs: list[str], unit_shapes: Iterable[str]) -> bool:
    common = _shapes(mine) & _shapes(theirs)
    if not common:
        return True
    if key in VERSION_KEYS or common & set(unit_shapes):
        return False
    return not set(mine) & set(theirs)


def _spread(vecs: list[dict[str, float]], k: int) -> list[dict[str, float]]:
    """Up to k vectors that cover the set, without near-duplicates: greedy farthest-point selection."""
    chosen = [vecs[0]]
    best = [_cosine(v, vecs[0]) for v in vecs]
    while len(chosen) < k:
        i = min(range(len(vecs)), key=best.__getitem__)
        if best[i] >= _DUPLICATE:
            break
        chosen.append(vecs[i])
        best = [max(b, _cosine(v, vecs[i])) for b, v in zip(best, vecs, strict=True)]
    return chosen


# -- the model -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Match:
    label: str | None  # None: nothing learned is similar enough, or several types are equally similar
    score: float  # similarity to the nearest learned type (after identity vetoes), 0..1
    device_class: str | None  # also set without a label when every equally near type has this class
    candidates: tuple[str, ...] = ()  # the nearest type(s), even when no label was given


class LearnedModel:
    def __init__(self, model: Mapping[str, Any]) -> None:
        if model.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} fingerprint file (format {model.get('format')!r})")
        self.threshold = float(model.get("threshold", DEFAULT_THRESHOLD))
        self.margin = float(model.get("margin", AMBIGUOUS_MARGIN))
        self.conflict_penalty = float(model.get("conflict_penalty", CONFLICT_PENALTY))
        self.idf: dict[str, float] = dict(model.get("idf", {}))
        self.default_idf = float(model.get("default_idf", 1.0))
        self.types: dict[str, Mapping[str, Any]] = dict(model.get("types", {}))
        # the weights the exemplars were made with, so a profile is weighed the same way
        self.group_weights: dict[str, float] = dict(model.get("group_weights", GROUP_WEIGHTS))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LearnedModel:
        return cls(d)

    @classmethod
    def load(cls, path: Path) -> LearnedModel:
        return cls(json.loads(Path(path).read_text("utf-8")))

    @property
    def labels(self) -> list[str]:
        return sorted(self.types)

    def scores(self, profile: DeviceProfile) -> dict[str, float]:
        """Similarity to every learned type: the best of its exemplars and its centroid, reduced for each
        identity (model name, user agent) the profile states differently from every sample of the type."""
        raw = profile.features()
        v = _vector(raw, self.idf, self.default_idf, self.group_weights)
        mine = _identities(raw)
        out = {}
        for label, t in self.types.items():
            sims = [_cosine(v, e) for e in t.get("exemplars", [])]
            sims.append(_cosine(v, t.get("centroid", {})))
            theirs, units = t.get("identities", {}), t.get("unit_shapes", {})
            conflicts = sum(
                1
                for k, vals in mine.items()
                if k in theirs and _disagree(k, vals, theirs[k], units.get(k, ()))
            )
            out[label] = max(sims) * self.conflict_penalty**conflicts
        return out

    def classify(self, profile: DeviceProfile) -> Match:
        scores = self.scores(profile)
        if not scores:
            return Match(None, 0.0, None)
        ranked = sorted(scores.items(), key=lambda x: (-x[1], x[0]))
        best = ranked[0][1]
        near = tuple(label for label, s in ranked if best - s < self.margin)
        score = round(best, 4)
        if best < self.threshold:
            return Match(None, score, None, near)
        classes = {self.types[label].get("device_class") for label in near}
        device_class = classes.pop() if len(classes) == 1 else None
        if len(near) > 1:
            return Match(None, score, device_class, near)
        return Match(near[0], score, device_class, near)


# -- learning from a directory -------------------------------------------------------------------------
def _captures(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(_CAPTURE_SUFFIXES))


def _named_mac(folder: Path) -> str | None:
    for name in _MAC_FILES:
        f = folder / name
        if f.is_file():
            m = re.search(r"([0-9a-f]{2}(?:[:-][0-9a-f]{2}){5})", f.read_text("utf-8", "replace").lower())
            if m:
                return m.group(1).replace("-", ":")
    return None


def _named_class(root: Path, folder: Path) -> str | None:
    """class.txt (one word) or classes.yaml ({device_class: x} or a bare name) in the type folder, or a
    {label: class} classes.yaml in the root."""
    txt = folder / "class.txt"
    if txt.is_file():
        return txt.read_text("utf-8").strip() or None
    for doc_path, key in ((folder / "classes.yaml", None), (root / "classes.yaml", folder.name)):
        if not doc_path.is_file():
            continue
        import yaml  # here: only `learn` reads these, and every analysis imports this module

        try:
            doc = yaml.safe_load(doc_path.read_text("utf-8"))
        except yaml.YAMLError:
            continue
        if key is not None:
            doc = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(doc, dict):
            doc = doc.get("device_class") or doc.get("class")
        if isinstance(doc, str) and doc.strip():
            return doc.strip()
    return None


def device_mac(observations: Iterable[Observation]) -> str | None:
    """The MAC most often seen as a source (group addresses excluded)."""
    c = Counter(o.src_mac for o in observations if o.src_mac and not int(o.src_mac[:2], 16) & 1)
    return c.most_common(1)[0][0] if c else None


def profile_capture(path: Path, mac: str | None = None) -> DeviceProfile:
    from medsentry.pipeline import observe_files

    obs, _ = observe_files([path])
    return profile_observations(obs, mac)


def profile_observations(obs: list[Observation], mac: str | None = None) -> DeviceProfile:
    mac = (mac or device_mac(obs) or "").lower() or None
    profile = DeviceProfile(mac)
    for o in obs:
        profile.add(o)
    return profile


def learn_directory(root: Path, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """One type per sub-folder of root; each capture inside is one example of it."""
    from medsentry.identify.taxonomy import classes

    root = Path(root)
    known_classes = classes()
    samples: dict[str, list[DeviceProfile]] = {}
    device_classes: dict[str, str | None] = {}
    skipped: list[str] = []
    warnings: list[str] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        mac = _named_mac(folder)
        profiles = []
        for cap in _captures(folder):
            profile = profile_capture(cap, mac)
            if profile.observations:
                profiles.append(profile)
            else:
                skipped.append(str(cap))
        if not profiles:
            continue
        samples[folder.name] = profiles
        cls = _named_class(root, folder)
        if cls is not None and cls not in known_classes:
            warnings.append(f"{folder.name}: device class {cls!r} is not in the taxonomy, ignored")
        device_classes[folder.name] = cls if cls in known_classes else None
    model = learn_profiles(samples, device_classes, threshold)
    model["skipped"] = skipped  # captures without a single observation of the device
    model["warnings"] = warnings
    return model
