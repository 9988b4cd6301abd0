"""Device identification: observations in, one `Device` record per device out, with evidence for each claim.

Streaming: `Identifier.add` is called once per observation and only updates small, bounded per-endpoint
state; `Identifier.devices` does the joining and deciding at the end (and may be called again later).
The result does not depend on the order observations arrive in (the pipeline emits a batch's in packet
order, but a flow's observation when it ends, and `--workers` shards each see some of them): every piece
of evidence keeps its earliest sighting, ties broken by its text; `shard_state`/`merge` add up
identifiers that saw disjoint parts of the traffic. Only where a bound below is reached can arrival
order still decide what is kept.

Anchoring. State is kept per endpoint = (MAC, IP) as seen in a frame. At the end each endpoint is
assigned to a device:
- a MAC names one device, with every IP that is its own: bound to it by ARP or DHCP (a lease first,
  else the first claimant: later ARP claims are spoofing), link-local, an IPv6 EUI-64 of the MAC, or,
  when the capture shows no binding, its only IPv4 address unless that address is outside the address
  space and its packets came through a router (their TTL below its usual initial value: a gateway
  carrying one remote host's traffic), and its IPv6 ones unless it routes (the same TTL rule for each);
- an IP that reaches us behind another MAC without being that MAC's own (traffic a router forwards) is
  a device of its own, anchored on the IP (`Device.mac` None); the router keeps only its own addresses;
- an IP bound by ARP/DHCP to another MAC belongs to that MAC's device.
An IP-anchored device outside the hospital's address space (`address_space`; by default the private
ranges) is a remote host — a cloud service, a web server — not part of the inventory: it is only counted
(`remote_hosts`). A MAC is on the sensor's own segment, so a MAC-anchored device is kept whatever its IPs.

Attributes. Fingerprint rules (data/fingerprints/*.yaml, `identify.rules`) turn observations into claims
"attribute = value, weight w"; the IEEE registry adds the MAC's vendor (not for locally administered,
i.e. randomised, MACs). Claims are deduplicated per (attribute, value, protocol, rule): the first
timestamp and a count are kept, so evidence stays bounded however long the capture. A value's score is
the noisy-OR of its claims' weights, 1 - prod(1 - w), taking the strongest claim per protocol (rules
on one protocol watch the same behaviour, so only independent sources reinforce); the best value wins.
Vendors are compared by corporate family (the most specific division name is reported); a model or
firmware claim that is part of a longer claimed value supports the longer one. The device class must
clearly beat the runner-up (`CLASS_MIN_MARGIN`; confidence = score - runner-up / 2), otherwise it is
"unknown": a weak or contradictory case is reported as unknown, never as a confident guess. With a
learned model (`identify.learn`) each device is also compared with the taught types: a confident match
sets `label`, and its class is used only where the rules gave none.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from medsentry.identify import oui
from medsentry.identify.device import Device, Evidence, Service
from medsentry.identify.rules import Fingerprints, Rule
from medsentry.identify.taxonomy import UNKNOWN, classes
from medsentry.observe import Observation, ipv4_number, ipv4_ranges

# Bounds per endpoint: a long capture or a hostile peer cannot grow the state without limit.
MAX_CLAIMS: Final = 128  # distinct (attribute, value, protocol, rule) claims
MAX_VALUES: Final = 8  # distinct values per attribute (the earliest stay)
MAX_SERVICES: Final = 64  # per role (offers / uses)
MAX_PEERS: Final = 256  # distinct peers remembered per service; beyond, their number is estimated (`_Peers`)
MAX_IDENTITY_VALUES: Final = 8
MAX_TEXT: Final = 96  # characters of an identity or a matched text kept
MAX_ENDPOINTS = 100_000  # overall (about 1 kB each); observations beyond are counted in `dropped`
MAX_NAMES: Final = 100_000  # DNS answers remembered (address -> names)
# The hospital's networks when the deployment names none: RFC 1918, the shared address space (RFC 6598),
# unique local IPv6; link-local addresses are always local. The same default as detection's
# `address_space` (data/detect.yaml), which a deployment sets for both (`analyze --rules FILE`).
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOCAL_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)

CLASS_MIN_SCORE: Final = 0.5  # the winning class's combined weight
CLASS_MIN_CONFIDENCE: Final = 0.4  # score - runner-up / 2: a strong runner-up lowers the confidence
CLASS_MIN_MARGIN: Final = 0.15  # a near tie between two classes means "don't know"
ATTR_MIN_SCORE: Final = 0.3  # vendor, model, firmware, OS
OUI_WEIGHT: Final = {24: 0.6, 28: 0.7, 36: 0.7}  # a 28/36-bit block is registered to a smaller company
ROUTER_WEIGHT: Final = 0.6  # forwarding traffic of several off-link addresses

# Hostname sources, most trusted first: what the device calls itself beats what others call it.
_HOSTNAME_SOURCES: Final = ("dhcp", "mdns", "nbns", "lldp", "cdp", "snmp", "syslog", "dhcp-server", "dns-ptr")
_DHCP_CLIENT: Final = frozenset(
    {"dhcp.discover", "dhcp.request", "dhcp.inform", "dhcp.decline", "dhcp.release"}
)
# The kinds `Identifier._facts` looks at (most observations are of none of them).
_FACT_KINDS: Final = _DHCP_CLIENT | frozenset({
    "cdp", "dhcp.ack", "dicom.associate_ac", "dicom.associate_rq", "dicom.command", "dns.response",
    "hl7.ack", "hl7.message", "http.request", "http.response", "lldp", "mdns.response", "mdns.service",
    "mqtt.connect", "nbdgm.host_announcement", "nbns.registration", "nbns.response", "rtsp.response",
    "service.seen", "smb.ntlm", "snmp.response", "syslog.message", "tls.certificate", "tls.client_hello",
})
_NEVER: Final = float("-inf")
_LATEST: Final = float("inf")
_NO_ADDRESS: Final = frozenset({"0.0.0.0", "255.255.255.255", "::"})
_ADDRESS: Final = frozenset({"sport", "dport", "transport"})  # rule fields read from the observation itself
_SCALARS: Final = frozenset({str, int, float, bool, type(None)})
_MAX_HITS: Final = 200_000  # remembered rule results (a few hundred bytes each)
# A rule as `Identifier` uses it: the rule, its single field, that field's `in` values (or None), the
# fields it reads.
_RuleUse = tuple[Rule, str, frozenset[str] | None, tuple[str, ...]]
_Claimed = tuple[tuple[str, str, str], ...]  # a rule hit's (attribute, value, value casefolded): `_claimed`


@dataclass(slots=True)
class _Claim:
    attribute: str
    value: str
    protocol: str
    detail: str
    ts: float | None
    weight: float
    count: int = 1

    # By hand: a dataclass's generated __init__ stays interpreted under mypyc (observe.FlowRecord).
    def __init__(self, attribute: str, value: str, protocol: str, detail: str, ts: float | None,
                 weight: float, count: int = 1) -> None:  # fmt: skip
        self.attribute, self.value, self.protocol, self.detail = attribute, value, protocol, detail
        self.ts, self.weight, self.count = ts, weight, count

    def sooner(self, ts: float | None, protocol: str, detail: str, value: str) -> bool:
        """Take this sighting as the evidence if it came earlier. Equal times (two observations of one
        packet) go by their text, so the evidence never depends on the order observations arrive in."""
        if ts is None or (self.ts is not None and ts > self.ts):  # the common case, decided cheaply
            return False
        if (False, ts, protocol, detail, value) >= _sighting(self):
            return False
        self.ts, self.protocol, self.detail, self.value = ts, protocol, detail, value
        return True

    def evidence(self) -> Evidence:
        return Evidence(
            self.attribute, self.value, self.protocol, self.detail, self.ts, self.weight, self.count
        )

    def __reduce__(self) -> tuple[Any, ...]:  # see `_Endpoint.__reduce__`
        return _Claim, (self.attribute, self.value, self.protocol, self.detail, self.ts, self.weight,
                        self.count)  # fmt: skip


class _Peers:
    """The distinct peers of a service, bounded: counted exactly up to MAX_PEERS; beyond, the MAX_PEERS
    peers with the smallest hashes are kept and their number is estimated from the largest kept hash (a
    k-minimum-values sketch, about 6 % standard error). Unlike "the first MAX_PEERS, then count the
    rest", it does not depend on the order peers come in, a merge is the sketch of the union, and a
    busy server's repeat clients are not counted again with every flow."""

    __slots__ = ("kept", "top")

    def __init__(self) -> None:
        self.kept: dict[str, int] = {}  # peer -> its hash
        self.top = 0  # the largest kept hash once MAX_PEERS are kept

    def add(self, peer: str, h: int | None = None) -> None:
        kept = self.kept
        if peer in kept:
            return
        if h is None:
            h = _peer_hash(peer)
        if len(kept) < MAX_PEERS:
            kept[peer] = h
            if len(kept) == MAX_PEERS:
                self.top = max(kept.values())
        elif h < self.top:
            del kept[max(kept, key=kept.__getitem__)]
            kept[peer] = h
            self.top = max(kept.values())

    def update(self, other: _Peers) -> None:
        for peer, h in other.kept.items():
            self.add(peer, h)

    def __reduce__(self) -> tuple[Any, ...]:  # see `_Endpoint.__reduce__`
        return _peers, (self.kept, self.top)

    def count(self) -> int:
        if len(self.kept) < MAX_PEERS:
            return len(self.kept)
        return round((MAX_PEERS - 1) * 2.0**64 / max(self.top, 1))



