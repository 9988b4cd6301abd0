"""The bidirectional flow table, updated once per batch.

Packets of a batch are grouped by the fast path's direction-independent flow hash with one numpy sort;
counters, first/last seen and TCP flags are aggregated per group with `reduceat`, so Python runs once per
flow per batch, not once per packet. A flow ends on TCP FIN/RST (after a short linger for the last
segments), on idle timeout, on active timeout, or when the table is full (oldest first, counted).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from medsentry.capture.records import PACKET_DTYPE, ST_OK
from medsentry.observe import FlowRecord

TCP, UDP = 6, 17
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
TRANSPORT = {TCP: "tcp", UDP: "udp", 1: "icmp", 58: "icmp6"}
# Positions in a packet record converted with .tolist().
_F_TS, _F_FLAGS, _F_SPORT, _F_DPORT, _F_PROTO, _F_IPVER, _F_VLAN, _F_DIR = map(
    PACKET_DTYPE.names.index, ("ts", "tcp_flags", "sport", "dport", "proto", "ipver", "vlan", "dir")
)
_F_SRC_MAC, _F_DST_MAC, _F_SRC_IP, _F_DST_IP = map(
    PACKET_DTYPE.names.index, ("src_mac", "dst_mac", "src_ip", "dst_ip")
)


@dataclass(frozen=True, slots=True)
class Timeouts:
    tcp_idle: float = 300.0
    udp_idle: float = 60.0
    closed_linger: float = 5.0
    active: float = 1800.0
    max_flows: int = 500_000


class Flow:
    """One flow's counters (`record`) and its inspection state (owned by the pipeline)."""

    __slots__ = ("client_dir", "closed", "inspect", "record", "state")

    def __init__(self, record: FlowRecord, client_dir: int) -> None:
        self.record = record
        self.client_dir = client_dir  # the `dir` value of packets the client sends
        self.closed = False
        self.inspect = True  # payloads still worth looking at
        self.state: object = None  # the pipeline's per-flow inspection state


def mac_str(raw: bytes) -> str | None:
    return None if raw == b"\x00" * 6 else raw.hex(":")


def ip_str(raw: bytes, ipver: int) -> str:
    return socket.inet_ntop(socket.AF_INET, raw[:4]) if ipver == 4 else socket.inet_ntop(socket.AF_INET6, raw)


# Ports that identify the server side when the first packet seen is not the client's.
_SERVICE_PORTS = frozenset(
    {
        20,
        21,
        22,
        23,
        25,
        53,
        67,
        69,
        80,
        104,
        110,
        123,
        137,
        138,
        143,
        161,
        162,
        389,
        443,
        445,
        514,
        554,
        631,
        636,
        993,
        995,
        1883,
        1900,
        2575,
        2762,
        3306,
        3389,
        5353,
        5355,
        8080,
        8443,
        8883,
        11112,
    }
)


