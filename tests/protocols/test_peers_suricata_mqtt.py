"""Our MQTT parser against suricata-verify's MQTT expectations on the same captures.

Every suricata-verify folder whose test.yaml expects `mqtt` EVE events: its capture goes through
pcaputil (TCP reassembled by sequence number), one `mqtt.StreamParser` per connection to port 1883, and
our messages are grouped into Suricata's MQTT transactions (a request and the answer that names its
packet id share one EVE event) and rendered with EVE's field names. Each filter counts the events that
match every key we model, like suricata-verify does, and must reach the filter's `count`.

What we keep differently on purpose, and how it is compared:
- user name: a salted hash (`username_hash`), compared with the hash of the expected name;
- password, v5 correlation / authentication data: `*_present` flags only, never the value;
- PUBLISH and will messages: their length only (`payload_len`, `will_payload_len`);
- v5 user properties: the names only (values may carry anything).
Not modelled: the fixed-header flag bits of packets other than PUBLISH (reserved, we do not keep them),
Suricata's own limits (`truncated`, `skipped_length` under max-msg-length), alerts, anomalies, frames.
"""

from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from medsentry.decode.streams import Direction
from medsentry.privacy import phi_hash
from medsentry.protocols import mqtt
from medsentry.protocols.base import Malformed, Message
from tests import pcaputil

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SV = DATA / "captures" / "suricata-verify"
PORT = 1883
SURICATA_MAJOR = 9  # the suricata-verify snapshot tests Suricata 9
SYN = 0x02

# A value we keep only as "present": any expected value matches it.
PRESENT = object()

MODELLED = re.compile(
    r"^(event_type|dest_port|src_port"
    r"|mqtt\.publish\.(qos|retain|dup)"
    r"|mqtt\.connect\.(protocol_string|protocol_version|client_id|username|password|flags\.\w+|will\..+"
    r"|properties\..+)"
    r"|mqtt\.\w+\.(topic|topics|message|message_id|return_code|reason_code|reason_codes|qos_granted"
    r"|session_present|properties\..+))$"
)
# Answers that complete the pending transaction with the same packet id (Suricata's mqtt.rs)
_ANSWERS = {"mqtt.puback", "mqtt.pubcomp", "mqtt.suback", "mqtt.unsuback"}
_STEPS = {"mqtt.pubrec", "mqtt.pubrel"}  # join the pending QoS 2 transaction, which stays open
_FIXED_HEADER = re.compile(r"^mqtt\.\w+\.(qos|retain|dup)$")  # reserved bits outside PUBLISH
_TRUNCATED = re.compile(r"^(.*)\[truncated (\d+) additional bytes\]$", re.S)


# --- captures -> messages -------------------------------------------------------------------------


def connections(path: Path) -> list[list[tuple[bool, Message]]]:
    """(to_server, message) of each TCP connection to the MQTT port, bytes reassembled in order."""
    live: dict[frozenset[tuple[str, int]], tuple[mqtt.StreamParser, tuple[Direction, Direction], list]] = {}
    done: list[list[tuple[bool, Message]]] = []
    for s in pcaputil.segments(path):
        if s.transport != "tcp" or PORT not in (s.sport, s.dport):
            continue
        key = frozenset({(s.src, s.sport), (s.dst, s.dport)})
        if s.tcp_flags & SYN and key in live and live[key][2]:  # port reuse: a new connection
            done.append(live.pop(key)[2])
        if not s.payload:
            continue
        parser, dirs, msgs = live.setdefault(key, (mqtt.StreamParser(), (Direction(), Direction()), []))
        to_server = s.dport == PORT
        data = dirs[to_server].accept(s.tcp_seq, s.payload)
        if not data:
            continue
        with contextlib.suppress(Malformed):  # the parser drops the bad packet and goes on
            msgs += [(to_server, m) for m in parser.feed(data, to_server)]
    return done + [msgs for _, _, msgs in live.values()]


# --- messages -> Suricata's EVE events ------------------------------------------------------------


