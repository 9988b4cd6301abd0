"""The flow table (C counters, Python inspection state): per-batch TCP state, timeouts, port reuse,
eviction, and which rows reach Python."""

from __future__ import annotations

import ipaddress
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from medsentry.capture import _fastpath
from medsentry.capture.records import PACKET_DTYPE
from medsentry.decode.flows import ACK, FIN, RST, SYN, Flow, FlowTable, Timeouts

A, B, C = ("10.0.0.5", 40000), ("10.0.0.9", 2575), ("10.0.0.7", 5353)
PSH = 0x08


def tcp(
    src: tuple[str, int], dst: tuple[str, int], flags: int, seq: int = 0, data: bytes = b"", ttl: int = 64
) -> bytes:
    seg = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, 0, 5 << 4, flags, 65535, 0, 0) + data
    return _ip(src, dst, 6, seg, ttl)


def udp(src: tuple[str, int], dst: tuple[str, int], data: bytes = b"x") -> bytes:
    return _ip(src, dst, 17, struct.pack("!HHHH", src[1], dst[1], 8 + len(data), 0) + data)


def _ip(src: tuple[str, int], dst: tuple[str, int], proto: int, l4: bytes, ttl: int = 64) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, ttl, proto, 0,
                     ipaddress.ip_address(src[0]).packed, ipaddress.ip_address(dst[0]).packed)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + l4


def pcap_records(frames: list[tuple[float, bytes]]) -> bytes:
    """(time stamp, frame) pairs as pcap records without the file header: what a batch's buffer holds."""
    return b"".join(
        struct.pack("<IIII", int(ts), round(ts % 1 * 1e6), len(f), len(f)) + f for ts, f in frames
    )


def write_pcap(path: Path, frames: list[bytes], step: float = 0.01) -> Path:
    """Ethernet frames as a pcap file, `step` seconds apart."""
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + pcap_records([(1_700_000_000 + i * step, f) for i, f in enumerate(frames)]))
    return path


def records(frames: list[tuple[float, bytes]]) -> np.ndarray:
    """Packet records of (time stamp, frame) pairs, as the reader makes them."""
    buf = pcap_records(frames)
    out = bytearray(len(frames) * PACKET_DTYPE.itemsize)
    _, n, _ = _fastpath.scan_pcap(buf, 0, False, False, 1, out, len(frames))
    assert n == len(frames)
    return np.frombuffer(out, dtype=PACKET_DTYPE).copy()


def run(table: FlowTable, recs: np.ndarray, now: float | None = None) -> tuple[list, list[Flow]]:
    """Update with one batch: (flow, new, first row, rows handed over) per group, and flows ended."""
    groups = [(f, new, first, rows.row) for f, new, first, rows in table.update(recs)]
    return groups, table.expire(float(recs["ts"][-1]) if now is None else now)


def test_counters_direction_and_tcp_state() -> None:
    table = FlowTable()
    recs = records([
        (1.0, tcp(A, B, SYN, 100)),
        (1.1, tcp(B, A, SYN | ACK, 900)),
        (1.2, tcp(A, B, ACK, 101)),
        (1.3, tcp(A, B, PSH | ACK, 101, b"hello")),
        (1.4, udp(C, A)),
    ])
    groups, ended = run(table, recs)
    assert len(groups) == 2 and not ended and len(table._c) == 2
    (flow, new, first, rows), = [g for g in groups if g[0].record.transport == "tcp"]
    r = flow.record
    assert new and first == 0 and (r.client_ip, r.client_port, r.server_port) == (A[0], A[1], B[1])
    assert rows == [0, 1, 3]  # SYN, SYN-ACK and data; the bare ACK never reaches Python
    assert flow in table.expire(100.0, force=True)
    assert (r.packets_c2s, r.packets_s2c) == (3, 1)
    assert r.bytes_c2s == sum(int(x) for x in recs["wirelen"][[0, 2, 3]])
    assert r.bytes_s2c == int(recs["wirelen"][1])
    assert (r.first_seen, r.last_seen, r.tcp_state) == (1.0, 1.3, "established")
    assert not table.flows and len(table._c) == 0 and table.total == 2