# Peer -> its sketch hash. Once a service has MAX_PEERS peers, every flow of a peer not kept asks for its
# hash again (a hospital's DNS server has more clients than that): a blake2b per flow, remembered instead.
_PEER_HASHES: Final[dict[str, int]] = {}
_MAX_PEER_HASHES: Final = 400_000


def _peer_hash(peer: str) -> int:
    h = _PEER_HASHES.get(peer)
    if h is None:
        if len(_PEER_HASHES) >= _MAX_PEER_HASHES:
            _PEER_HASHES.clear()
        h = _PEER_HASHES[peer] = int.from_bytes(hashlib.blake2b(peer.encode(), digest_size=8).digest(), "big")
    return h

@dataclass(slots=True)
class _Service:
    peers: _Peers
    app: str | None = None
    count: int = 0
    first: float = float("inf")  # its earliest flow's start: at the bound the earliest services stay

    def __init__(self, peers: _Peers, app: str | None = None, count: int = 0, first: float = _LATEST) -> None:
        self.peers, self.app, self.count, self.first = peers, app, count, first  # by hand: see `_Claim`

    def __reduce__(self) -> tuple[Any, ...]:  # see `_Endpoint.__reduce__`
        return _Service, (self.peers, self.app, self.count, self.first)


# An endpoint's attributes, its constructor's first (pickled in this order: `_Endpoint.__reduce__`).
_ENDPOINT_STATE: Final = (
    "mac", "ip", "profile", "claimed", "claims", "first_seen", "hops", "hostnames", "identities", "last_seen",
    "newest", "rule_peers", "sent", "services",
)  # fmt: skip


class _Endpoint:
    """What was seen of one (MAC, IP) pair."""

    __slots__ = _ENDPOINT_STATE

    def __init__(self, mac: str | None, ip: str | None, profile: Any) -> None:
        self.mac, self.ip = mac, ip
        self.first_seen: float | None = None
        self.last_seen: float | None = None
        self.sent = False  # seen as a sender (a receiver alone may not exist)
        self.hops: int | None = None  # fewest routers its packets passed before the sensor (by their TTL)
        self.claims: dict[tuple[str, str, str, str], _Claim] = {}
        self.claimed: dict[str, set[str]] = {}  # attribute -> its (casefolded) values in `claims`
        # attribute -> no claim of it in `claims` is later than this (it never decreases: evictions and
        # earlier sightings only make it an over-estimate, which `claim`'s quick refusal allows)
        self.newest: dict[str, float] = {}
        self.rule_peers: dict[str, set[str]] = {}
        self.services: dict[tuple[str, str, int], _Service] = {}
        self.identities: dict[str, dict[str, _Claim]] = {}
        self.hostnames: dict[str, _Claim] = {}
        self.profile = profile

    # A `--workers` shard sends its endpoints to the parent, which unpickles them on its critical path:
    # by default a slotted object pickles as a dict of its slots, rebuilt attribute by attribute (and a
    # slotted dataclass's __setstate__ looks its fields up per object), 2-3 times slower than a tuple.
    def __reduce__(self) -> tuple[Any, ...]:
        return _endpoint, tuple(getattr(self, name) for name in _ENDPOINT_STATE)

    def near(self, hops: int) -> None:
        if self.hops is None or hops < self.hops:
            self.hops = hops

    def seen(self, ts: float) -> None:
        if self.first_seen is None or ts < self.first_seen:
            self.first_seen = ts
        if self.last_seen is None or ts > self.last_seen:
            self.last_seen = ts

    def claim(self, c: _Claim, source: str) -> None:
        """A claim not made before (callers count repeats themselves), within the bounds. At a bound the
        earliest claims (and values of an attribute) stay: a new one takes the place of the latest if it
        was seen earlier, so later claims cannot push earlier ones out, and what is kept does not depend
        on the order claims arrive in (`_room`)."""
        value = c.value.casefold()
        key = (c.attribute, value, c.protocol, source)
        values = self.claimed.setdefault(c.attribute, set())
        newest = self.newest.get(c.attribute, _NEVER)  # no kept claim of the attribute is later
        if len(values) >= MAX_VALUES and value not in values:
            if c.ts is None or c.ts > newest:
                return  # later than every kept value (a flood of new values stops here, cheaply)
            firsts: dict[str, tuple[Any, ...]] = {}  # value -> its earliest claim
            for k, x in self.claims.items():
                if k[0] == c.attribute and (k[1] not in firsts or _sighting(x) < firsts[k[1]]):
                    firsts[k[1]] = _sighting(x)
            ok, gone = _room(firsts, MAX_VALUES, lambda v: (firsts[v], v), (_sighting(c), value))
            if not ok:
                return
            for k in [k for k in self.claims if k[0] == c.attribute and k[1] == gone]:
                del self.claims[k]
            values.discard(gone)
        if len(self.claims) >= MAX_CLAIMS:
            if c.ts is None or c.ts > max(self.newest.values(), default=_NEVER):
                return
            claims = self.claims
            ok, gone_key = _room(claims, MAX_CLAIMS, lambda k: (_sighting(claims[k]), k), (_sighting(c), key))
            if not ok:
                return
            del claims[gone_key]
            attribute, gone = gone_key[0], gone_key[1]
            if not any(k[0] == attribute and k[1] == gone for k in claims):
                self.claimed[attribute].discard(gone)
        values.add(value)
        self.claims[key] = c
        if c.ts is not None and c.ts > newest:
            self.newest[c.attribute] = c.ts

    def identity(self, key: str, value: str, protocol: str, detail: str, ts: float) -> None:
        value = value.strip()[:MAX_TEXT]
        if not value:
            return
        values = self.identities.setdefault(key, {})
        have = values.get(value)
        if have is not None:
            have.count += 1
            have.sooner(ts, protocol, detail, value)  # the earliest sighting names the source
        else:
            c = _Claim(f"identity.{key}", value, protocol, detail, ts, 0.9)
            _put_earliest(values, value, c, MAX_IDENTITY_VALUES, _by_sighting)

    def hostname(self, source: str, name: str, protocol: str, detail: str, ts: float) -> None:
        name = name.strip().rstrip(".")
        if name.lower().endswith(".local"):
            name = name[:-6]
        if not name or len(name) > 253:
            return
        have = self.hostnames.get(source)
        if have is None:
            self.hostnames[source] = _Claim("hostname", name, protocol, detail, ts, 0.8)
        elif have.value == name:
            have.count += 1
            have.sooner(ts, protocol, detail, name)
        elif have.sooner(ts, protocol, detail, name):
            have.count = 1  # the name a source gave first (in time, not in arrival order) wins

    def absorb(self, other: _Endpoint) -> None:
        """Add what another shard saw of the same endpoint (`Identifier.merge`), bounds as in `add`."""
        for ts in (other.first_seen, other.last_seen):
            if ts is not None:
                self.seen(ts)
        self.sent = self.sent or other.sent
        if other.hops is not None:
            self.near(other.hops)
        for (attribute, _, protocol, source), c in other.claims.items():
            have = self.claims.get((attribute, c.value.casefold(), protocol, source))
            if have is None:
                self.claim(c, source)
                continue
            have.count += c.count
            have.sooner(c.ts, c.protocol, c.detail, c.value)
        for rule, peers in other.rule_peers.items():
            self.rule_peers.setdefault(rule, set()).update(peers)
        for key, s in other.services.items():
            mine = self.services.get(key)
            if mine is None:
                if self._room_for_service(key, s.first):
                    self.services[key] = s
                continue
            mine.count += s.count
            mine.app = _app(mine.app, s.app)
            mine.first = min(mine.first, s.first)
            mine.peers.update(s.peers)
        for kind, values in other.identities.items():
            mine_values = self.identities.setdefault(kind, {})
            for value, c in values.items():
                have = mine_values.get(value)
                if have is not None:
                    have.count += c.count
                    have.sooner(c.ts, c.protocol, c.detail, c.value)
                else:
                    _put_earliest(mine_values, c.value, c, MAX_IDENTITY_VALUES, _by_sighting)
        for source, c in other.hostnames.items():
            have = self.hostnames.get(source)
            if have is None:
                self.hostnames[source] = c
            elif have.value == c.value:
                have.count += c.count
                have.sooner(c.ts, c.protocol, c.detail, c.value)
            elif have.sooner(c.ts, c.protocol, c.detail, c.value):
                have.count = c.count  # the name seen first wins, as in one process
        if other.profile is not None:
            if self.profile is None:
                self.profile = other.profile
            else:
                self.profile.merge(other.profile)

    def service(
        self, role: str, transport: str, port: int, app: str | None, peer: str | None, ts: float
    ) -> None:
        key = (role, transport, port)
        s = self.services.get(key)
        if s is None:
            if not self._room_for_service(key, ts):
                return
            s = self.services[key] = _Service(_Peers())
        s.count += 1
        s.app = _app(s.app, app)  # flows a dissector did not take (scans, gaps) still name the port
        s.first = min(s.first, ts)
        if peer is not None:
            s.peers.add(peer)

    def _room_for_service(self, key: tuple[str, str, int], ts: float) -> bool:
        """`_room` among the services of the role, ordered by their first flow."""
        services = self.services
        if len(services) < MAX_SERVICES:  # room in either role, without listing the role's services
            return True
        mine = [k for k in services if k[0] == key[0]]
        ok, gone = _room(mine, MAX_SERVICES, lambda k: (services[k].first, k), (ts, key))
        if gone is not None:
            del services[gone]
        return ok


