"""The bidirectional flow table: counters in C (`_fastpath.FlowTable`), inspection state in Python.

The C table keys flows by the fast path's direction-independent flow hash and accounts every packet
(packets/bytes per direction, first/last seen, TCP state). Python sees a flow once per batch, and only
when it is new or still has rows to inspect: flows it has stopped inspecting (`stop`) and the in-order
segments of a TCP side whose inspection budget is spent (`arm`), or of a DICOM side between data-set
fragments its parser only skips (`arm_pdata`), cost it nothing. A flow ends on TCP
FIN/RST (after a short linger for the last segments), on idle timeout, on active timeout, or when the
table is full (oldest first, counted); its counters are copied into its `FlowRecord` then.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from medsentry.capture import _fastpath
from medsentry.capture.records import FIELDS
from medsentry.observe import FlowRecord

TCP: Final = 6
UDP: Final = 17
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
ACK: Final = 0x10
TRANSPORT: Final = {TCP: "tcp", UDP: "udp", 1: "icmp", 58: "icmp6"}
# Positions of a record's fields in the tuples `_fastpath.records` gives (numpy's `tolist` order).
_F_TS: Final = FIELDS.index("ts")
_F_FLAGS: Final = FIELDS.index("tcp_flags")
_F_SPORT: Final = FIELDS.index("sport")
_F_DPORT: Final = FIELDS.index("dport")
_F_PROTO: Final = FIELDS.index("proto")
_F_IPVER: Final = FIELDS.index("ipver")
_F_VLAN: Final = FIELDS.index("vlan")
_F_DIR: Final = FIELDS.index("dir")
_F_SRC_MAC: Final = FIELDS.index("src_mac")
_F_DST_MAC: Final = FIELDS.index("dst_mac")
_F_SRC_IP: Final = FIELDS.index("src_ip")
_F_DST_IP: Final = FIELDS.index("dst_ip")
_F_HASH: Final = FIELDS.index("flow_hash")


@dataclass(frozen=True, slots=True)
class Timeouts:
    tcp_idle: float = 300.0
    udp_idle: float = 60.0
    closed_linger: float = 5.0
    active: float = 1800.0
    max_flows: int = 500_000


class Flow:
    """One flow's counters (`record`) and its inspection state (owned by the pipeline)."""

    __slots__ = ("client_dir", "id", "inspect", "key", "record", "state")

    def __init__(self, record: FlowRecord, client_dir: int, flow_id: int = -1, key: int = 0) -> None:
        self.record = record
        self.client_dir = client_dir  # the `dir` value of packets the client sends
        self.id = flow_id  # in the C table
        self.key = key  # the direction-independent flow hash: the C table's key and sort order
        self.inspect = True  # payloads still worth looking at
        self.state: Any = None  # the pipeline's per-flow inspection state


# Address texts, remembered: every flow and datagram names its hosts again, a hospital's few thousand
# addresses mostly, and a lookup costs a fraction of `inet_ntop`. Plain dicts by the raw bytes, not
# lru_cache: that keeps a recency list and keys two arguments by a tuple, on every call. Bounded: a sweep of
# spoofed addresses only clears them.
_MAC_TEXTS: Final[dict[bytes, str]] = {}
_IP_TEXTS: Final[tuple[dict[bytes, str], dict[bytes, str]]] = ({}, {})  # IPv4, IPv6 by their 16 raw bytes
_MAX_TEXTS: Final = 1 << 16
_NO_MAC: Final = b"\x00" * 6


def mac_str(raw: bytes) -> str | None:
    """A record's MAC as text; None for all zeros (no MAC: raw IP link types)."""
    text = _MAC_TEXTS.get(raw)
    if text is None:
        if raw == _NO_MAC:
            return None
        if len(_MAC_TEXTS) >= _MAX_TEXTS:
            _MAC_TEXTS.clear()
        text = _MAC_TEXTS[raw] = raw.hex(":")
    return text