def test_each_sides_first_ttl_is_kept() -> None:
    table = FlowTable()
    recs = records([
        (1.0, tcp(B, A, ACK, 5, ttl=53)),  # picked up mid-stream, the server's packet first
        (1.1, tcp(A, B, ACK, 9, ttl=64)),
        (1.2, tcp(B, A, ACK, 6, ttl=60)),  # later packets leave it as it was
        (1.3, tcp(A, B, ACK, 10, ttl=1)),
        (1.4, udp(A, C)),  # never answered
    ])
    run(table, recs)
    ended = {f.record.transport: f.record for f in table.expire(100.0, force=True)}
    tcp_flow, udp_flow = ended["tcp"], ended["udp"]
    assert (tcp_flow.client_ip, tcp_flow.client_ttl, tcp_flow.server_ttl) == (A[0], 64, 53)
    assert (udp_flow.client_ttl, udp_flow.server_ttl) == (64, None)


def test_a_live_pictures_open_flows_have_their_counters_so_far() -> None:
    from medsentry.capture.records import Batch
    from medsentry.pipeline import Analyzer

    frames = [
        (1.0, tcp(A, B, SYN, 100)),
        (1.1, tcp(B, A, SYN | ACK, 900, ttl=60)),
        (1.2, tcp(A, B, ACK, 101)),
    ]
    analyzer = Analyzer(lambda o: None)
    analyzer.feed(Batch(memoryview(pcap_records(frames)), records(frames), "live"))
    (seen,) = analyzer.open_flows()  # still open: nothing ended it
    f = seen.fields
    assert (f["packets_c2s"], f["packets_s2c"], f["tcp_state"]) == (2, 1, "established")
    assert (f["client_ttl"], f["server_ttl"], f["first_seen"], f["last_seen"]) == (64, 60, 1.0, 1.2)


@pytest.mark.parametrize(
    ("batches", "state"),
    [
        ([[RST | ACK, FIN | ACK]], "reset"),  # flags are OR-ed over a batch: RST wins whatever the order
        ([[RST | ACK], [FIN | ACK]], "closed"),  # in separate batches the later FIN moves the state on
        ([[SYN]], "syn"),
        ([[ACK]], "established"),  # picked up mid-stream
        ([[RST]], "reset"),
    ],
)
def test_tcp_state_per_batch(batches: list[list[int]], state: str | None) -> None:
    table = FlowTable()
    ts = 1.0
    for flags in batches:
        frames = []
        for f in flags:
            frames.append((ts, tcp(A, B, f, 100)))
            ts += 0.1
        run(table, records(frames))
    (flow,) = table.expire(ts, force=True)
    assert flow.record.tcp_state == state


def test_timeouts() -> None:
    table = FlowTable(Timeouts(tcp_idle=300, udp_idle=60, closed_linger=5, active=1800))
    run(table, records([(0.0, udp(C, A)), (0.0, tcp(A, B, SYN, 1)), (1.0, tcp(B, (C[0], 80), FIN | ACK, 1))]))
    assert len(table._c) == 3
    _, ended = run(table, records([(6.5, udp(A, (C[0], 9)))]))  # closed linger (5 s) is over
    assert [f.record.server_port for f in ended] == [80]
    _, ended = run(table, records([(61.0, udp(A, (C[0], 9)))]))  # UDP idle 60 s
    assert [f.record.server_port for f in ended] == [C[1]]
    _, ended = run(table, records([(300.5, udp(A, (C[0], 9)))]))  # TCP idle 300 s
    assert [f.record.server_port for f in ended] == [B[1]]
    # the active timeout ends a flow that never goes idle
    for t in range(360, 1900, 50):
        _, ended = run(table, records([(float(t), udp(A, (C[0], 9)))]))
        if ended:
            break
    assert [f.record.first_seen for f in ended] == [6.5] and t > 1806.5