class _Addr:
    """Facts about one address string, cached: parsing every observation's IPs would dominate `add`."""

    __slots__ = ("family", "link_local", "local", "order", "usable")

    def __init__(self, ip: str, networks: Iterable[Network], v4_ranges: tuple[tuple[int, int], ...]) -> None:
        """`v4_ranges`: the IPv4 ones of `networks` as (first, last) address numbers."""
        n = ipv4_number(ip)
        if n is not None:
            # Most addresses: their facts from the number (≈ 30,000 instructions an address through
            # ipaddress), and every `--workers` worker meets the servers all the others meet too.
            self.family, self.order = 4, (4, n)
            self.link_local = n >> 16 == 0xA9FE  # 169.254.0.0/16
            self.local = self.link_local or any(lo <= n <= hi for lo, hi in v4_ranges)
            self.usable = not (n >> 28 == 0xE or n == 0 or ip in _NO_ADDRESS)  # multicast: 224.0.0.0/4
            return
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            self.family, self.link_local, self.local, self.usable, self.order = 0, False, False, False, (9, 0)
            return
        self.family = a.version
        self.order = (a.version, int(a))  # numeric sort: 10.0.0.9 before 10.0.0.10
        self.link_local = a.is_link_local
        self.local = a.is_link_local or any(a in n for n in networks)  # in the hospital's address space
        self.usable = not (a.is_multicast or a.is_unspecified or ip in _NO_ADDRESS)


def _may_match(v: Any, values: frozenset[str]) -> bool:
    """`in` rules on one scalar field (ports, message types) mostly miss: test that before the rule."""
    return v is not None and (isinstance(v, (list, dict)) or _text(v) in values)


def _address_field(obs: Observation, name: str) -> Any:
    """One of `_ADDRESS` read as an attribute: compiled, `getattr` with a name is a generic lookup."""
    return obs.sport if name == "sport" else obs.dport if name == "dport" else obs.transport


def _values_key(head: Any, names: tuple[str, ...], obs: Observation) -> tuple[Any, ...] | None:
    """A key of the observation's values of these fields (and address fields), None if one is not a
    plain scalar, a dict of them or a list of either. Types of numbers are part of it: 1, 1.0 and True
    are equal but not equal text; a dict's order is too (rules match its items in order)."""
    key: list[Any] = [head]
    f = obs.fields
    for name in names:
        v: Any = f.get(name) if name not in _ADDRESS else _address_field(obs, name)
        # type(), not v.__class__, and identity tests, not `in _SCALARS`: compiled, those are a pointer
        # read and compares, where the attribute and the set are looked up generically for every value
        t = type(v)
        if t is str or v is None:
            # without a type: a text or None equals no value of another type, and no value is a type, so
            # the key still reads back one way (a type is always the tag of the value after it)
            key.append(v)
            continue
        if t is int or t is float or t is bool:
            pass
        elif t is list:
            if all(type(x) in _SCALARS for x in v):
                v = tuple((type(x), x) for x in v)
            else:  # DNS questions: a list of dicts
                v = tuple((dict, _dict_key(x)) if type(x) is dict else (type(x), x) for x in v)
                if not all(x[0] in _SCALARS or (x[0] is dict and x[1] is not None) for x in v):
                    return None
        elif t is dict:  # mDNS TXT records
            v = _dict_key(v)
            if v is None:
                return None
        else:
            return None
        key.append(t)
        key.append(v)
    return tuple(key)


def _dict_key(d: dict[Any, Any]) -> tuple[Any, ...] | None:
    items = tuple((type(k), k, type(x), x) for k, x in d.items())
    return items if all(i[0] in _SCALARS and i[2] in _SCALARS for i in items) else None


def _detail(rule: Rule, matched: str, obs: Observation) -> str:
    """Evidence text of a rule hit: the field and text it matched."""
    if rule.peers:
        return f"{obs.kind} with {rule.peers}+ peers (rule {rule.id})"
    field = ""
    f = obs.fields
    for n in rule.fields:
        # not f.get(n, getattr(...)): the default would be looked up every time, failing with an
        # AttributeError (built and dropped) for every field that is not also an attribute
        if matched in str(f[n] if n in f else getattr(obs, n, "")):
            field = n
            break
    return f'{obs.kind} {field} "{str(matched)[:MAX_TEXT]}" (rule {rule.id})'


@dataclass(slots=True)
class ShardState:
    """An `Identifier`'s accumulated state, as one `--workers` shard sends it to the parent."""

    endpoints: dict[tuple[str | None, str | None], _Endpoint]
    bindings: dict[str, dict[str, tuple[float, bool]]]
    names: dict[str, dict[str, tuple[str, str, float]]]
    dropped: int
    skipped: int
    observations: int


