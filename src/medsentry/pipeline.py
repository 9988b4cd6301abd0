"""capture -> decode -> protocols -> observations: the packet pipeline, identical for files and live input.

Per batch: the flow table (C) accounts every packet and hands this module only the rows it still has to
look at, grouped by flow; payloads go to protocol modules only where it pays: every datagram of a
dissected UDP/link-layer protocol, and the head of each TCP connection up to the module's byte budget
(`INSPECT_BYTES`, per direction; the whole connection for DICOM, HL7 and MQTT, whose every message
matters) or until its parser says it is `done`. A TCP connection no module claims
after the first payload of each side is not looked at again; past its budget a side costs Python nothing,
nor do the bytes a parser only skips (DICOM data sets: the C flow table walks their framing).
"""

from __future__ import annotations

import gc
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np

from medsentry import protocols
from medsentry.capture import _fastpath
from medsentry.capture.errors import CaptureError
from medsentry.capture.files import CaptureFile, expand_paths
from medsentry.capture.live import LiveCapture
from medsentry.capture.records import FIELDS, Batch, Buffer
from medsentry.capture.windows import Windows
from medsentry.decode.flows import SYN, TCP, Flow, FlowTable, Rows, Timeouts, mac_str
from medsentry.decode.streams import Direction
from medsentry.observe import FlowRecord, Observation
from medsentry.protocols.base import Malformed, Message

MAX_PENDING = 16_384  # observations held to be put in packet order, per batch
# A held observation's place among the held (< MAX_PENDING) in its sort key, below its row (< BATCH, 2**16):
# keys under 2**30 are one-digit ints, which a sort compares directly instead of through the generic
# protocol (sorting 700 keys: 33 instead of 65 us).
_HELD_BITS: Final = 14
_HELD_MASK: Final = (1 << _HELD_BITS) - 1
# A message's (source MAC, IP, destination MAC, IP, source port, destination port): `_ends`
Ends = tuple[str | None, str | None, str | None, str | None, int | None, int | None]
_NO_ENDS: Final[Ends] = (None, None, None, None, None, None)

# The ethertypes link-layer dissectors read, as `_fastpath.link_rows` takes them.
_LINK_TYPES: Final = np.array(sorted(protocols.BY_ETHERTYPE), np.uint16).tobytes()

# Positions of a record's fields in the tuples `_fastpath.records` gives (numpy's `tolist` order).
_TS: Final = FIELDS.index("ts")
_FRAME_OFF: Final = FIELDS.index("frame_off")
_PAYLOAD_OFF: Final = FIELDS.index("payload_off")
_PAYLOAD_LEN: Final = FIELDS.index("payload_len")
_ETHERTYPE: Final = FIELDS.index("ethertype")
_SPORT: Final = FIELDS.index("sport")
_DPORT: Final = FIELDS.index("dport")
_TCP_WIN: Final = FIELDS.index("tcp_win")
_PROTO: Final = FIELDS.index("proto")
_TCP_FLAGS: Final = FIELDS.index("tcp_flags")
_TTL: Final = FIELDS.index("ttl")
_DIR: Final = FIELDS.index("dir")
_SRC_MAC: Final = FIELDS.index("src_mac")
_DST_MAC: Final = FIELDS.index("dst_mac")