def _properties(props: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in props.items():
        if name == "user_property_names":
            out |= dict.fromkeys(value, PRESENT)
        elif name.endswith("_present"):
            out[name.removesuffix("_present")] = PRESENT
        else:
            out[name] = value
    return out


def render(msg: Message) -> dict[str, Any]:
    """One of our messages with the field names of Suricata's EVE `mqtt.<type>` object."""
    f = msg.fields
    out: dict[str, Any] = {}
    if msg.kind == "mqtt.connect":
        out = {"protocol_string": f["protocol_name"], "protocol_version": f["protocol_version"],
               "client_id": f["client_id"],
               "flags": {"username": f["username_present"], "password": f["password_present"],
                         "will": f["will_present"], "will_retain": f["will_retain"],
                         "clean_session": f["clean_session"]}}  # fmt: skip
        if "username_hash" in f:
            out["username_hash"] = f["username_hash"]
        if f["password_present"]:
            out["password"] = PRESENT
        if f["will_present"]:
            out["will"] = {"topic": f["will_topic"], "message_len": f["will_payload_len"],
                           "properties": _properties(f.get("will_properties", {}))}  # fmt: skip
    elif msg.kind == "mqtt.publish":
        out = {k: f[k] for k in ("qos", "retain", "dup", "topic", "message_id") if k in f}
        out["message_len"] = f["payload_len"]
    elif msg.kind in ("mqtt.subscribe", "mqtt.unsubscribe"):
        topics = f["topics"]
        out = {"message_id": f["message_id"],
               "topics": [{"topic": t, "qos": q} for t, q in zip(topics, f["qos"], strict=True)]
               if "qos" in f else topics}  # fmt: skip
    elif msg.kind == "mqtt.suback":
        out = {"message_id": f["message_id"], "qos_granted": f["return_codes"]}
    elif msg.kind == "mqtt.unsuback":
        out = {"message_id": f["message_id"]}
        if f["return_codes"]:  # v5 only: 3.1.x UNSUBACK carries no codes
            out["reason_codes"] = f["return_codes"]
    else:
        out = {k: f[k] for k in ("message_id", "return_code", "reason_code", "session_present") if k in f}
    if "properties" in f:
        out["properties"] = _properties(f["properties"])
    return out


def events(conn: list[tuple[bool, Message]]) -> list[dict[str, Any]]:
    """Suricata's MQTT transactions of one connection, as EVE events (one per transaction)."""
    txs: list[dict[str, Any]] = []
    pending: dict[Any, dict[str, Any]] = {}
    for to_server, msg in conn:
        kind = msg.kind
        f = msg.fields
        pkt_id = "connect" if kind in ("mqtt.connect", "mqtt.connack") else f.get("message_id")
        tx = pending.get(pkt_id) if kind in _ANSWERS | _STEPS | {"mqtt.connack"} else None
        if tx is None:
            tx = {"to_server": to_server, "mqtt": {}}
            txs.append(tx)
            if kind in ("mqtt.connect", "mqtt.subscribe", "mqtt.unsubscribe") or (
                kind == "mqtt.publish" and f["qos"]
            ):
                pending[pkt_id] = tx
        elif kind in _ANSWERS | {"mqtt.connack"}:
            del pending[pkt_id]
        tx["mqtt"][kind.removeprefix("mqtt.")] = render(msg)
    out = []
    for tx in txs:
        event = _flatten({"event_type": "mqtt", "mqtt": tx["mqtt"]}, "", {})
        if tx["to_server"]:
            event["dest_port"] = PORT
        else:
            event["src_port"] = PORT
        out.append(event)
    return out


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else k, out)
    else:
        out[prefix] = value
    return out


# --- suricata-verify expectations -----------------------------------------------------------------


def _same(got: Any, want: Any) -> bool:
    if got is PRESENT:
        return True
    if isinstance(want, str) and (m := _TRUNCATED.match(want)):  # string-log-limit cut the value
        head, rest = m.group(1), int(m.group(2))
        return isinstance(got, str) and got.startswith(head) and len(got.encode()) == len(head) + rest
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_same, got, want))
    if isinstance(want, dict):
        same_keys = isinstance(got, dict) and got.keys() == want.keys()
        return same_keys and all(_same(got[k], want[k]) for k in want)
    return got == want and type(got) is type(want)


def _matches(event: dict[str, Any], key: str, want: Any) -> bool:
    if key == "mqtt.connect.username":
        return event.get("mqtt.connect.username_hash") == phi_hash(str(want).encode())
    if key.endswith(".message"):  # payloads are not kept: their length is
        got = event.get(key + "_len")
        return got is not None and got == len(str(want).encode())
    return key in event and _same(event[key], want)


def _has(event: dict[str, Any], ptype: str) -> bool:
    prefix = f"mqtt.{ptype}"
    return any(k == prefix or k.startswith(prefix + ".") for k in event)


def _applies(requires: dict[str, Any] | None) -> bool:
    requires = requires or {}
    if "lt-version" in requires and int(str(requires["lt-version"]).split(".")[0]) <= SURICATA_MAJOR:
        return False
    return int(str(requires.get("min-version", 0)).split(".")[0]) <= SURICATA_MAJOR


def _eve_types(folder: Path) -> set[str]:
    path = folder / "suricata.yaml"
    if not path.is_file():
        return set()
    loaded = yaml.safe_load(re.sub(r"^%YAML.*$", "", path.read_text(), flags=re.M)) or {}
    types: set[str] = set()
    for output in loaded.get("outputs") or []:
        for logger in (output.get("eve-log") or {}).get("types") or []:
            types |= set(logger) if isinstance(logger, dict) else {logger}
    return types