class Identifier:
    """Collects observations (`add`) and produces the device inventory (`devices`)."""

    def __init__(
        self,
        fingerprints: Fingerprints | None = None,
        learned: Path | None = None,
        address_space: Iterable[Network] | None = None,  # the hospital's networks; None: LOCAL_NETWORKS
    ) -> None:
        self.fingerprints = fingerprints if fingerprints is not None else Fingerprints.load()
        self._networks = LOCAL_NETWORKS if address_space is None else tuple(address_space)
        self._v4_ranges = ipv4_ranges(self._networks)
        self._classes = classes()
        self._model: Any = None
        self._profile_type: Any = None
        if learned is not None:
            from medsentry.identify.learn import DeviceProfile, LearnedModel  # only needed with a model

            self._model = LearnedModel.load(Path(learned))
            self._profile_type = DeviceProfile
        self._endpoints: dict[tuple[str | None, str | None], _Endpoint] = {}
        # IP -> MAC -> (first time bound, by a DHCP lease?): ARP senders, DHCP leases and server ids.
        self._bindings: dict[str, dict[str, tuple[float, bool]]] = {}
        self._bound: dict[str, set[str]] = {}  # MAC -> the IPs it owns; computed by `devices`
        self._owner: dict[str, str] = {}  # IP -> its owner's MAC; computed by `devices`
        self._names: dict[str, dict[str, tuple[str, str, float]]] = {}  # IP -> kind -> (name, proto, ts)
        self._addrs: dict[str, _Addr] = {}
        # MAC -> IP as an observation gives them -> their endpoint: normalising both every time is costly.
        # Nested, not keyed by the pair: a pair built and hashed for each of an observation's two ends cost
        # more than a second lookup by a string, whose hash is kept.
        self._by_raw: dict[str | None, dict[str | None, _Endpoint]] = {}
        self._by_raw_size = 0
        # (MAC, IP) pairs neither of which can be a device's (a group MAC, a broadcast IP): asked once
        self._no_devices: set[tuple[str | None, str | None]] = set()
        self._macs: dict[str, oui.MacInfo | None] = {}
        self._by_kind: dict[str, tuple[_RuleUse, ...]] = {}
        # A rule's result depends only on the values of the fields it reads: most observations repeat
        # values already seen (the same MQTT topic, DICOM AE title, DHCP option list), so remember it.
        self._hits: dict[tuple[Any, ...], Any] = {}
        self._kind_reads: dict[str, tuple[str, ...]] = {}  # kind -> every field its rules read
        self._needs_peers = {r.id: r.peers for r in self.fingerprints.rules if r.peers}
        self.dropped = 0  # observations whose endpoint did not fit in MAX_ENDPOINTS
        self.skipped = 0  # observations with malformed fields
        self.observations = 0
        self.remote_hosts = 0  # IP-anchored hosts outside the address space, by the last `devices`

    # -- streaming -------------------------------------------------------------------------------------
    def add(self, obs: Observation) -> None:
        self.observations += 1
        try:
            self._add(obs)
        except (TypeError, ValueError, AttributeError, KeyError):
            self.skipped += 1  # a field of an unexpected type (a Zeek log, a fuzzed packet): skip it

    def _add(self, obs: Observation) -> None:
        kind, f = obs.kind, obs.fields
        if kind in ("arp.request", "arp.reply"):
            self._bind(f.get("sender_mac"), f.get("sender_ip"), obs.ts, False)
        elif kind == "dhcp.ack":
            self._bind(f.get("client_mac"), f.get("yiaddr"), obs.ts, True)
        if kind in ("dhcp.offer", "dhcp.ack") and f.get("server_id") == obs.src_ip:
            self._bind(obs.src_mac, obs.src_ip, obs.ts, False)

        if kind in _DHCP_CLIENT and f.get("client_mac"):
            # The client's own facts, even when a relay agent sent the packet.
            ciaddr = f.get("ciaddr")
            src = self._endpoint(f["client_mac"], ciaddr if isinstance(ciaddr, str) else None, obs.ts)
        else:
            src = self._endpoint(obs.src_mac, obs.src_ip, obs.ts)
        dst: _Endpoint | None = None
        if kind == "flow":
            if _answered(f):
                dst = self._endpoint(obs.dst_mac, obs.dst_ip, obs.ts)
                if dst is not None:
                    dst.sent = True
        elif obs.transport == "tcp":
            # A TCP message implies a handshake the receiver answered: rules may be about it.
            dst = self._endpoint(obs.dst_mac, obs.dst_ip, obs.ts)

        if src is not None:
            src.sent = True
            if src.profile is not None:
                src.profile.add(obs)
        if dst is not None and dst.profile is not None and dst is not src and dst.mac is not None:
            dst.profile.add(obs)

        # IPv6 neighbour discovery and MLD use fixed hop limits (255, 1; RFC 4861, 2710): no OS in them.
        if kind == "ip.ttl" and f.get("ttl") in (1, 255) and ":" in (obs.src_ip or ""):
            return
        rules = self._rules(kind)
        hits = self._kind_hits(kind, rules, obs) if rules else ()
        if hits is not None:
            for rule, hit, claimed in hits:
                if rule.about == "src":
                    if src is not None:
                        self._fire(rule, hit[1], claimed, src, obs.dst_ip or obs.dst_mac, obs)
                elif dst is not None:
                    self._fire(rule, hit[1], claimed, dst, obs.src_ip or obs.src_mac, obs)
        else:
            for rule, field, values, reads in rules:
                if rule.about == "src":
                    target, peer = src, obs.dst_ip or obs.dst_mac
                else:
                    target, peer = dst, obs.src_ip or obs.src_mac
                if target is None or (values is not None and not _may_match(f.get(field), values)):
                    continue
                found = self._apply(rule, reads, obs)
                if found is not None:
                    self._fire(rule, found[1], self._claimed(found), target, peer, obs)

        if kind == "flow":
            self._flow(obs, src, dst)
        elif src is not None and kind in _FACT_KINDS:
            self._facts(obs, src)

    def _rules(self, kind: str) -> tuple[_RuleUse, ...]:
        rules = self._by_kind.get(kind)
        if rules is None:
            rules = self._by_kind[kind] = tuple(
                (r, r.fields[0], r.values if len(r.fields) == 1 and r.fields[0] not in _ADDRESS else None,
                 (*r.when, *r.fields))
                for r in self.fingerprints.for_kind(kind)
            )
        return rules

    def _kind_hits(
        self, kind: str, rules: tuple[_RuleUse, ...], obs: Observation
    ) -> tuple[tuple[Rule, tuple[dict[str, str], str], _Claimed], ...] | None:
        """The hits of all rules of the kind, in rule order, remembered per values of every field they
        read: per kind these take a handful of values (flows: server port and transport), so one lookup
        replaces one per rule. None when a value is not a plain scalar (the caller goes rule by rule)."""
        reads = self._kind_reads.get(kind)
        if reads is None:
            reads = self._kind_reads[kind] = tuple(dict.fromkeys(n for r in rules for n in r[3]))
        key = _values_key(kind, reads, obs)
        if key is None:
            return None
        hits = self._hits.get(key)
        if hits is None:
            f = obs.fields
            hits = tuple(
                (rule, hit, self._claimed(hit))
                for rule, field, values, _ in rules
                if (values is None or _may_match(f.get(field), values))
                and (hit := rule.apply(obs)) is not None
            )
            if len(self._hits) >= _MAX_HITS:
                self._hits.clear()
            self._hits[key] = hits
        return hits  # type: ignore[return-value]

    def _apply(
        self, rule: Rule, reads: tuple[str, ...], obs: Observation
    ) -> tuple[dict[str, str], str] | None:
        """`rule.apply(obs)`, remembered per rule and values read when those are plain scalars."""
        k = _values_key(id(rule), reads, obs)
        if k is None:
            return rule.apply(obs)
        hits = self._hits
        if k in hits:
            return hits[k]
        if len(hits) >= _MAX_HITS:
            hits.clear()
        hit = hits[k] = rule.apply(obs)
        return hit

    def _endpoint(self, mac: str | None, ip: str | None, ts: float) -> _Endpoint | None:
        by_ip = self._by_raw.get(mac)
        if by_ip is not None:
            e = by_ip.get(ip)
            if e is not None:
                e.seen(ts)
                return e
        raw = (mac, ip)
        if raw in self._no_devices:
            return None
        e = self._new_endpoint(raw, ts)
        if e is not None:
            if self._by_raw_size >= 4 * MAX_ENDPOINTS:
                self._by_raw.clear()
                self._by_raw_size = 0
            self._by_raw.setdefault(mac, {})[ip] = e
            self._by_raw_size += 1
        return e

    def _new_endpoint(self, raw: tuple[str | None, str | None], ts: float) -> _Endpoint | None:
        """The endpoint of addresses as an observation gives them (`raw`), normalised; None if neither can
        be a device's (remembered in `_no_devices`) or the inventory is full (counted in `dropped`)."""
        mac, ip = raw
        if mac is not None:
            mac = self._unicast(mac)
        if ip is not None and not self._addr(ip).usable:
            ip = None
        if mac is None and ip is None:
            if len(self._no_devices) >= 4 * MAX_ENDPOINTS:
                self._no_devices.clear()
            self._no_devices.add(raw)
            return None
        key = (mac, ip)
        e = self._endpoints.get(key)
        if e is None:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                self.dropped += 1
                return None
            profile = self._profile_type(mac) if self._profile_type is not None else None
            e = self._endpoints[key] = _Endpoint(mac, ip, profile)
        e.seen(ts)
        return e

    def _unicast(self, mac: str) -> str | None:
        """The normalised MAC if it can be a device's own (not a group address, not all zeros)."""
        info = self._mac(mac)
        if info is None or info.multicast or info.mac == "00:00:00:00:00:00":
            return None
        return info.mac

    def _mac(self, mac: str) -> oui.MacInfo | None:
        info = self._macs.get(mac, False)
        if info is False:
            if len(self._macs) > 4 * MAX_ENDPOINTS:
                self._macs.clear()
            info = self._macs[mac] = oui.lookup(mac)
        return info  # type: ignore[return-value]

    def _addr(self, ip: str) -> _Addr:
        a = self._addrs.get(ip)
        if a is None:
            if len(self._addrs) > 4 * MAX_ENDPOINTS:
                self._addrs.clear()
            a = self._addrs[ip] = _Addr(ip, self._networks, self._v4_ranges)
        return a

    def _bind(self, mac: Any, ip: Any, ts: float, lease: bool) -> None:
        if not isinstance(mac, str) or not isinstance(ip, str) or not self._addr(ip).usable:
            return
        mac = self._unicast(mac)
        if mac is not None:
            self._put_binding(ip, mac, ts, lease)

    def _put_binding(self, ip: str, mac: str, ts: float, lease: bool) -> None:
        macs = self._bindings.get(ip)
        if macs is None:
            if len(self._bindings) >= MAX_ENDPOINTS:
                return
            macs = self._bindings[ip] = {}
        have = macs.get(mac)
        if have is not None:  # the earliest claim counts (`_owners`), in whatever order they came
            macs[mac] = (min(have[0], ts), have[1] or lease)
            return
        _put_earliest(macs, mac, (ts, lease), MAX_IDENTITY_VALUES, lambda m, bound: (bound[0], m))

    def _owners(self) -> None:
        """Who owns each bound IP. ARP replies can lie (spoofing): a DHCP lease wins, then the MAC that
        claimed the address first; a later claimant does not take the address over."""
        self._owner, self._bound = {}, {}
        for ip, macs in self._bindings.items():
            leased = [m for m, (_, lease) in macs.items() if lease]
            owner = (max(leased, key=lambda m: (macs[m][0], m)) if leased
                     else min(macs, key=lambda m: (macs[m][0], m)))
            self._owner[ip] = owner
            self._bound.setdefault(owner, set()).add(ip)

    def _claimed(self, hit: tuple[dict[str, str], str]) -> _Claimed:
        """What a rule hit claims, as `_fire` keys it: (attribute, value, value casefolded); a vendor by
        the name medsentry reports it under, empty values left out. Worked out once per remembered hit."""
        out = []
        for attribute, value in hit[0].items():
            if attribute == "vendor":
                value = oui.normalize_vendor(value) or ""
            if value:
                out.append((attribute, value, value.casefold()))
        return tuple(out)

    def _fire(
        self,
        rule: Rule,
        matched: str,
        claimed: _Claimed,
        target: _Endpoint,
        peer: str | None,
        obs: Observation,
    ) -> None:
        if rule.peers:
            # Claimed from the first hit on; `devices` counts them once enough peers were seen. Waiting
            # for the peers here would make the evidence depend on the order observations come in (and
            # shards of a `--workers` run each see only some of the peers).
            seen = target.rule_peers.setdefault(rule.id, set())
            if len(seen) < rule.peers and peer is not None:
                seen.add(peer)
        detail = None  # built only for a claim not made before: most hits repeat one
        for attribute, value, folded in claimed:
            have = target.claims.get((attribute, folded, obs.protocol, rule.id))
            if have is not None:  # most hits repeat a claim: count it; the earliest hit is its evidence
                have.count += 1
                if have.ts is None or obs.ts <= have.ts:
                    have.sooner(obs.ts, obs.protocol, _detail(rule, matched, obs), value)
                continue
            if detail is None:
                detail = _detail(rule, matched, obs)
            target.claim(
                _Claim(attribute, value, obs.protocol, detail, obs.ts, rule.weights[attribute]), rule.id
            )

    def _flow(self, obs: Observation, client: _Endpoint | None, server: _Endpoint | None) -> None:
        f = obs.fields
        transport, port = f.get("transport") or obs.transport, f.get("server_port", obs.dport)
        if transport not in ("tcp", "udp") or not isinstance(port, int) or server is None:
            return
        app = f.get("app")
        ts = f.get("first_seen")
        # isinstance with a tuple, not `int | float`: compiled, that union is built and checked generically
        start = float(ts) if isinstance(ts, (int, float)) else obs.ts
        server.service("offers", transport, port, app, _peer(client), start)
        if client is not None:
            client.service("uses", transport, port, app, _peer(server), start)
        # each side spelled out: compiled, a loop over a pair of them builds the tuples for every flow
        if isinstance(ts, (int, float)):
            if client is not None:
                client.seen(float(ts))
            server.seen(float(ts))
        ttl = f.get("client_ttl")
        if client is not None and isinstance(ttl, int) and 0 < ttl <= 255:
            client.near(_hops(ttl))
        ttl = f.get("server_ttl")
        if isinstance(ttl, int) and 0 < ttl <= 255:
            server.near(_hops(ttl))

    @staticmethod
    def _http_facts(kind: str, f: dict[str, Any], src: _Endpoint, proto: str, ts: float) -> None:
        """User-Agent / Server identities, and the names an NTLM handshake gives its sender."""
        _ntlm_names(f, src, proto, ts)
        if kind == "http.request":
            if isinstance(f.get("user_agent"), str):
                src.identity("http_user_agent", f["user_agent"], proto, "HTTP User-Agent", ts)
        elif isinstance(f.get("server"), str):
            src.identity(f"{proto}_server", f["server"], proto, f"{proto.upper()} Server header", ts)

    def _facts(self, obs: Observation, src: _Endpoint) -> None:
        """Hostnames, identities and DNS answers: facts the rules do not model."""
        kind, f, ts, proto = obs.kind, obs.fields, obs.ts, obs.protocol
        if kind in _DHCP_CLIENT:
            if isinstance(f.get("hostname"), str):
                src.hostname("dhcp", f["hostname"], proto, f"{kind} option 12", ts)
            if isinstance(f.get("fqdn"), str):
                src.hostname("dhcp", f["fqdn"].split(".")[0], proto, f"{kind} option 81", ts)
        elif kind == "dhcp.ack" and isinstance(f.get("hostname"), str) and isinstance(f.get("yiaddr"), str):
            self._name(f["yiaddr"], "dhcp-server", f["hostname"], proto, ts)
        elif kind == "mdns.service":
            ips = f.get("ips") or []
            # a proxy (Bonjour sleep proxy, a print server) may announce another host's services
            if isinstance(f.get("target_host"), str) and (not ips or obs.src_ip in ips):
                src.hostname("mdns", f["target_host"], proto, f"mDNS SRV target of {f.get('service')}", ts)
            txt = f.get("txt")
            if isinstance(txt, dict) and isinstance(txt.get("aet"), str):
                src.identity("dicom_ae", txt["aet"], proto, f"mDNS TXT aet of {f.get('service')}", ts)
        elif kind in ("dns.response", "mdns.response"):
            self._dns_answers(obs, src)
        elif kind in ("nbns.registration", "nbns.response"):
            name, suffix = f.get("name"), f.get("suffix")
            if isinstance(name, str) and suffix == 0 and not f.get("group") and name != "*":
                ips = f.get("ips") or []
                if kind == "nbns.registration" or obs.src_ip in ips:
                    src.hostname("nbns", name, proto, f"NetBIOS name registration {name}<00>", ts)
        elif kind == "nbdgm.host_announcement" and isinstance(f.get("name"), str):
            src.hostname("nbns", f["name"], proto, "NetBIOS browser host announcement", ts)
        elif kind == "syslog.message" and isinstance(f.get("hostname"), str) and f["hostname"] != "-":
            src.hostname("syslog", f["hostname"], proto, "syslog HOSTNAME", ts)
        elif kind == "lldp" and isinstance(f.get("system_name"), str):
            src.hostname("lldp", f["system_name"], proto, "LLDP system name", ts)
        elif kind == "cdp" and isinstance(f.get("device_id"), str):
            src.hostname("cdp", f["device_id"], proto, "CDP device id", ts)
        elif kind == "snmp.response" and isinstance(f.get("sys_name"), str):
            src.hostname("snmp", f["sys_name"], proto, "SNMP sysName", ts)
        elif kind == "dicom.associate_rq" and isinstance(f.get("calling_ae"), str):
            src.identity("dicom_ae", f["calling_ae"], proto, "A-ASSOCIATE-RQ calling AE title", ts)
        elif kind == "dicom.associate_ac" and isinstance(f.get("called_ae"), str):
            src.identity("dicom_ae", f["called_ae"], proto, "A-ASSOCIATE-AC called AE title", ts)
        elif kind == "dicom.command" and isinstance(f.get("station_name"), str):
            if f.get("command") == "C-STORE-RQ" and not f.get("move_originator_ae"):
                src.identity("dicom_station", f["station_name"], proto, "data set Station Name", ts)
        elif kind in ("hl7.message", "hl7.ack") and not f.get("suspicious") and not f.get("malformed"):
            app, facility = f.get("sending_application"), f.get("sending_facility")
            if isinstance(app, str) and app:
                src.identity("hl7_application", app, proto, "MSH-3 sending application", ts)
            if isinstance(facility, str) and facility:
                src.identity("hl7_facility", facility, proto, "MSH-4 sending facility", ts)
        elif kind == "mqtt.connect" and isinstance(f.get("client_id"), str):
            src.identity("mqtt_client_id", f["client_id"], proto, "CONNECT client identifier", ts)
        elif kind in ("http.request", "http.response", "rtsp.response"):
            self._http_facts(kind, f, src, proto, ts)
        elif kind == "smb.ntlm":
            _ntlm_names(f, src, proto, ts)
        elif kind == "tls.certificate":
            for name in (f.get("san") or [])[:MAX_IDENTITY_VALUES]:
                if isinstance(name, str):
                    src.identity("tls_name", name, proto, "server certificate subjectAltName", ts)
        elif kind == "service.seen" and isinstance(f.get("port"), int):  # Zeek known_services
            names = [n for n in f.get("service") or [] if isinstance(n, str)]
            if f.get("transport") in ("tcp", "udp"):
                app = names[0].lower() if names else None
                src.service("offers", f["transport"], f["port"], app, None, ts)
        elif kind == "tls.client_hello" and isinstance(f.get("ja4"), str):
            src.identity("ja4", f["ja4"], proto, "TLS ClientHello JA4", ts)

    def _dns_answers(self, obs: Observation, src: _Endpoint) -> None:
        mdns = bool(obs.fields.get("mdns"))
        for a in obs.fields.get("answers") or []:
            if (
                not isinstance(a, dict)
                or not isinstance(a.get("name"), str)
                or not isinstance(a.get("data"), str)
            ):
                continue
            rtype, name, data = a.get("type"), a["name"], a["data"]
            if rtype == "PTR" and name.endswith((".in-addr.arpa", ".ip6.arpa")):
                ip = _ptr_address(name)
                if ip is not None:
                    self._name(ip, "dns-ptr", data, obs.protocol, obs.ts)
            elif rtype in ("A", "AAAA"):
                if mdns and data == obs.src_ip:
                    src.hostname("mdns", name, obs.protocol, f"mDNS {rtype} record", obs.ts)
                elif not mdns:
                    self._name(data, "dns-a", name, obs.protocol, obs.ts)

    def _name(self, ip: str, source: str, name: str, protocol: str, ts: float) -> None:
        key = source if source != "dns-a" else f"dns-a:{name.lower()}"
        self._put_name(ip, key, (name.strip().rstrip("."), protocol, ts))

    def _put_name(self, ip: str, key: str, entry: tuple[str, str, float]) -> None:
        names = self._names.get(ip)
        if names is None:
            if len(self._names) >= MAX_NAMES:
                return
            names = self._names[ip] = {}
        have = names.get(key)
        if have is not None:
            if _answer_order(entry) < _answer_order(have):
                names[key] = entry  # the earliest answer wins
            return
        _put_earliest(names, key, entry, 2 * MAX_IDENTITY_VALUES, lambda k, e: (*_answer_order(e), k))

    # -- shards --------------------------------------------------------------------------------------------
    def shard_state(self) -> ShardState:
        """What this identifier learned, for `merge` in another process (`--workers`): the per-endpoint
        state and bindings only, not the caches."""
        return ShardState(self._endpoints, self._bindings, self._names, self.dropped, self.skipped,
                          self.observations)

    def merge(self, state: ShardState) -> None:
        """Add a shard's state: the inventory is then as if this identifier had seen its observations too
        (evidence counts and first times add up; where a bound keeps the first values seen, a shard's
        come after this identifier's)."""
        self._by_raw.clear()  # it may point at endpoints replaced below
        self._by_raw_size = 0
        for key, e in state.endpoints.items():
            mine = self._endpoints.get(key)
            if mine is not None:
                mine.absorb(e)
            elif len(self._endpoints) < MAX_ENDPOINTS:
                self._endpoints[key] = e
            else:
                self.dropped += 1
        for ip, macs in state.bindings.items():
            for mac, (ts, lease) in macs.items():
                self._put_binding(ip, mac, ts, lease)
        for ip, names in state.names.items():
            for kind, entry in names.items():
                self._put_name(ip, kind, entry)
        self.dropped += state.dropped
        self.skipped += state.skipped
        self.observations += state.observations

    # -- the inventory ---------------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        self._owners()
        groups: dict[tuple[str, str], list[_Endpoint]] = {}
        routed: dict[str, set[str]] = {}  # router MAC -> the off-link IPs it forwarded
        own = self._own_addresses()
        for (mac, ip), e in self._endpoints.items():
            if (ip is None and mac is not None) or (mac is not None and ip in own.get(mac, ())):
                key = ("mac", mac)
            elif ip is not None and ip in self._owner and self._owner[ip] != mac:
                key = ("mac", self._owner[ip])
            else:
                assert ip is not None
                key = ("ip", ip)
                if mac is not None and e.sent:
                    routed.setdefault(mac, set()).add(ip)
            groups.setdefault(key, []).append(e)
        # Routers whose own address never showed: forwarding several addresses, or one whose packets'
        # TTL says they came through it.
        forwarders = {
            mac for mac, ips in routed.items()
            if len(ips) >= 2 or any(self._via_router(self._endpoints[mac, ip]) for ip in ips)
        }  # fmt: skip
        for mac in forwarders:
            groups.setdefault(("mac", mac), [])
        out = []
        self.remote_hosts = 0
        for (anchor, value), members in groups.items():
            known = anchor == "mac" and (value in self._bound or value in forwarders)
            if not known and not any(e.sent for e in members):
                continue  # only ever addressed: it may not exist
            if anchor == "ip" and not self._addr(value).local:
                self.remote_hosts += 1
                continue
            out.append(
                self._device(anchor, value, members, len(routed.get(value, ())) if anchor == "mac" else 0)
            )
        out.sort(key=lambda d: (d.mac is None, self._addr(d.ips[0]).order if d.ips else (9, 0), d.key))
        return out

    def _own_addresses(self) -> dict[str, set[str]]:
        """MAC -> the IPs that are its own (see the module docstring)."""
        seen: dict[str, dict[int, list[str]]] = {}
        endpoints = self._endpoints
        for mac, ip in endpoints:
            if mac is not None and ip is not None:
                seen.setdefault(mac, {}).setdefault(self._addr(ip).family, []).append(ip)
        own: dict[str, set[str]] = {}
        for mac, families in seen.items():
            bound = self._bound.get(mac, set())
            mine = own[mac] = set()
            v4 = families.get(4, [])
            mine.update(ip for ip in v4 if self._addr(ip).link_local)  # 169.254/16 is never routed
            v4_bound = [ip for ip in v4 if ip in bound]
            if v4_bound:
                mine.update(v4_bound)
            elif (len(v4) == 1 and self._owner.get(v4[0], mac) == mac
                  and not self._via_router(endpoints[mac, v4[0]])):  # fmt: skip
                mine.add(v4[0])
            router = any(ip not in mine for ip in v4)
            for ip in families.get(6, []):
                on_link = not router and not self._via_router(endpoints[mac, ip])
                if self._addr(ip).link_local or ip in bound or _eui64_of(ip, mac) or on_link:
                    mine.add(ip)
        return own

    def _via_router(self, e: _Endpoint) -> bool:
        """Whether the endpoint's address is outside the address space and its packets came through a
        router. Inside the address space the TTL is not trusted that far: an embedded stack may start from
        an unusual value (60, 100), and taking a ward's device for a remote one would split it in two."""
        return bool(e.hops) and e.ip is not None and not self._addr(e.ip).local

    def _device(self, anchor: str, key: str, members: list[_Endpoint], forwarded: int) -> Device:
        mac = key if anchor == "mac" else None
        d = Device(mac=mac)
        ips = {e.ip for e in members if e.ip is not None}
        if mac is not None:
            ips |= self._bound.get(mac, set())
        d.ips = sorted(ips, key=lambda ip: self._addr(ip).order)
        firsts = [e.first_seen for e in members if e.first_seen is not None]
        lasts = [e.last_seen for e in members if e.last_seen is not None]
        d.first_seen, d.last_seen = (min(firsts), max(lasts)) if firsts else (None, None)

        claims: dict[tuple[str, str, str, str], _Claim] = {}
        needs_peers = self._needs_peers
        for e in members:
            for k, c in e.claims.items():
                need = needs_peers.get(k[3])
                if need is not None and len(e.rule_peers.get(k[3], ())) < need:
                    continue
                have = claims.get(k)
                if have is None:
                    claims[k] = _Claim(c.attribute, c.value, c.protocol, c.detail, c.ts, c.weight, c.count)
                else:
                    have.count += c.count
                    have.sooner(c.ts, c.protocol, c.detail, c.value)
        if mac is not None:
            info = self._mac(mac)
            d.mac_randomized = bool(info and info.locally_administered)
            if info is not None and info.vendor and not info.locally_administered:
                w = OUI_WEIGHT.get(info.prefix_bits, 0.6)
                block = "MA-L" if info.prefix_bits == 24 else "MA-M/MA-S"
                detail = f'IEEE {block} {info.prefix} "{info.organization}"'
                claims[("vendor", info.vendor.casefold(), "oui", "oui")] = _Claim(
                    "vendor", info.vendor, "oui", detail, d.first_seen, w
                )
        if forwarded >= 2:
            claims[("device_class", "network_infrastructure", "ip", "router")] = _Claim(
                "device_class",
                "network_infrastructure",
                "ip",
                f"forwards traffic of {forwarded} off-link addresses",
                d.first_seen,
                ROUTER_WEIGHT,
            )
        by_attr: dict[str, list[_Claim]] = {}
        # earliest first, whatever order the observations came in (ties between values go to the earlier):
        # `_sighting` and the attribute in one flat tuple with the claim's place last, so the sort compares
        # plain tuples and never calls a key function (a lambda a claim was a fifth of `devices`)
        ordered = list(claims.values())
        places = [(*_sighting(c), c.attribute, i) for i, c in enumerate(ordered)]
        places.sort()
        for place in places:
            at: int = place[-1]
            c = ordered[at]
            by_attr.setdefault(c.attribute, []).append(c)

        evidence: list[_Claim] = []
        cls, conf, used, rivals = _decide_class(by_attr.get("device_class", []), self._classes)
        d.device_class, d.confidence = cls, round(conf, 3)
        evidence += used + rivals
        for attribute in ("vendor", "model", "firmware", "os"):
            value, support = _decide(attribute, by_attr.get(attribute, []))
            if value is not None:
                setattr(d, attribute, value)
                evidence += support

        self._hostname(d, members, evidence)
        self._services(d, members, evidence)
        self._identities(d, members, evidence)
        if self._model is not None:
            self._learned(d, members, evidence)
        if d.mac_randomized:
            evidence.append(
                _Claim(
                    "mac_randomized",
                    "true",
                    "oui",
                    "locally administered MAC (U/L bit set)",
                    d.first_seen,
                    1.0,
                )
            )
        d.evidence = [c.evidence() for c in evidence]
        return d

    def _hostname(self, d: Device, members: list[_Endpoint], evidence: list[_Claim]) -> None:
        found: dict[str, _Claim] = {}
        for e in members:
            for source, c in e.hostnames.items():
                have = found.get(source)
                if have is None or _sighting(c) < _sighting(have):
                    found[source] = c
        for ip in d.ips:
            names = self._names.get(ip, {})
            for source, (name, proto, ts) in sorted(names.items(), key=lambda kv: (kv[1][2], kv[0])):
                if source in ("dhcp-server", "dns-ptr"):
                    found.setdefault(source, _Claim("hostname", name, proto, _NAME_DETAIL[source], ts, 0.6))
                else:
                    evidence.append(_Claim("identity.dns_names", name, proto, "DNS A/AAAA answer", ts, 0.6))
                    d.identities.setdefault("dns_names", [])
                    if name not in d.identities["dns_names"]:
                        d.identities["dns_names"].append(name)
        for source in _HOSTNAME_SOURCES:
            if source in found:
                d.hostname = found[source].value
                evidence.append(found[source])
                evidence += [
                    found[s] for s in _HOSTNAME_SOURCES
                    if s in found and s != source and found[s].value.lower() == d.hostname.lower()
                ]
                break

    def _services(self, d: Device, members: list[_Endpoint], evidence: list[_Claim]) -> None:
        merged: dict[tuple[str, str, int], _Service] = {}
        for e in members:
            for k, s in e.services.items():
                m = merged.setdefault(k, _Service(_Peers()))
                m.app = _app(m.app, s.app)
                m.count += s.count
                m.peers.update(s.peers)
        for role, transport, port in sorted(merged):
            s = merged[role, transport, port]
            peers = s.peers.count()
            d.services.append(Service(transport, port, s.app, role, peers))
            if role == "offers":
                value = f"{transport}/{port}" + (f" {s.app}" if s.app else "")
                detail = f"answered {s.count} flow(s) from {peers} peer(s)"
                evidence.append(_Claim("service", value, "flow", detail, d.first_seen, 0.9, s.count))

    def _identities(self, d: Device, members: list[_Endpoint], evidence: list[_Claim]) -> None:
        seen = sorted(
            ((key, c) for e in members for key, values in e.identities.items() for c in values.values()),
            key=lambda kc: (kc[0], kc[1].ts if kc[1].ts is not None else float("inf"), kc[1].value),
        )  # earliest first: the same list whatever order the observations came in
        for key, c in seen:
            have = d.identities.setdefault(key, [])
            if c.value not in have and len(have) < MAX_IDENTITY_VALUES:
                have.append(c.value)
                evidence.append(c)

    def _learned(self, d: Device, members: list[_Endpoint], evidence: list[_Claim]) -> None:
        profile = self._profile_type(d.mac)
        for e in members:
            if e.profile is not None:
                profile.merge(e.profile)
        match = self._model.classify(profile)
        if match.label is None:
            return
        d.label = match.label
        detail = f"learned fingerprint similarity {match.score:.2f}"
        evidence.append(_Claim("label", match.label, "learned", detail, d.first_seen, float(match.score)))
        if (
            d.device_class == UNKNOWN
            and match.device_class in self._classes
            and match.device_class != UNKNOWN
        ):
            d.device_class = match.device_class
            d.confidence = round(float(match.score), 3)
            evidence.append(
                _Claim(
                    "device_class", match.device_class, "learned", detail, d.first_seen, float(match.score)
                )
            )