@dataclass
class Stats:
    packets: int = 0
    bytes: int = 0
    malformed: int = 0  # frames the decoder could not parse (bad headers, truncated)
    fragments: int = 0
    unsupported_link: int = 0
    flows: int = 0
    flows_evicted: int = 0
    observations: int = 0
    malformed_by_protocol: Counter[str] = field(default_factory=Counter)
    # "<protocol>: <exception type>" -> payloads a dissector failed on other than with Malformed: a bug,
    # counted (never with the exception's text, which may quote the payload) and the flow left alone
    dissector_errors: Counter[str] = field(default_factory=Counter)
    reassembly_gaps: int = 0
    capture_dropped: int = 0  # live: frames the kernel or the interface dropped (analysis fell behind)
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None

    def merge(self, other: Stats) -> None:
        for name in (
            "packets",
            "bytes",
            "malformed",
            "fragments",
            "unsupported_link",
            "flows",
            "flows_evicted",
            "observations",
            "reassembly_gaps",
            "capture_dropped",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.malformed_by_protocol.update(other.malformed_by_protocol)
        self.dissector_errors.update(other.dissector_errors)
        self.errors.extend(e for e in other.errors if e not in self.errors)
        self.files.extend(f for f in other.files if f not in self.files)
        ts = [t for t in (self.first_ts, other.first_ts) if t is not None]
        self.first_ts = min(ts) if ts else None
        ts = [t for t in (self.last_ts, other.last_ts) if t is not None]
        self.last_ts = max(ts) if ts else None

    def to_dict(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "malformed": self.malformed + sum(self.malformed_by_protocol.values()),
            "malformed_frames": self.malformed,
            "malformed_by_protocol": dict(self.malformed_by_protocol),
            "dissector_errors": dict(self.dissector_errors),
            "fragments": self.fragments,
            "unsupported_link": self.unsupported_link,
            "flows": self.flows,
            "flows_evicted": self.flows_evicted,
            "reassembly_gaps": self.reassembly_gaps,
            "capture_dropped": self.capture_dropped,
            "observations": self.observations,
            "files": self.files,
            "errors": self.errors,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
        }


class _Stream:
    """Inspection state of one TCP connection."""

    __slots__ = ("armed", "budget", "dirs", "ends_from_client", "ends_to_client", "first", "has_done",
                 "ignores", "isn", "joined", "module", "name", "parser", "pdata", "tries")

    def __init__(self) -> None:
        self.module: ModuleType | None = None
        self.name = ""  # the module's NAME, read once
        self.parser: protocols.base.StreamParser | None = None
        # the parser's optional methods (protocols.base), None where it has none
        self.ignores: Callable[[bool], int] | None = None
        self.pdata: Callable[[bool], tuple[int, int] | None] | None = None
        self.has_done = False  # the parser tells when it is `done`
        # the flow's `_ends` from the client and to it (two attributes: compiled, indexing a pair of tuples
        # by a variable builds the pair as an object, three tuples for every message)
        self.ends_from_client: Ends = _NO_ENDS
        self.ends_to_client: Ends = _NO_ENDS
        # index: 0 = client to server, 1 = server to client. A list: compiled, a tuple of two indexed by a
        # variable is built as an object for each read
        self.dirs = [Direction(), Direction()]
        self.budget = [0, 0]
        self.tries = 0
        self.first: bytes | None = None  # the start of a first payload no module took (a greeting)
        # each side's SYN(-ACK) sequence numbers + 1 until its first data; then None
        self.isn: list[list[int] | None] = [[], []]
        # sides whose stream starts inside the connection (no SYN seen) and whose parser was not told yet
        self.joined = [False, False]
        self.armed = [_NOT_ARMED, _NOT_ARMED]  # sides whose in-order segments the C flow table consumes


class Analyzer:
    """Feeds batches through flows and protocol modules; hands each Observation to `emit`."""

    def __init__(
        self,
        emit: Callable[[Observation], None],
        timeouts: Timeouts | None = None,
        source: str = "pcap",
    ) -> None:
        self.emit = emit
        self.flows = FlowTable(timeouts)
        self.stats = Stats()
        self.source = source
        self._ttl_seen: set[str] = set()
        self.batches = 0  # fed so far: the first element of `position`
        # The batch's observations until they go out in packet order, by key: row << _HELD_BITS | place
        # among the held.
        self._pending: dict[int, Observation] = {}
        self._emitted = 0  # emission numbers given in this batch (a held one's: this + its place)
        self._rows: list[int] | None = None  # a shard's rows in the whole batch
        # Where the observation being emitted belongs in the run's order (`position`): the held one's sort
        # key, or the ended flow's (batch, 1, last packet, key). Kept as parts: only `--workers` shards read
        # the position, and a tuple built for each of a run's observations cost more than the reading.
        self._held_key = 0
        self._ended: tuple[Any, ...] | None = None

    @property
    def position(self) -> tuple[Any, ...]:
        """Where the observation being emitted belongs in the run's order: (batch, phase, ...), see `feed`."""
        if self._ended is not None:
            return self._ended
        key, rows = self._held_key, self._rows
        row = key >> _HELD_BITS
        return self.batches, 0, row if rows is None else rows[row], self._emitted + (key & _HELD_MASK)

    # -- batches -------------------------------------------------------------------------------------
    def feed(self, batch: Batch) -> None:
        """Observations come out in `position` order: per batch, (0) the packets' observations in packet
        order (a TCP message at the segment that completed it), then (1) flows that ended, by last packet
        and key. Flows are worked through in key order, so a batch's observations wait and are sorted by
        packet first: detection judges "who came first" by the capture, not by a hash. A `--workers` shard
        has only some of the flows, yet its positions are the ones a single process gives them (the whole
        batch's rows; one packet's observations all come from its own flow), so merging shards by position
        restores the single process's order."""
        recs = batch.recs
        self.feed_share(batch, None, float(recs["ts"][-1]) if len(recs) else None)

    def feed_share(self, batch: Batch, rows: list[int] | None, now: float | None) -> None:
        """A batch, or one `--workers` shard's share of it (`deal.SegmentReader`): `rows` are the positions
        of its records in the whole batch (None: the whole batch), `now` the whole batch's clock (its last
        packet's time: flows time out by it)."""
        self.batches += 1
        b = self.batches
        recs = batch.recs
        self._rows, self._emitted = rows, 0
        st = self.stats
        if not len(recs):
            if now is not None:
                self._expire(now, b)
            return
        st.packets += len(recs)
        wire, malformed, fragments, unsupported = _tally(recs)
        st.bytes += wire
        st.malformed += malformed
        st.fragments += fragments
        st.unsupported_link += unsupported
        ts = recs["ts"]
        st.first_ts = float(ts[0]) if st.first_ts is None else st.first_ts
        st.last_ts = float(ts[-1])

        self._link_layer(batch)
        udp_ports = protocols.BY_UDP_PORT
        table = self.flows
        ttl_seen = self._ttl_seen
        firsts: list[tuple[int, Flow]] = []
        datagrams: list[tuple[ModuleType, Flow, list[int]]] = []
        for flow, new, first, flow_rows in table.update(recs, batch.buf):
            r = flow.record
            if new and r.client_ip not in ttl_seen:
                firsts.append((first, flow))
            if not flow.inspect or not flow_rows.row:
                continue
            if r.transport == "udp":
                mod = udp_ports.get(r.server_port) or udp_ports.get(r.client_port)
                if mod is None:
                    mod = self._by_content(batch, flow, flow_rows.row[0])
                    if mod is None:
                        table.stop(flow)
                        continue
                r.app = mod.NAME
                datagrams.append((mod, flow, flow_rows.row))
            elif r.transport == "tcp":
                self._stream(batch.buf, flow, flow_rows)
            else:
                table.stop(flow)
        if datagrams:
            self._datagrams(batch, datagrams)
        # Flows come in key order: the earliest first packet of an IP is the one whatever the order (and
        # whichever `--workers` shard has the flow).
        firsts.sort(key=lambda rf: rf[0])
        for first, flow in firsts:
            if flow.record.client_ip not in ttl_seen:
                self._first_packet_facts(batch, flow, first)
        self._emit_pending()
        self._expire(now or st.last_ts, b)

    def _by_content(self, batch: Batch, flow: Flow, row: int) -> ModuleType | None:
        """A UDP flow's module by its first datagram (once: later batches find it again by its app)."""
        r = flow.record
        if r.app is not None:
            return protocols.BY_NAME[r.app]
        rec = batch.recs[row]
        start = int(rec["frame_off"]) + int(rec["payload_off"])
        return protocols.for_datagram(_payload(batch.buf, start, int(rec["payload_len"])))

    def _hold(self, row: int, obs: Observation) -> None:
        pending = self._pending
        # One int, the row above the place among the held: all differ, and one row's observations keep
        # the order they came in. Sorted alone: (key, observation) pairs sorted as tuples cost each
        # comparison an equality test and an order test through the generic protocol (2 % of the analysis).
        pending[row << _HELD_BITS | len(pending)] = obs
        if len(pending) >= MAX_PENDING:
            self._emit_pending()

    def _emit_pending(self) -> None:
        """The held observations, in packet order. Past MAX_PENDING in one batch (only hostile traffic:
        a segment of 2-byte MQTT pings makes 700 observations) they leave in chunks, each in packet order,
        so memory stays bounded; such a batch's order may then differ between `--workers` runs."""
        pending = self._pending
        emit = self.emit
        self._ended = None
        for key in sorted(pending):  # by row, then the order held in (`_hold`)
            self._held_key = key
            emit(pending[key])
        self._emitted += len(pending)
        self.stats.observations += len(pending)
        pending.clear()

    def _expire(self, now: float, b: int, force: bool = False) -> None:
        ended = self.flows.expire(now, force)
        ended.sort(key=lambda f: (f.record.last_seen, f.key))
        for flow in ended:
            self._ended = (b, 1, flow.record.last_seen, flow.key)
            self._flow_ended(flow)
        self._ended = None

    def finish(self) -> Stats:
        self._expire(self.stats.last_ts or 0.0, self.batches + 1, force=True)
        self.stats.flows = self.flows.total
        self.stats.flows_evicted = self.flows.evicted
        return self.stats

    # -- per protocol family -------------------------------------------------------------------------
    def _link_layer(self, batch: Batch) -> None:
        recs = batch.recs
        rows: list[int] = _fastpath.link_rows(recs, _LINK_TYPES)
        if not rows:
            return
        by_type = protocols.BY_ETHERTYPE
        buf = batch.buf
        for k in range(0, len(rows), _WINDOW):  # converted a window at a time, read by index (`_datagrams`)
            chunk = rows[k : k + _WINDOW]
            window = _tuples(recs, chunk)
            for i in range(len(chunk)):
                row, rec = chunk[i], window[i]
                mod = by_type[rec[_ETHERTYPE]]
                start = rec[_FRAME_OFF] + rec[_PAYLOAD_OFF]
                for msg in self._parse(mod, _payload(buf, start, rec[_PAYLOAD_LEN])):
                    ends = (mac_str(rec[_SRC_MAC]), None, mac_str(rec[_DST_MAC]), None, None, None)
                    self._out(msg, mod.NAME, row, rec[_TS], ends, None)

    def _datagrams(self, batch: Batch, flows: list[tuple[ModuleType, Flow, list[int]]]) -> None:
        """The datagrams of the batch's dissected UDP flows (module, flow, rows). Their records are converted
        together: one conversion per flow (a DNS flow has one or two rows) cost more than its parse."""
        buf, recs = batch.buf, batch.recs
        wanted = [row for _, _, rows in flows for row in rows]
        # Records are converted to tuples by C a window at a time (a numpy field read costs a microsecond
        # or more, numpy's own conversion about as much a row; the window bounds the transient memory),
        # and read by index: a generator's step per datagram cost as much as converting its record.
        window: list[tuple[Any, ...]] = []
        at = base = 0
        for mod, flow, rows in flows:
            name = mod.NAME
            on_ports = protocols.ON_PORTS.get(name)
            r, client_dir = flow.record, flow.client_dir
            for row in rows:
                if at - base == len(window):
                    base = at
                    window = _tuples(recs, wanted[at : at + _WINDOW])
                rec = window[at - base]
                at += 1
                start = rec[_FRAME_OFF] + rec[_PAYLOAD_OFF]
                payload = _payload(buf, start, rec[_PAYLOAD_LEN])
                sport, dport = rec[_SPORT], rec[_DPORT]
                if on_ports is None:
                    msgs = self._parse(mod, payload)
                else:
                    msgs = self._parse(mod, payload, on_ports, sport, dport)
                if not msgs:
                    continue
                # The flow's addresses as text are the datagram's (one flow, one pair of addresses); its
                # MACs are read from each datagram, as they may change under a flow (a spoofed gateway).
                from_client = rec[_DIR] == client_dir
                src_ip, dst_ip = (r.client_ip, r.server_ip) if from_client else (r.server_ip, r.client_ip)
                ends = (mac_str(rec[_SRC_MAC]), src_ip, mac_str(rec[_DST_MAC]), dst_ip, sport, dport)
                for msg in msgs:
                    self._out(msg, name, row, rec[_TS], ends, "udp")

    def _parse(
        self,
        mod: ModuleType,
        payload: bytes,
        on_ports: Callable[..., list[Message]] | None = None,
        *ports: int,
    ) -> list[Message]:
        try:
            return on_ports(payload, *ports) if on_ports is not None else mod.parse_datagram(payload)
        except Malformed:
            self.stats.malformed_by_protocol[mod.NAME] += 1
            return []
        except MemoryError:
            raise
        except Exception as exc:  # a dissector's bug must not end the run
            self.stats.dissector_errors[f"{mod.NAME}: {type(exc).__name__}"] += 1
            return []

    def _start(self, st: _Stream, mod: ModuleType, r: FlowRecord) -> None:
        """The connection is `mod`'s: its parser, and which optional methods that has."""
        parser: Any = mod.StreamParser()  # its optional methods are asked for by name below
        st.module, st.name, st.parser = mod, mod.NAME, parser
        st.ends_from_client, st.ends_to_client = _ends(r, True), _ends(r, False)
        optional = _optional(type(parser))
        st.ignores = parser.ignores if "ignores" in optional else None
        st.pdata = parser.pdata_state if "pdata_state" in optional else None
        st.has_done = "done" in optional
        limit = protocols.INSPECT_BYTES[mod.NAME]
        st.budget = [limit, limit]

    def _stream(self, buf: Buffer, flow: Flow, rows: Rows) -> None:
        """Feed a flow's segments of one batch in order. SYNs are among them (in capture order): each
        side's stream starts at its SYN, not at the first data seen, so a first data segment that is
        lost or late is waited for (or is a gap) instead of the parser starting mid-stream and the
        earlier bytes being dropped as retransmissions."""
        st: _Stream | None = flow.state
        if st is None:
            st = flow.state = _Stream()
        client_dir = flow.client_dir
        tcp_dirs = st.dirs
        for side in range(2):  # range, not (0, 1): compiled, a literal tuple is built to iterate it
            if st.armed[side]:  # the C table moved this side on since: take its state back
                d = side ^ client_dir  # the records' `dir` of the side (side 0: the client's)
                next_seq, skip, pdu_left = self.flows.disarm(flow, d)
                tcp_dirs[side].next_seq = next_seq
                if st.armed[side] == _PDATA:
                    st.parser.pdata_resume(side == 0, skip, pdu_left)  # type: ignore[union-attr]
                st.armed[side] = _NOT_ARMED
        if not self._run(buf, flow, st, rows) or st.module is None:
            return
        for side in range(2):
            if (walk := _walk(st, side)) is None:
                continue
            d = side ^ client_dir
            next_seq, skip, pdu_left = walk
            if skip == _SPENT_SKIP:
                self.flows.arm(flow, d, next_seq)
                st.armed[side] = _SPENT
            else:
                self.flows.arm_pdata(flow, d, next_seq, skip, pdu_left)
                st.armed[side] = _PDATA

    def _run(self, buf: Buffer, flow: Flow, st: _Stream, rows: Rows) -> bool:
        """Feed `rows` in order, handing C the runs it can walk (`_walk_on`), and the rows of the other
        side that such a run passed the same way. False when the flow's inspection ended."""
        pos = self._segments(buf, flow, st, rows)
        while pos is not None and pos < len(rows.row):
            passed, pos = _walk_on(buf, rows, pos, st, flow.client_dir)
            if passed is not None and not self._run(buf, flow, st, passed):
                return False
            pos = self._segments(buf, flow, st, rows, pos)
        return pos is not None

    def _segments(self, buf: Buffer, flow: Flow, st: _Stream, rows: Rows, begin: int = 0) -> int | None:
        """Feed segments in order from `begin`. Returns None when the flow's inspection ended, else the
        position of the first row not looked at: all of them, or the one after a side C can move on
        (`_walk_on`: spent, or between DICOM data sets) when enough rows remain for that."""
        r = flow.record
        client_dir = flow.client_dir
        budget, tcp_dirs = st.budget, st.dirs
        isn = st.isn
        n = len(rows.row)
        bulk = n - _BULK_MIN  # rows before this position may hand the rest to `_walk_on`
        ignores, pdata = st.ignores, st.pdata
        starts, lengths, seqs, dirs, stamps = rows.start, rows.len, rows.seq, rows.dir, rows.ts
        # By index from `begin`: a slice or islice per call would cost every row after it, and a flow's
        # batch is entered again after each `_walk_on` (an association: once an image). A long run's rows
        # are converted as the loop reaches them (`Rows.ready`).
        ready = rows.ready(begin) if begin < n else n
        for i in range(begin, n):
            if i >= ready:
                ready = rows.ready(i)
            start, length, seq, d, ts = starts[i], lengths[i], seqs[i], dirs[i], stamps[i]
            side = d ^ client_dir  # 0: the client's
            cand = isn[side]
            if cand is not None:
                if not length:  # a SYN or SYN-ACK: `seq` is already its number + 1
                    if len(cand) < _MAX_ISN:
                        cand.append(seq)
                    continue
                # This side's first data: its stream starts at the SYN(-ACK) just before it (retries
                # may carry other numbers), unless none is close, e.g. a SYN of an earlier connection.
                isn[side] = None
                back = min((seq - c) & 0xFFFFFFFF for c in cand) if cand else _SYN_WINDOW + 1
                if back <= _SYN_WINDOW:
                    tcp_dirs[side].next_seq = (seq - back) & 0xFFFFFFFF
                else:
                    st.joined[side] = True
            elif not length:
                continue
            if budget[side] == 0 and st.module is not None:
                # This side's budget is spent: its bytes would be cut to nothing before reaching the
                # parser, so an in-order segment only moves the sequence on (bulk transfers stay cheap).
                # Anything else takes the full path, which notices retransmissions and gaps.
                dr = tcp_dirs[side]
                if seq == dr.next_seq and not dr.pending:
                    dr.next_seq = (seq + length) & 0xFFFFFFFF
                    continue
            dr = tcp_dirs[side]
            ignored = ignores(side == 0) if ignores is not None else 0  # bytes ahead the parser only skips
            if ignored and seq == dr.next_seq and not dr.pending:
                # Bytes the parser would only count down (DICOM pixel data): no copy, no feed, no budget.
                # A segment that goes on past them (the next DICOM command) has only the rest copied and fed.
                skipped = min(ignored, length)
                st.parser.skip(side == 0, skipped)  # type: ignore[union-attr]
                seq = dr.next_seq = (seq + skipped) & 0xFFFFFFFF
                if skipped == length:
                    if i < bulk and pdata is not None and pdata(side == 0) is not None:
                        return i + 1
                    continue
                start, length, ignored = start + skipped, length - skipped, 0
            in_order = dr.accept(seq, _payload(buf, start, length))
            if in_order is None:
                self.stats.reassembly_gaps += 1
                self.flows.stop(flow)
                return None
            if not in_order:
                continue
            if st.module is None:
                # recognised from in-order bytes only: a segment that came early waits for its turn
                mod = protocols.for_stream(r.server_port, r.client_port, in_order, st.first, st.tries >= 2)
                st.tries += 1
                if mod is None:
                    if st.tries >= (_JOIN_TRIES if protocols.may_join(r.server_port, r.client_port) else 2):
                        self.flows.stop(flow)
                        return None
                    st.first = in_order[:16]
                    # Not recognised: these bytes may not start the stream at all (a stray payload on
                    # an ACK can overlap what follows), so the next segment starts it wherever it is.
                    dr.next_seq = None
                    st.joined[side] = True
                    continue
                self._start(st, mod, r)
                r.app = mod.NAME
                ignores, pdata, budget = st.ignores, st.pdata, st.budget
                ignored = ignores(side == 0) if ignores is not None else 0
            free = min(ignored, len(in_order))  # skipped at once
            in_order = in_order[: free + budget[side]]
            # assigned, not `-=`, and len() tested: compiled, those two are generic number and truth calls
            budget[side] = budget[side] - (len(in_order) - free)
            if not len(in_order):
                continue  # nothing left to feed on this side
            if st.joined[side]:
                st.joined[side] = False
                if "join" in _optional(type(st.parser)):
                    st.parser.join(side == 0)  # type: ignore[union-attr]
            try:
                msgs: list[Message] = st.parser.feed(in_order, side == 0)  # type: ignore[union-attr]
            except Malformed:
                self.stats.malformed_by_protocol[r.app or "?"] += 1
                self.flows.stop(flow)
                return None
            except MemoryError:
                raise
            except Exception as exc:  # a dissector's bug must not end the run: the flow is left alone
                self.stats.dissector_errors[f"{r.app or '?'}: {type(exc).__name__}"] += 1
                self.flows.stop(flow)
                return None
            for msg in msgs:
                from_client = msg.from_client if msg.from_client is not None else side == 0
                ends = st.ends_from_client if from_client else st.ends_to_client
                self._out(msg, st.name, rows.row[i], ts, ends, "tcp")
            if (st.has_done and st.parser.done) or (budget[0] <= 0 and budget[1] <= 0):  # type: ignore[union-attr]
                self.flows.stop(flow)
                return None
            if i < bulk and (budget[side] == 0 or (pdata is not None and pdata(side == 0) is not None)):
                return i + 1
        return n

    def _first_packet_facts(self, batch: Batch, flow: Flow, row: int) -> None:
        """TTL (and the SYN's window) of a client IP's first packet: the basis of OS guesses."""
        rec = _tuples(batch.recs, [row])[0]
        r = flow.record
        if rec[_DIR] != flow.client_dir:
            return
        if rec[_DST_MAC][0] & 1:
            return  # to a group address the TTL is the protocol's, not the OS's (mDNS 255, SSDP 2-4)
        self._ttl_seen.add(r.client_ip)
        fields: dict[str, object] = {"ttl": rec[_TTL]}
        if rec[_PROTO] == TCP and rec[_TCP_FLAGS] & SYN:
            fields["tcp_window"] = rec[_TCP_WIN]
        obs = Observation(
            rec[_TS], "ip", "ip.ttl", r.client_mac, r.client_ip, fields=fields, source=self.source
        )
        self._hold(row, obs)

    def open_flows(self) -> list[Observation]:
        """A `flow` observation for each flow not ended yet, as far as it got: for a picture of a live
        capture so far. Nothing is emitted."""
        table = self.flows
        return [self._flow_observation(table.so_far(flow)) for flow in table.flows.values()]

    def _flow_ended(self, flow: Flow) -> None:
        st, r = flow.state, flow.record
        if isinstance(st, _Stream) and "flush" in _optional(type(st.parser)):
            # What a parser still held when the connection ended (a DICOM command whose data set never
            # came: an association aborted, or the capture's end).
            name = st.module.NAME  # type: ignore[union-attr]
            for msg in st.parser.flush():  # type: ignore[union-attr]
                ends = _ends(r, bool(msg.from_client))
                self.emit(Observation(r.last_seen, name, msg.kind, *ends, "tcp", msg.fields, self.source))
                self.stats.observations += 1
        self.emit(self._flow_observation(r))
        self.stats.observations += 1

    def _flow_observation(self, r: FlowRecord) -> Observation:
        fields = {
            "transport": r.transport,
            "app": r.app,
            "tcp_state": r.tcp_state,
            "vlan": r.vlan,
            "client_ip": r.client_ip,
            "client_port": r.client_port,
            "server_ip": r.server_ip,
            "server_port": r.server_port,
            "packets_c2s": r.packets_c2s,
            "packets_s2c": r.packets_s2c,
            "bytes_c2s": r.bytes_c2s,
            "bytes_s2c": r.bytes_s2c,
            "first_seen": r.first_seen,
            "last_seen": r.last_seen,
            "client_ttl": r.client_ttl,
            "server_ttl": r.server_ttl,
        }
        return Observation(
            r.last_seen,
            "flow",
            "flow",
            r.client_mac,
            r.client_ip,
            r.server_mac,
            r.server_ip,
            r.client_port,
            r.server_port,
            r.transport,
            fields,
            self.source,
        )

    def _out(
        self,
        msg: Message,
        protocol: str,
        row: int,
        ts: float,
        ends: Ends,
        transport: str | None,
    ) -> None:
        src_mac, src_ip, dst_mac, dst_ip, sport, dport = ends
        obs = Observation(
            ts,
            protocol,
            msg.kind,
            src_mac,
            src_ip,
            dst_mac,
            dst_ip,
            sport,
            dport,
            transport,
            msg.fields,
            self.source,
        )
        self._hold(row, obs)


def _ends(r: FlowRecord, from_client: bool) -> Ends:
    """(source MAC, IP, destination MAC, IP, source port, destination port) of a message on the flow."""
    if from_client:
        return r.client_mac, r.client_ip, r.server_mac, r.server_ip, r.client_port, r.server_port
    return r.server_mac, r.server_ip, r.client_mac, r.client_ip, r.server_port, r.client_port


def _tuples(recs: np.ndarray, rows: list[int]) -> list[tuple[Any, ...]]:
    """The records at `rows` as tuples of their fields, converted by C (typed: compiled, reading C's
    answer untyped costs a generic lookup per field)."""
    return _as_tuples(recs, rows)


_WINDOW: Final = 4096  # records converted to tuples at a time (`_datagrams`)
_as_tuples: Final = _fastpath.records
_tally: Final = _fastpath.tally  # a batch's wire bytes, malformed, fragments, unsupported link
_payload: Final = _fastpath.payload  # bytes(buf[start:start + length]), without the slice object
_MAX_ISN: Final = 4  # SYN(-ACK)s remembered per side before its first data
# the first data seen may be this far past its SYN (earlier segments lost or late)
_SYN_WINDOW: Final = 1 << 20
# segments looked at for a recognisable point on a port whose module can join mid-stream
_JOIN_TRIES: Final = 16
_BULK_MIN: Final = 2  # rows left in a batch below which the per-segment loop is cheaper than `_walk_on`
# how the C flow table moves a side on between batches
_NOT_ARMED: Final = 0
_SPENT: Final = 1
_PDATA: Final = 2
_SPENT_SKIP: Final = -1  # `walk_run`'s skip of a spent side: every in-sequence segment is consumed


_OPTIONAL_METHODS: Final = ("ignores", "pdata_state", "join", "flush", "done")
_OPTIONALS: Final[dict[type, frozenset[str]]] = {}


def _optional(cls: type) -> frozenset[str]:
    """Which of the optional parts of a stream parser (protocols.base) a parser class has. Asked once per
    class: asking a parser for an attribute it lacks raises and catches an AttributeError every time."""
    names = _OPTIONALS.get(cls)
    if names is None:
        names = _OPTIONALS[cls] = frozenset(n for n in _OPTIONAL_METHODS if hasattr(cls, n))
    return names


def _walk(st: _Stream, side: int) -> tuple[int, int, int] | None:
    """How C may move a side on, in order and with nothing held out of order, as `walk_run` takes it
    (next sequence number, skip, pdu_left): spent (skip `_SPENT_SKIP`: its segments would only move the
    sequence on), a DICOM side between data-set fragments (its parser's `pdata_state`), or not at all
    (None)."""
    dr = st.dirs[side]
    if dr.pending or dr.next_seq is None:
        return None
    if st.budget[side] == 0:
        return dr.next_seq, _SPENT_SKIP, 0
    state = None if st.pdata is None else st.pdata(side == 0)
    return None if state is None else (dr.next_seq, state[0], state[1])


def _walk_on(
    buf: Buffer, rows: Rows, pos: int, st: _Stream, client_dir: int
) -> tuple[Rows | None, int]:
    """Consume from `pos` on the in-sequence run of each side C can move on: a spent side (the
    per-segment loop would only move its sequence number on) and a DICOM side between data-set fragments
    (`pdata_state`); a bulk transfer usually starts and ends in one batch, before the C table can take
    the side over. Returns the other side's rows the run passed (None if none) and where it stopped."""
    specs: list[tuple[int, int, int] | None] = [None, None]  # by `dir`
    for side in range(2):
        if (walk := _walk(st, side)) is not None:
            specs[side ^ client_dir] = walk
    # typed: compiled, every read of C's answer would otherwise be a generic item lookup
    out: tuple[Any, ...] = _fastpath.walk_run(buf, rows.block, pos, *specs)
    for side in range(2):
        spec: tuple[int, int, int] | None = out[side ^ client_dir]
        if spec is not None:
            st.dirs[side].next_seq = spec[0]
            if spec[1] >= 0:
                st.parser.pdata_resume(side == 0, spec[1], spec[2])  # type: ignore[union-attr]
    passed: bytes = out[2]  # the other side's rows, as `rows.block` holds them
    stop: int = out[3]
    if not passed:
        return None, stop
    return Rows.walked(np.frombuffer(passed, np.int64).reshape(-1, 5), rows.recs), stop


# Net container allocations between young-generation collections (Python: 700). An analysis keeps some
# 90,000 containers a million packets (flows, evidence, parser state) and each collection traverses the
# young ones: 200,000 took half the collector's time of 50,000 (2 million packets: 37 against 72 ms), and a
# million none at all up to 6 million packets (the one collection at 200,000 traversed 173,000 live
# containers, 39 ms; when it fell in the device decisions of a sharded run's parent it doubled them, 72 ->
# 33 ms at 8 workers). The analysis path makes no reference cycles (tests/test_reference_cycles.py), so the
# threshold only bounds garbage of cycles nobody knows of (peak RSS 118 and 144 MB at 2 and 6 million).
GC_THRESHOLD: Final = 1_000_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collect cyclic garbage less often while analysing. Every observation allocates a handful of
    containers that are freed right away (no cycles); at the default threshold the collector still ran
    some 700 times on the bench capture and traversed the growing inventory, 6-7% of the CPU time. Cyclic
    garbage, which the analysis does not make, stays bounded by the threshold."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], GC_THRESHOLD), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def read_captures(paths: Iterable[Path], progress: Callable[[int], None] | None = None, ahead: int = 0
                  ) -> Generator[tuple[Any, ...], None, None]:  # fmt: skip
    """Every capture's batches, in order: ("file", name) before a file's, ("batch", batch, window) for each
    (`window`: `CaptureFile.window`), and ("error", text) after them if the file broke, with its offset,
    after everything readable before the break; the other files go on. `ahead`: that many batches are
    read by a thread ahead of the caller (`read_ahead`)."""
    events = _read_captures(paths, progress, ahead)
    return read_ahead(events, ahead) if ahead else events