def test_port_reuse_after_close_starts_a_new_flow() -> None:
    table = FlowTable()
    run(table, records([(1.0, tcp(A, B, SYN, 1)), (1.1, tcp(A, B, FIN | ACK, 2))]))
    groups, ended = run(table, records([(2.0, tcp(A, B, SYN, 5000)), (2.1, tcp(A, B, ACK, 5001))]))
    assert [f.record.tcp_state for f in ended] == ["closed"]
    assert [(new, f.record.first_seen) for f, new, _, _ in groups] == [(True, 2.0)]
    # in the same batch as the FIN, a SYN does not split the flow (the state moves once per batch)
    table = FlowTable()
    run(table, records([(1.0, tcp(A, B, SYN, 1)), (1.1, tcp(A, B, FIN | ACK, 2)), (1.2, tcp(A, B, SYN, 9))]))
    assert table.total == 1


def test_eviction_keeps_the_table_bounded_oldest_first() -> None:
    table = FlowTable(Timeouts(max_flows=20))
    ended: list[Flow] = []
    for i in range(50):
        _, e = run(table, records([(float(i), udp(("10.1.0.1", 20000 + i), C))]))
        ended += e
        assert len(table._c) <= 20
    assert table.total == 50 and table.evicted == len(ended) == 30
    # the 30 oldest went (those evicted together come out in key order, as the batch's flows do)
    assert sorted(f.record.client_port for f in ended) == list(range(20000, 20030))


def test_stopped_flows_and_armed_sides_hand_python_nothing() -> None:
    table = FlowTable()
    data = b"d" * 100
    frames = [(1.0, tcp(A, B, SYN, 0)), (1.0, tcp(B, A, SYN | ACK, 0))]
    frames += [(1.0 + i / 100, tcp(A, B, ACK, 1 + 100 * i, data)) for i in range(5)]
    ((flow, _, _, rows),), _ = run(table, records(frames))
    assert len(rows) == 7
    client = flow.client_dir
    table.arm(flow, client, 501)
    # in order: consumed; then one out of order (a gap) and everything after it on that side come back
    later = [(2.0, tcp(A, B, ACK, 501, data)), (2.1, tcp(A, B, ACK, 601, data)),
             (2.2, tcp(B, A, ACK, 1, b"r")),
             (2.3, tcp(A, B, ACK, 901, data)), (2.4, tcp(A, B, ACK, 701, data))]
    ((_, new, _, rows),), _ = run(table, records(later))
    assert not new and rows == [2, 3, 4]
    assert table.disarm(flow, client)[0] == 701
    table.stop(flow)
    groups, _ = run(table, records([(3.0, tcp(A, B, ACK, 1001, data)), (3.1, tcp(B, A, ACK, 2, b"r"))]))
    assert groups == [] and not flow.inspect
    (done,) = table.expire(10.0, force=True)
    assert done.record.packets_c2s == 1 + 5 + 4 + 1 and done.record.packets_s2c == 1 + 1 + 1


def _reference(batches: list[np.ndarray], t: Timeouts) -> list[tuple]:
    """The former table's rules in plain Python: per batch, groups in key order, flags OR-ed, a bare SYN
    after a close starts a new flow; ended flows as (first, last, packets and bytes by dir, state)."""
    live: dict[int, dict] = {}
    out: list[tuple] = []

    def end(f: dict) -> None:
        out.append((f["first"], f["last"], *f["pk"], *f["by"], f["state"]))

    next_sweep = 0.0
    for recs in batches:
        groups: dict[int, list] = {}
        for r in recs.tolist():
            groups.setdefault(r[1], []).append(r)  # r[1]: flow_hash
        for key in sorted(groups):
            rows = groups[key]
            f = live.get(key)
            if f is not None and f["closed"] and rows[0][15] & (SYN | ACK) == SYN:  # r[15]: tcp_flags
                end(live.pop(key))
                f = None
            if f is None:
                f = live[key] = {"first": rows[0][0], "last": rows[0][0], "pk": [0, 0], "by": [0, 0],
                                 "state": "syn" if rows[0][15] & SYN else None, "closed": False}
            flags = 0
            for r in rows:
                f["pk"][r[17]] += 1  # r[17]: dir
                f["by"][r[17]] += r[4]  # r[4]: wirelen
                f["last"] = max(f["last"], r[0])
                flags |= r[15]
            f["first"] = min(f["first"], rows[0][0])
            if flags & RST:
                f["state"], f["closed"] = "reset", True
            elif flags & FIN:
                f["state"], f["closed"] = "closed", True
            elif f["state"] in (None, "syn") and flags & ACK:
                f["state"] = "established"
        now = float(recs["ts"][-1])
        if now >= next_sweep:
            next_sweep = now + 5.0
            for key, f in list(live.items()):
                limit = t.closed_linger if f["closed"] else t.tcp_idle
                if now - f["last"] > limit or now - f["first"] > t.active:
                    end(live.pop(key))
    for f in live.values():
        end(f)
    return out