_NAME_DETAIL: Final = {
    "dhcp-server": "DHCP ACK option 12 (name the server assigned)", "dns-ptr": "DNS PTR answer"
}


def _sighting(c: _Claim) -> tuple[Any, ...]:
    return (c.ts is None, c.ts or 0.0, c.protocol, c.detail, c.value)


def _room(keys: Collection[Any], bound: int, order: Callable[[Any], Any], new: Any) -> tuple[bool, Any]:
    """Bounded collections keep their earliest entries. (room for the entry ordered `new`, the entry to
    drop for it or None): there is room below the bound, or when `new` comes before the latest entry,
    which then goes. A later entry never pushes out an earlier one (a flood of new user agents changes
    nothing), and what is kept does not depend on the order entries arrive in (only the counts of kept
    entries may miss sightings from before they were kept)."""
    if len(keys) < bound:
        return True, None
    latest = max(keys, key=order)
    return (True, latest) if new < order(latest) else (False, None)


def _put_earliest(
    d: dict[Any, Any], key: Any, value: Any, bound: int, order: Callable[[Any, Any], Any]
) -> None:
    """Add an entry not kept yet to a bounded dict that keeps its earliest entries (`_room`); `order`
    gives an entry's place from its key and value."""
    ok, gone = _room(d, bound, lambda k: order(k, d[k]), order(key, value))
    if gone is not None:
        del d[gone]
    if ok:
        d[key] = value