def _read_captures(paths: Iterable[Path], progress: Callable[[int], None] | None, ahead: int
                   ) -> Generator[tuple[Any, ...], None, None]:  # fmt: skip
    for path in expand_paths(list(paths)):
        yield "file", str(path)
        # the batches read ahead, and the one being analysed, keep their windows mapped
        cap = CaptureFile(path, behind=ahead + 1 if ahead else 0)
        seen = 0
        try:
            for batch in cap:
                yield "batch", batch, cap.window
                if progress is not None:
                    progress(cap.bytes_read - seen)
                    seen = cap.bytes_read
        except CaptureError as exc:
            yield "error", str(exc)
        except OSError as exc:
            yield "error", f"{path}: {exc.strerror or exc}"


READ_AHEAD = 2  # batches read ahead of the analysis where a second core is free


def read_ahead(events: Generator[tuple[Any, ...], None, None], depth: int
               ) -> Generator[tuple[Any, ...], None, None]:  # fmt: skip
    """`events` produced by a thread up to `depth` ahead of the caller. Reading a capture is mostly the
    C walk over its records, which runs without the GIL: on a second core it overlaps the analysis of
    the batches read before (and in `--workers`' reader, the dealing). An exception in the thread is
    raised here; when the caller stops early, the thread stops too."""
    handoff: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def give(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        try:
            for event in events:
                if not give((True, event)):
                    return
        except BaseException as exc:  # raised again by the consumer
            give((False, exc))
            return
        give((False, None))

    thread = threading.Thread(target=produce, name="medsentry-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = handoff.get()
            if ok:
                yield item
            elif item is None:
                return
            else:
                raise item
    finally:
        stop.set()
        thread.join()
        events.close()


def spare_core_ahead() -> int:
    """READ_AHEAD where this process may run on more than one core, else 0 (a thread would only take
    turns with the analysis)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return READ_AHEAD if cores > 1 else 0


def _account(stats: Stats, event: tuple[Any, ...]) -> None:
    """A ("file", name) or ("error", text) event of `read_captures` in the run's statistics."""
    (stats.files if event[0] == "file" else stats.errors).append(event[1])


def analyze_files(
    paths: Iterable[Path],
    emit: Callable[[Observation], None],
    progress: Callable[[int], None] | None = None,
    analyzer: Analyzer | None = None,
) -> Stats:
    """Run every capture through one Analyzer (`analyzer`, or a new one with `emit`), broken files
    recorded in stats.errors (`read_captures`)."""
    with fewer_collections():
        analyzer = analyzer or Analyzer(emit)
        stats = analyzer.stats
        # closed here, not when the last reference goes: compiled, an exception's traceback keeps the
        # generator, and with it the reading thread and its mapping, alive
        with closing(read_captures(paths, progress, spare_core_ahead())) as events:
            for event in events:
                if event[0] == "batch":
                    analyzer.feed(event[1])
                else:
                    _account(stats, event)
        return analyzer.finish()


def analyze_shares(
    dealt: Iterable[tuple[Any, ...]], analyzer: Analyzer, between: Callable[[], None] | None = None
) -> Stats:
    """`analyze_files` for a worker given its share of every batch by the readers (`deal.SegmentReader`):
    ("file", name), ("error", text), and ("batch", where, rows, records, now) with the records' positions
    in the whole batch and its clock, `where` being (offset, length) of the file window its frames are in
    (each worker maps the file: `Windows`), or the frames' bytes when the file is compressed; `between`
    is called after each batch."""
    windows: Windows | None = None
    name = ""
    with fewer_collections():
        try:
            for message in dealt:
                if message[0] == "batch":
                    _, where, kept, recs, now = message
                    if isinstance(where, tuple):
                        windows = windows or Windows.of(Path(name))
                        where = windows.at(*where)
                    analyzer.feed_share(Batch(where, recs, name), kept.tolist(), now)
                    if between is not None:
                        between()
                else:
                    if message[0] == "file":
                        if windows is not None:
                            windows.close()
                        windows, name = None, message[1]
                    _account(analyzer.stats, message)
        finally:
            if windows is not None:
                windows.close()
        return analyzer.finish()


def analyze_live(
    capture: LiveCapture, analyzer: Analyzer, between: Callable[[], None] | None = None
) -> Stats:
    """Run a live capture through `analyzer` until it ends, calling `between` after every batch and while
    the interface is quiet. A capture failure is recorded in stats.errors after everything captured before
    it was analysed."""
    capture.on_idle = between
    with fewer_collections():
        try:
            for batch in capture:
                analyzer.feed(batch)
                if between is not None:
                    between()
        except CaptureError as exc:
            analyzer.stats.errors.append(str(exc))
        stats = analyzer.finish()
        stats.capture_dropped = capture.dropped
        return stats


def observe_files(paths: Iterable[Path]) -> tuple[list[Observation], Stats]:
    """All observations of some captures, in memory: for evaluation scripts and tests."""
    out: list[Observation] = []
    stats = analyze_files(paths, out.append)
    return out, stats