def test_matches_the_former_per_batch_rules_on_random_traffic() -> None:
    """Counters and TCP states of every flow against `_reference`, in many small batches, while Python
    stops inspecting some flows and arms spent sides (neither may change what is counted)."""
    rng = random.Random(7)
    hosts = [(f"10.0.{i}.1", 1000 + i) for i in range(12)]
    frames = []
    for i in range(4000):
        a, b = rng.sample(hosts, 2)
        flags = rng.choice([SYN, SYN | ACK, ACK, ACK, ACK, PSH | ACK, FIN | ACK, RST])
        frames.append((i * 0.05, tcp(a, b, flags, rng.randrange(1 << 32), b"x" * rng.randrange(3))))
    recs = records(frames)
    t = Timeouts(tcp_idle=30.0, closed_linger=2.0, active=60.0)
    table = FlowTable(t)
    ended: list[Flow] = []
    batches = []
    pos = 0
    while pos < len(recs):
        n = rng.randrange(1, 200)
        batches.append(recs[pos : pos + n])
        for flow, _, _, _ in table.update(batches[-1]):
            if flow.inspect and rng.random() < 0.3:
                table.stop(flow)
            elif flow.inspect and rng.random() < 0.3:
                table.arm(flow, rng.randrange(2), rng.randrange(1 << 32))
        ended += table.expire(float(batches[-1]["ts"][-1]))
        pos += n
    ended += table.expire(1e9, force=True)
    got = [(f.record.first_seen, f.record.last_seen,
            *((f.record.packets_c2s, f.record.packets_s2c) if f.client_dir == 0 else
              (f.record.packets_s2c, f.record.packets_c2s)),
            *((f.record.bytes_c2s, f.record.bytes_s2c) if f.client_dir == 0 else
              (f.record.bytes_s2c, f.record.bytes_c2s)),
            f.record.tcp_state) for f in ended]
    want = _reference(batches, t)
    assert len(want) > 200 and got == want  # in the same order, too
    assert table.total == len(ended) and not table.flows


def test_walk_run_consumes_each_spent_sides_leading_in_sequence_run() -> None:
    seqs = [10, 110, 0, 210, 999, 310, 5]
    lens = [100, 100, 0, 100, 100, 100, 7]
    dirs = [0, 0, 0, 1, 0, 0, 1]
    starts = [0] * len(seqs)  # a spent side's payloads are not read
    spent = -1

    def walk(seqs: list[int], lens: list[int], dirs: list[int], *rest: object) -> object:
        # rows as the flow table gives them: batch row, payload start, length, sequence number, dir
        fields = enumerate(zip(seqs, lens, dirs, strict=True))
        block = np.array([[k, starts[k], n, q, d] for k, (q, n, d) in fields], dtype=np.int64).reshape(-1, 5)
        side0, side1, kept, stop = _fastpath.walk_run(b"", block, *rest)
        kept_rows = np.frombuffer(kept, np.int64).reshape(-1, 5)
        assert (kept_rows == block[kept_rows[:, 0]]).all(), "kept rows are copies of the block's"
        return side0, side1, kept_rows[:, 0].tolist(), stop

    # dir 0 continues at 10: rows 0, 1 in sequence, row 2 a bare ACK/SYN, row 3 the other side's (kept),
    # row 4 out of sequence: the run stops there
    assert walk(seqs, lens, dirs, 0, (10, spent, 0), None) == ((210, spent, 0), None, [3], 4)
    # both sides spent; dir 1 continues at 210: row 3 consumed, row 4 stops the run
    assert walk(seqs, lens, dirs, 1, (110, spent, 0), (210, spent, 0)) == ((210, spent, 0), (310, spent, 0),
                                                                          [], 4)  # fmt: skip
    # sequence numbers wrap at 2**32
    assert walk([0xFFFFFFF0, 0x10], [0x20, 1], [1, 1], 0, None, (0xFFFFFFF0, spent, 0)) == (
        None, (0x11, spent, 0), [], 2)
    # nothing walked: nothing consumed
    assert walk(seqs, lens, dirs, 2, None, None) == (None, None, [], 2)
    with pytest.raises(ValueError):  # not n x 5 int64
        _fastpath.walk_run(b"", np.zeros(4, dtype=np.int64), 0, (1, spent, 0), None)