def _by_sighting(_value: str, c: _Claim) -> tuple[Any, ...]:
    return _sighting(c)


def _answer_order(entry: tuple[str, str, float]) -> tuple[float, str, str]:
    return (entry[2], entry[0], entry[1])


def _app(a: str | None, b: str | None) -> str | None:
    """The application a port is named by: any dissector's, the same whatever order flows come in."""
    return b if a is None or (b is not None and b < a) else a


def _answered(f: dict[str, Any]) -> bool:
    """Did the flow's server exist and answer? A RST to a lone SYN (closed port) is no service; a
    SYN-ACK the scanner then reset is one; one-way UDP counts when a dissector understood it."""
    if not f.get("packets_s2c"):
        return f.get("transport") == "udp" and f.get("app") is not None
    state = f.get("tcp_state")
    if state == "syn":
        return False
    if state == "reset":
        return (f.get("packets_c2s") or 0) >= 2 or (f.get("packets_s2c") or 0) >= 2
    return True


def _text(v: Any) -> str:
    """A scalar as rules compare it (`in` lists are text; YAML booleans read as true / false)."""
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def _peer(e: _Endpoint | None) -> str | None:
    return None if e is None else (e.ip or e.mac)


def _by_protocol(claims: Iterable[_Claim]) -> float:
    """Combined weight of claims for one value: the strongest per protocol, noisy-OR across protocols.
    Rules on one protocol watch the same behaviour (a DICOM proposal and the command that follows it), so
    only independent sources reinforce each other."""
    best: dict[str, float] = {}
    for c in claims:
        best[c.protocol] = max(best.get(c.protocol, 0.0), c.weight)
    miss = 1.0
    for w in best.values():
        miss *= 1.0 - w
    return 1.0 - miss