def ip_str(raw: bytes, ipver: int) -> str:
    """A record's IP address (16 bytes, an IPv4 address in the first 4) as text."""
    texts = _IP_TEXTS[0] if ipver == 4 else _IP_TEXTS[1]
    text = texts.get(raw)
    if text is None:
        if len(texts) >= _MAX_TEXTS:
            texts.clear()
        family, packed = (socket.AF_INET, raw[:4]) if ipver == 4 else (socket.AF_INET6, raw)
        text = texts[raw] = socket.inet_ntop(family, packed)
    return text


# Ports that identify the server side when the first packet seen is not the client's.
_SERVICE_PORTS: Final = frozenset(
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


_as_tuples: Final = _fastpath.records  # records at some rows as tuples of their fields
# the C table's FS_* values; of variable length to mypyc, whose fixed tuples are built as objects to index
_TCP_STATES: Final[tuple[str | None, ...]] = (None, "syn", "established", "closed", "reset")
_WINDOW: Final = 4096  # rows converted to Python lists at a time
# A flow with more rows than this in one batch (a bulk transfer: an image's pixel data) has them converted
# only as Python reaches them (`Rows.ready`), a few at a time: C walks most of them itself (`walk_run`).
_LAZY_ROWS = 64
# rows converted at a place, growing while the loop reads on in order
_LAZY_FIRST: Final = 8
_LAZY_MOST: Final = 512


class Rows:
    """A flow's rows of one batch that Python still has to look at, one plain list per field, in time
    order: batch row, payload start in the batch buffer, payload length, TCP sequence number of the
    payload (one past a SYN's), `dir`, time stamp; `block` holds the same rows as C gave them (n x 5 int64,
    the fields but the time), which `walk_run` reads in place, and `recs` the batch's records.

    A lazy Rows (a long run) has lists of the full length whose values are only right from where `ready`
    converted them: read a row only below what `ready(i)` returned for it."""

    __slots__ = ("_at", "_cols", "_hi", "_lo", "dir", "len", "recs", "row", "seq", "start", "ts")

    def __init__(self, row: list[int], start: list[int], length: list[int], seq: list[int], d: list[int],
                 ts: list[float], cols: np.ndarray, recs: np.ndarray, at: int = 0, converted: bool = True
                 ) -> None:  # fmt: skip
        self.row, self.start, self.len, self.seq, self.dir, self.ts = row, start, length, seq, d, ts
        # `block` is cols[at : at + n], sliced when asked for: most flows' rows are never walked by C, and
        # a numpy view costs more than the rest of a small flow's Rows
        self._cols, self._at, self.recs = cols, at, recs
        self._lo, self._hi = 0, len(row) if converted else 0

    @property
    def block(self) -> np.ndarray:
        cols, at, n = self._cols, self._at, len(self.row)
        return cols if at == 0 and len(cols) == n else cols[at : at + n]

    @classmethod
    def of(cls, block: np.ndarray, recs: np.ndarray) -> Rows:
        """Rows converted at once."""
        return cls(*_lists(block, 0, len(block), recs), block, recs)

    @classmethod
    def walked(cls, block: np.ndarray, recs: np.ndarray) -> Rows:
        """TCP rows, converted now if few, else only as Python reaches them (C walks most of a long run)."""
        return cls.lazy(block, recs) if len(block) > _LAZY_ROWS else cls.of(block, recs)

    @classmethod
    def lazy(cls, block: np.ndarray, recs: np.ndarray) -> Rows:
        n = len(block)
        zeros = [0] * n
        return cls(zeros, zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy(), [0.0] * n, block, recs,
                   converted=False)  # fmt: skip

    def ready(self, i: int) -> int:
        """Rows from `i` on converted: up to the position returned."""
        if self._lo <= i < self._hi:
            return self._hi
        # Where a walk stopped, Python usually reads a row or two (a command) before C walks on again.
        grown = min(2 * (self._hi - self._lo), _LAZY_MOST) if i == self._hi else 0
        j = min(len(self.row), i + max(grown, _LAZY_FIRST))
        at = self._at
        (self.row[i:j], self.start[i:j], self.len[i:j], self.seq[i:j], self.dir[i:j],
         self.ts[i:j]) = _lists(self._cols, at + i, at + j, self.recs)  # fmt: skip
        self._lo, self._hi = i, j
        return j


_row_lists: Final = _fastpath.row_lists


def _lists(
    cols: np.ndarray, lo: int, hi: int, recs: np.ndarray
) -> tuple[list[int], list[int], list[int], list[int], list[int], list[float]]:
    """Rows lo..hi of C's (n x 5) as plain lists: batch row, start, length, sequence number, dir, and the
    row's time stamp (from `recs`), converted in C (`_fastpath.row_lists`)."""
    return _row_lists(cols, lo, hi, recs)


class FlowTable:
    def __init__(self, timeouts: Timeouts | None = None) -> None:
        self.timeouts = timeouts or Timeouts()
        self._c = _fastpath.FlowTable(self.timeouts.max_flows)
        self.flows: dict[int, Flow] = {}  # by id in the C table
        self._next_sweep = 0.0
        self._groups: np.ndarray = np.empty(0, dtype=np.int64)
        self._rows: np.ndarray = np.empty(0, dtype=np.int64)

    @property
    def total(self) -> int:
        return self._c.total

    @property
    def evicted(self) -> int:
        return self._c.evicted

    def update(
        self, recs: np.ndarray, buf: bytes | bytearray | memoryview = b""
    ) -> Iterator[tuple[Flow, bool, int, Rows]]:
        """Account a batch (`buf`: the buffer its records point into). Yields (flow, is_new, its first row
        in the batch, rows to inspect) for each flow that is new or has rows to inspect, in flow hash
        order."""
        n = len(recs)
        if len(self._rows) < n * 5:
            self._groups = np.empty(n * 4, dtype=np.int64)
            self._rows = np.empty(n * 5, dtype=np.int64)
        ng: int  # typed: compiled, the loop below over an Any bound compares and multiplies generically
        nr: int
        ng, nr = self._c.update(recs, n, self._groups, self._rows, buf)
        if not ng:
            return
        # Plain Python numbers from here on: numpy scalars cost several times more per operation. Rows
        # are converted a window at a time: a whole batch of them as Python objects is 10+ MB. A window
        # ends before a long run (`_LAZY_ROWS`), which is converted only as Python reaches it.
        cols = self._rows[: nr * 5].reshape(nr, 5)
        groups: list[int] = self._groups[: ng * 4].tolist()
        table = self.flows
        off = lo = hi = 0
        row: list[int] = []
        ts: list[float] = []
        start, length, seq, d = row, row, row, row
        for k in range(0, ng * 4, 4):
            fid, new, first, cnt = groups[k], groups[k + 1], groups[k + 2], groups[k + 3]
            flow = self._create(fid, recs, first) if new else table[fid]
            end = off + cnt
            if cnt > _LAZY_ROWS:
                block = cols[off:end]
                rows = Rows.lazy(block, recs) if flow.record.transport == "tcp" else Rows.of(block, recs)
            else:
                if end > hi:
                    lo, hi, j = off, end, k + 4
                    while hi - lo < _WINDOW and j < ng * 4 and groups[j + 3] <= _LAZY_ROWS:
                        hi += groups[j + 3]
                        j += 4
                    row, start, length, seq, d, ts = _lists(cols, lo, hi, recs)
                a, b = off - lo, end - lo
                rows = Rows(row[a:b], start[a:b], length[a:b], seq[a:b], d[a:b], ts[a:b], cols, recs, off)
            off = end
            yield flow, bool(new), first, rows

    def stop(self, flow: Flow) -> None:
        """Inspection of this flow is over: its packets are only counted from now on."""
        flow.inspect, flow.state = False, None
        self._c.ignore(flow.id)

    def arm(self, flow: Flow, d: int, next_seq: int) -> None:
        """The side sending with `dir` d is past its budget: C consumes its in-order segments."""
        self._c.arm(flow.id, d, next_seq)

    def arm_pdata(self, flow: Flow, d: int, next_seq: int, skip: int, pdu_left: int) -> None:
        """The DICOM side sending with `dir` d is between data-set fragments its parser only skips (`skip`
        bytes of the current one, `pdu_left` of the P-DATA-TF PDU): C walks its in-order segments until
        one holds anything else."""
        self._c.arm_pdata(flow.id, d, next_seq, skip, pdu_left)

    def disarm(self, flow: Flow, d: int) -> tuple[int, int, int]:
        """Take the side back: its next expected sequence number, and for `arm_pdata` where the walk got
        (skip, pdu_left)."""
        return self._c.disarm(flow.id, d)

    def _create(self, fid: int, recs: np.ndarray, row: int) -> Flow:
        # One conversion of the whole record, in C: reading numpy fields one by one costs several times more,
        # and so does numpy's own conversion of a record.
        first: tuple[Any, ...] = _as_tuples(recs, [row])[0]
        # typed locals: the record's fields are Any, and compiled, each test or operation on one is generic
        flags: int = first[_F_FLAGS]
        sport: int = first[_F_SPORT]
        dport: int = first[_F_DPORT]
        proto: int = first[_F_PROTO]
        if proto == TCP and flags & (SYN | ACK) == SYN:
            sender_is_client = True
        elif proto == TCP and flags & (SYN | ACK) == SYN | ACK:
            sender_is_client = False
        else:  # mid-stream or UDP: the side on a service port is the server
            sender_is_client = not (sport in _SERVICE_PORTS and dport not in _SERVICE_PORTS) and not (
                sport < 1024 <= dport
            )
        ipver: int = first[_F_IPVER]
        a = (mac_str(first[_F_SRC_MAC]), ip_str(first[_F_SRC_IP], ipver), sport)
        b = (mac_str(first[_F_DST_MAC]), ip_str(first[_F_DST_IP], ipver), dport)
        client, server = (a, b) if sender_is_client else (b, a)
        ts: float = first[_F_TS]
        rec = FlowRecord(
            transport=TRANSPORT.get(proto) or str(proto),
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
        d: int = first[_F_DIR]
        flow = Flow(rec, d if sender_is_client else 1 - d, fid, first[_F_HASH])
        self.flows[fid] = flow
        return flow

    def expire(self, now: float, force: bool = False) -> list[Flow]:
        """Flows that ended by `now` (all of them with force), removed from the table, counters filled in."""
        if force or now >= self._next_sweep:
            self._next_sweep = now + 5.0
            t = self.timeouts
            self._c.expire(now, force, t.closed_linger, t.tcp_idle, t.udp_idle, t.active)
        done = []
        flows = self.flows
        for counters in self._c.take_ended():
            # indexed and deleted rather than dict.pop: compiled, a method call of ≈ 2,500 instructions
            key = counters[0]
            flow = flows[key]
            del flows[key]
            _fill(flow, counters)
            done.append(flow)
        return done

    def so_far(self, flow: Flow) -> FlowRecord:
        """A live flow's record with its counters as they stand, filled in place (its end fills them anew)."""
        _fill(flow, self._c.counters(flow.id))
        return flow.record


# C's counters of a flow: id, packets and bytes by `dir`, first and last time, TCP state, TTL by `dir`
_Counters = tuple[int, int, int, int, int, float, float, int, int, int]


def _fill(flow: Flow, counters: _Counters) -> None:
    """The record's counters from C's, which count by the records' `dir` (0 = TTL unknown). One tuple
    argument, read by index: unpacked into arguments, each call built a list and a tuple of them."""
    _, p0, p1, b0, b1, t0, t1, state, ttl0, ttl1 = counters
    r = flow.record
    if flow.client_dir == 0:
        r.packets_c2s, r.packets_s2c, r.bytes_c2s, r.bytes_s2c = p0, p1, b0, b1
        r.client_ttl, r.server_ttl = ttl0 or None, ttl1 or None
    else:
        r.packets_c2s, r.packets_s2c, r.bytes_c2s, r.bytes_s2c = p1, p0, b1, b0
        r.client_ttl, r.server_ttl = ttl1 or None, ttl0 or None
    r.first_seen, r.last_seen = t0, t1
    if r.transport == "tcp":
        r.tcp_state = _TCP_STATES[state]