def test_flows_reach_python_and_end_in_flow_key_order() -> None:
    """As the former per-batch table: groups in key order, and flows ending together in creation order,
    which within a batch is key order (identification's peer-count rules depend on the order)."""
    recs = records([(1.0 + i / 10, udp(("10.2.0.1", 30000 + i), C)) for i in range(12)])
    table = FlowTable()
    groups, _ = run(table, recs)
    by_key = [int(h) for h in np.sort(recs["flow_hash"])]
    port_of = {int(h): 30000 + i for i, h in enumerate(recs["flow_hash"])}
    assert [f.record.client_port for f, *_ in groups] == [port_of[h] for h in by_key]
    assert [f.record.client_port for f in table.expire(99.0, force=True)] == [port_of[h] for h in by_key]


def test_pipeline_survives_random_segments_in_random_batches() -> None:
    """Long streams on dissected ports (past their budget, so sides get armed and handed back), garbage,
    retransmissions and gaps, split at random batch boundaries: never an exception, every packet counted,
    every flow ended once."""
    from medsentry.capture.records import Batch
    from medsentry.pipeline import Analyzer

    rng = random.Random(11)
    heads = {
        2575: b"\x0bMSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r",  # then letters: one long block, past the budget
        1883: b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c",
        443: b"\x16\x03\x01\x00\x30\x01\x00\x00\x2c\x03\x03",
        11112: b"\x04\x00\x00\x01\x00\x00",
        9999: b"",
    }
    conns = []
    for i in range(40):
        port = rng.choice(list(heads))
        conns.append([(f"10.3.{i}.1", 40000 + i), (f"10.3.{i}.2", port), rng.randrange(1 << 32), 0,
                      heads[port]])
    frames = []
    for i in range(4000):
        c = rng.choice(conns)
        client, server, seq, sent, head = c
        if sent == 0:
            frames.append((i * 0.01, tcp(client, server, SYN, seq - 1)))
        data = (head if sent == 0 else b"") + bytes(rng.choices(b"ABC|^~\r", k=rng.randrange(900, 1460)))
        frames.append((i * 0.01, tcp(client, server, PSH | ACK, seq, data)))
        if rng.random() < 0.05:  # retransmitted
            frames.append((i * 0.01, tcp(client, server, PSH | ACK, seq, data)))
        elif rng.random() < 0.03:  # the next bytes come early, once or twice, and again in order later
            for _ in range(rng.randrange(1, 3)):
                frames.append((i * 0.01, tcp(client, server, PSH | ACK, seq + len(data), b"ABC")))
        elif rng.random() < 0.003:  # lost: a gap that is never repaired
            data += b"lost"
        if rng.random() < 0.3:
            frames.append((i * 0.01, tcp(server, client, ACK, 7)))
        c[2], c[3] = (seq + len(data)) & 0xFFFFFFFF, sent + 1
    recs = records(frames)
    buf = pcap_records(frames)
    ended = []
    analyzer = Analyzer(ended.append)
    pos = 0
    while pos < len(recs):
        n = rng.randrange(1, 300) if rng.random() < 0.8 else rng.randrange(1000, 3000)
        analyzer.feed(Batch(memoryview(buf), recs[pos : pos + n], "fuzz"))
        pos += n
    stats = analyzer.finish()
    flows = [o for o in ended if o.kind == "flow"]
    assert stats.packets == len(recs) and len(flows) == stats.flows == analyzer.flows.total == 40
    assert sum(o.fields["packets_c2s"] + o.fields["packets_s2c"] for o in flows) == len(recs)
    assert max(o.fields["packets_c2s"] for o in flows if o.fields["app"] == "hl7") > 60  # past 64 KiB