def _decide_class(
    claims: list[_Claim], known: dict[str, Any]
) -> tuple[str, float, list[_Claim], list[_Claim]]:
    """(class, confidence, claims for the winner, claims for the runner-up)."""
    by_value: dict[str, list[_Claim]] = {}
    for c in claims:
        if c.value in known and c.value != UNKNOWN:
            by_value.setdefault(c.value, []).append(c)
    if not by_value:
        return UNKNOWN, 0.0, [], []
    scores = {v: _by_protocol(cs) for v, cs in by_value.items()}
    ranked = sorted(scores, key=lambda v: -scores[v])
    best = scores[ranked[0]]
    second = scores[ranked[1]] if len(ranked) > 1 else 0.0
    confidence = max(0.0, best - second / 2)
    rivals = by_value[ranked[1]] if len(ranked) > 1 else []
    if best < CLASS_MIN_SCORE or confidence < CLASS_MIN_CONFIDENCE or best - second < CLASS_MIN_MARGIN:
        # Keep the evidence, so the reader sees what was claimed and why it was not enough.
        return UNKNOWN, confidence, by_value[ranked[0]], rivals
    return ranked[0], confidence, by_value[ranked[0]], rivals


_NTLM_NAMES: Final = (("netbios_computer", "NTLM CHALLENGE NetBIOS computer name"),
               ("workstation", "NTLM AUTHENTICATE workstation name"))  # fmt: skip