class FlowTable:
    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self.flows: dict[int, Flow] = {}
        self.ended: list[Flow] = []  # ended inside update(): port reuse, table full
        self.evicted = 0
        self.total = 0
        self._next_sweep = 0.0

    def update(self, recs: np.ndarray) -> Iterator[tuple[Flow, np.ndarray, bool]]:
        """Account a batch. Yields (flow, row indices of its packets in time order, is_new) per flow."""
        ip = np.flatnonzero((recs["ipver"] != 0) & (recs["status"] == ST_OK))
        if not len(ip):
            return
        hashes = recs["flow_hash"][ip]
        order = ip[np.argsort(hashes, kind="stable")]
        h = recs["flow_hash"][order]
        starts = np.flatnonzero(np.concatenate(([True], h[1:] != h[:-1])))
        ends = np.append(starts[1:], len(order))
        d = recs["dir"][order].astype(np.int64)
        wl = recs["wirelen"][order].astype(np.int64)
        pk1 = np.add.reduceat(d, starts)
        by1 = np.add.reduceat(wl * d, starts)
        pk = ends - starts
        by = np.add.reduceat(wl, starts)
        flags = np.bitwise_or.reduceat(recs["tcp_flags"][order], starts)
        ts = recs["ts"][order]
        first_ts, last_ts = ts[starts].tolist(), np.maximum.reduceat(ts, starts).tolist()
        # Plain Python numbers from here on: numpy scalars cost several times more per operation.
        groups = zip(
            h[starts].tolist(),
            starts.tolist(),
            ends.tolist(),
            pk.tolist(),
            pk1.tolist(),
            by.tolist(),
            by1.tolist(),
            flags.tolist(),
            first_ts,
            last_ts,
            strict=True,
        )
        table = self.flows
        for key, s, e, n, n1, b, b1, f, t0, t1 in groups:
            flow = table.get(key)
            rows = order[s:e]
            new = flow is None
            if flow is not None and flow.closed and recs["tcp_flags"][rows[0]] & (SYN | ACK) == SYN:
                self.ended.append(table.pop(key))  # the 4-tuple is reused by a new connection
                new = True
            if new:
                flow = self._create(key, recs, rows)
            r = flow.record
            n0, b0 = n - n1, b - b1
            if flow.client_dir == 0:
                r.packets_c2s += n0
                r.bytes_c2s += b0
                r.packets_s2c += n1
                r.bytes_s2c += b1
            else:
                r.packets_c2s += n1
                r.bytes_c2s += b1
                r.packets_s2c += n0
                r.bytes_s2c += b0
            if t0 < r.first_seen:
                r.first_seen = t0
            if t1 > r.last_seen:
                r.last_seen = t1
            if r.transport == "tcp":
                if f & RST:
                    r.tcp_state, flow.closed = "reset", True
                elif f & FIN:
                    r.tcp_state, flow.closed = "closed", True
                elif r.tcp_state in (None, "syn") and f & ACK:
                    r.tcp_state = "established"
            yield flow, rows, new

    def _create(self, key: int, recs: np.ndarray, rows: np.ndarray) -> Flow:
        # One conversion of the whole record: reading numpy fields one by one costs several times more.
        first = recs[rows[0]].tolist()
        flags, sport, dport, proto = first[_F_FLAGS], first[_F_SPORT], first[_F_DPORT], first[_F_PROTO]
        if proto == TCP and flags & (SYN | ACK) == SYN:
            sender_is_client = True
        elif proto == TCP and flags & (SYN | ACK) == SYN | ACK:
            sender_is_client = False
        else:  # mid-stream or UDP: the side on a service port is the server
            sender_is_client = not (sport in _SERVICE_PORTS and dport not in _SERVICE_PORTS) and not (
                sport < 1024 <= dport
            )
        ipver = first[_F_IPVER]
        a = (mac_str(first[_F_SRC_MAC]), ip_str(first[_F_SRC_IP], ipver), sport)
        b = (mac_str(first[_F_DST_MAC]), ip_str(first[_F_DST_IP], ipver), dport)
        client, server = (a, b) if sender_is_client else (b, a)
        ts = first[_F_TS]
        rec = FlowRecord(
            transport=TRANSPORT.get(proto, str(proto)),
            client_mac=client[0],
            client_ip=client[1],
            client_port=client[2],
            server_mac=server[0],
            server_ip=server[1],
            server_port=server[2],
            first_seen=ts,
            last_seen=ts,
            tcp_state="syn" if proto == TCP and flags & SYN else None,
            vlan=first[_F_VLAN] or None,
        )
        d = first[_F_DIR]
        flow = Flow(rec, d if sender_is_client else 1 - d)
        if len(self.flows) >= self.timeouts.max_flows:
            self._evict_oldest(max(1, self.timeouts.max_flows // 10))
        self.flows[key] = flow
        self.total += 1
        return flow

    def _evict_oldest(self, n: int) -> None:
        # In bulk, so a flood of new flows costs one sort per n flows rather than a scan per flow.
        for key in sorted(self.flows, key=lambda k: self.flows[k].record.last_seen)[:n]:
            self.ended.append(self.flows.pop(key))
        self.evicted += n

    def expire(self, now: float, force: bool = False) -> list[Flow]:
        """Flows that ended by `now` (all of them with force), removed from the table."""
        done, self.ended = self.ended, []
        if not force and now < self._next_sweep:
            return done
        self._next_sweep = now + 5.0
        t = self.timeouts
        for key, flow in list(self.flows.items()):
            r = flow.record
            idle = now - r.last_seen
            limit = t.closed_linger if flow.closed else (t.tcp_idle if r.transport == "tcp" else t.udp_idle)
            if force or idle > limit or now - r.first_seen > t.active:
                done.append(self.flows.pop(key))
        return done