def _dns_query(name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def _dns_queries() -> list[tuple[float, bytes]]:
    """40 DNS queries, 10 ms apart, from 8 clients in turn: 8 flows whose packets interleave."""
    clients = [(f"10.4.0.{i}", 50000 + i) for i in range(1, 9)]
    return [
        (1.0 + n / 100, udp(clients[n % 8], ("10.4.0.53", 53), _dns_query(f"host{n}.example")))
        for n in range(40)
    ]


def test_a_batchs_observations_come_out_in_packet_order() -> None:
    """Flows are worked through in key order, yet observations leave in packet order (detection decides
    "who came first" by the capture), with positions increasing."""
    from medsentry.capture.records import Batch
    from medsentry.pipeline import Analyzer

    frames = _dns_queries()
    recs = records(frames)
    buf = pcap_records(frames)
    out: list[tuple[tuple, object]] = []
    analyzer = Analyzer(lambda o: out.append((analyzer.position, o)))
    analyzer.feed(Batch(memoryview(buf), recs, "order"))
    queries = [o for _, o in out if o.kind == "dns.query"]
    assert len(queries) == 40
    assert [o.ts for o in queries] == sorted(o.ts for o in queries)
    assert [o.fields["queries"][0]["name"] for o in queries] == [f"host{n}.example" for n in range(40)]
    positions = [p for p, _ in out]
    assert positions == sorted(positions)


def test_held_observations_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch holds at most MAX_PENDING observations (hostile traffic can make hundreds per packet): past
    it they leave in chunks, each in packet order, and none is lost."""
    from medsentry import pipeline
    from medsentry.capture.records import Batch

    monkeypatch.setattr(pipeline, "MAX_PENDING", 10)
    frames = _dns_queries()
    recs = records(frames)
    buf = pcap_records(frames)
    held: list[int] = []
    out: list[tuple[tuple, object]] = []

    def emit(o: object) -> None:
        held.append(len(analyzer._pending))
        out.append((analyzer.position, o))

    analyzer = pipeline.Analyzer(emit)
    analyzer.feed(Batch(memoryview(buf), recs, "bounded"))
    queries = [(p, o) for p, o in out if o.kind == "dns.query"]
    assert len(queries) == 40 and max(held) <= 10
    names = sorted(o.fields["queries"][0]["name"] for _, o in queries)
    assert names == sorted(f"host{n}.example" for n in range(40))
    for k in range(0, 40, 10):  # each chunk in packet order
        chunk = [p for p, _ in queries[k : k + 10]]
        assert chunk == sorted(chunk)


@pytest.mark.parametrize(
    "name",
    [
        "virtual-hospital/general-hospital-60s.pcap",  # DICOM, HL7, MQTT, TLS, HTTP; the attacks
        "ndpi/cfgs/default/pcap/WebattackRCE.pcap",  # many short HTTP connections
        "ndpi/cfgs/default/pcap/netflix.pcap",  # TLS, long downloads
    ],
)
def test_rows_converted_as_reached_give_what_rows_converted_at_once_give(
    shared_data: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medsentry.decode import flows
    from medsentry.pipeline import observe_files

    capture = shared_data / "captures" / name

    def observed(lazy_from: int) -> list[tuple[object, ...]]:
        monkeypatch.setattr(flows, "_LAZY_ROWS", lazy_from)
        out, stats = observe_files([capture])
        return [(o.ts, o.kind, o.src_ip, o.dst_ip, o.sport, repr(o.fields)) for o in out] + [stats.to_dict()]

    every_run_lazy, none_lazy = observed(0), observed(1 << 30)
    assert len(every_run_lazy) > 10 and every_run_lazy == none_lazy