def _ntlm_names(f: dict[str, Any], src: _Endpoint, proto: str, ts: float) -> None:
    """The name an NTLM handshake gives its sender (a server's CHALLENGE, a client's AUTHENTICATE), over
    HTTP or SMB."""
    for key, detail in _NTLM_NAMES:
        if isinstance(f.get(key), str) and f[key]:
            src.hostname("nbns", f[key], proto, detail, ts)


# Value -> `_squash`ed, remembered: an inventory's values repeat (one model name on hundreds of devices).
_SQUASHED: Final[dict[str, str]] = {}
_MAX_SQUASHED: Final = 20_000


def _squash(text: str) -> str:
    out = _SQUASHED.get(text)
    if out is None:
        if len(_SQUASHED) >= _MAX_SQUASHED:
            _SQUASHED.clear()
        out = _SQUASHED[text] = "".join(ch for ch in text.casefold() if ch.isalnum())
    return out


def _decide(attribute: str, claims: list[_Claim]) -> tuple[str | None, list[_Claim]]:
    if not claims:
        return None, []
    if attribute == "vendor":
        families: dict[str, list[_Claim]] = {}
        for c in claims:
            families.setdefault(oui.vendor_family(c.value), []).append(c)
        if len(families) == 1:  # the usual case: no key function to call
            family = next(iter(families))
        else:
            family = max(families, key=lambda f: (_by_protocol(families[f]), len(families[f])))
        support = families[family]
        if _by_protocol(support) < ATTR_MIN_SCORE:
            return None, []
        names: dict[str, list[_Claim]] = {}
        for c in support:
            names.setdefault(c.value, []).append(c)
        # A division ("Siemens Healthineers") is more specific than its family name ("Siemens").
        specific = [n for n in names if n != family] or list(names)
        if len(specific) == 1:
            return specific[0], support
        return max(specific, key=lambda n: _by_protocol(names[n])), support
    squashed_claims = [(_squash(c.value), c) for c in claims]
    values: dict[str, str] = {}
    for sq, c in squashed_claims:
        values.setdefault(sq, c.value)
    best: tuple[float, int] | None = None
    choice = chosen = ""
    for squashed, value in values.items():
        # A claim that is part of a longer value ("Revolution" of "Revolution CT") supports it.
        support = [c for sq, c in squashed_claims if sq and sq in squashed]
        rank = (round(_by_protocol(support), 6), len(squashed))
        if best is None or rank > best:
            best, choice, chosen = rank, value, squashed
    if best is None or best[0] < ATTR_MIN_SCORE:
        return None, []
    return choice, [c for sq, c in squashed_claims if sq in chosen]


def _endpoint(mac: str | None, ip: str | None, profile: Any, *values: Any) -> _Endpoint:
    e = _Endpoint(mac, ip, profile)
    for name, value in zip(_ENDPOINT_STATE[3:], values, strict=True):
        setattr(e, name, value)
    return e


def _peers(kept: dict[str, int], top: int) -> _Peers:
    p = _Peers()
    p.kept, p.top = kept, top
    return p


def _hops(ttl: int) -> int:
    """Routers a packet passed: its TTL below the usual initial value (64 Linux and most embedded stacks,
    128 Windows, 255 network gear; 32 old stacks) it most likely started from."""
    start = 32 if ttl <= 32 else 64 if ttl <= 64 else 128 if ttl <= 128 else 255
    return start - ttl


def _ptr_address(name: str) -> str | None:
    labels = name.lower().rstrip(".").split(".")
    try:
        if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
            return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
        if labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
            nibbles = "".join(reversed(labels[:32]))
            return str(ipaddress.IPv6Address(int(nibbles, 16)))
    except ValueError:
        return None
    return None


def _eui64_of(ip: str, mac: str) -> bool:
    """An IPv6 interface identifier derived from this MAC (RFC 4291 appendix A)."""
    try:
        iid = ipaddress.IPv6Address(ip).packed[8:]
    except ValueError:
        return False
    b = bytes.fromhex(mac.replace(":", ""))
    return iid == bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