def _checks(folder: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The filters about MQTT events; a filter without event_type counts MQTT events too when MQTT is the
    only EVE logger of the folder."""
    only_mqtt = _eve_types(folder) == {"mqtt"}
    found = []
    for check in spec.get("checks") or []:
        flt = check.get("filter") or {}
        match = flt.get("match") or {}
        etype = match.get("event_type")
        if (etype == "mqtt" or (etype is None and only_mqtt and match)) and _applies(flt.get("requires")):
            found.append(flt)
    return found


def _folders() -> list[str]:
    if not SV.is_dir():
        return []
    return [
        str(t.parent.relative_to(SV))
        for t in sorted(SV.rglob("test.yaml"))
        if _checks(t.parent, yaml.safe_load(t.read_text()) or {})
    ]


def _pcap(folder: Path, spec: dict[str, Any]) -> Path | None:
    if spec.get("pcap"):
        path = (folder / spec["pcap"]).resolve()
        return path if path.is_file() else None
    pcaps = sorted(folder.glob("*.pcap"))
    return pcaps[0] if pcaps else None


# Expectations we miss on purpose: key -> why
KNOWN_DIFFERENCES = {
    "mqtt.disconnect.reason_code": "a v5 DISCONNECT of remaining length 1 carries its reason code (MQTT 5.0 "
    "3.14.2.1: only a 0 code may be left out); Suricata's parser logs 0 for any body shorter than 2 bytes",
}


def _outcome(evs: list[dict[str, Any]], match: dict[str, Any], want: int | None) -> tuple[bool, int]:
    """Whether the events fulfil one filter (modelled keys only), and how many match it."""
    keys = {k: v for k, v in match.items() if MODELLED.match(k)}
    dropped = [k for k in match if k not in keys]
    # a dropped key still says which packet types the event holds
    types = {m.group(1) for k in dropped if (m := re.match(r"mqtt\.(\w+)\.", k))}
    count = sum(
        all(_matches(e, k, v) for k, v in keys.items()) and all(_has(e, t) for t in types) for e in evs
    )
    if want is None or any(not _FIXED_HEADER.match(k) for k in dropped):
        # without one of its discriminating keys the filter can only promise a lower bound
        return count >= (1 if want is None else want), count
    return count == want, count


@functools.cache
def evaluate(name: str) -> dict[str, Any]:
    folder = SV / name
    spec = yaml.safe_load((folder / "test.yaml").read_text()) or {}
    pcap = _pcap(folder, spec)
    result: dict[str, Any] = {"pcap": pcap, "matched": [], "failed": [], "known": [], "keys": 0}
    if pcap is None or not _applies(spec.get("requires")):
        return result
    evs = [e for conn in connections(pcap) for e in events(conn)]
    for flt in _checks(folder, spec):
        match, want = flt["match"], flt.get("count")
        ok, count = _outcome(evs, match, want)
        outcome = "matched" if ok else "failed"
        if not ok and any(k in match for k in KNOWN_DIFFERENCES):
            # the known key reduced to "this packet type is there" (a fixed-header bit we do not model)
            known = {k: k.rsplit(".", 1)[0] + ".dup" for k in KNOWN_DIFFERENCES}
            rest = {known.get(k, k): v for k, v in match.items()}
            outcome = "known" if _outcome(evs, rest, want)[0] else outcome
        result["keys"] += sum(bool(MODELLED.match(k)) for k in match)
        result[outcome].append({"want": want, "got": count, "match": match})
    return result


@pytest.mark.parametrize("name", _folders())
def test_suricata_mqtt_expectations(shared_data: Path, name: str) -> None:
    result = evaluate(name)
    if result["pcap"] is None:
        pytest.skip("the capture this test names is not in the snapshot")
    if not result["matched"] and not result["failed"]:
        pytest.skip("no MQTT expectation applies to Suricata 9")
    assert not result["failed"], result["failed"]
    assert result["matched"]


def test_suricata_mqtt_summary(shared_data: Path) -> None:
    results = {name: evaluate(name) for name in _folders()}
    compared = {n: r for n, r in results.items() if r["matched"] or r["failed"]}
    matched = sum(len(r["matched"]) for r in compared.values())
    keys = sum(r["keys"] for r in compared.values())
    known = sum(len(r["known"]) for r in compared.values())
    print(f"\nsuricata-verify MQTT: {len(results)} folders, {len(compared)} compared, {matched} filters "
          f"({keys} field checks) match, {known} differ only by a known difference")  # fmt: skip
    assert len(compared) >= 25 and matched >= 150
    assert not any(r["failed"] for r in compared.values())


def test_secrets_never_leave_the_parser(shared_data: Path) -> None:
    """The captures log user "user", password "pass": neither value is in any message we produce."""
    msgs = [m for name in _folders() if (p := evaluate(name)["pcap"]) for c in connections(p) for _, m in c]
    connects = [m for m in msgs if m.kind == "mqtt.connect" and m.fields["password_present"]]
    assert connects
    text = repr([m.fields for m in msgs])
    assert "'pass'" not in text and "'user'" not in text
    assert all(m.fields["username_hash"] == phi_hash(b"user") for m in connects)
