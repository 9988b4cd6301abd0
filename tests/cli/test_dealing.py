"""How `--workers` deals a file's records: by host (a flow's client), balanced by the work they make."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from medsentry.capture import _fastpath
from medsentry.capture.records import PACKET_DTYPE
from medsentry.deal import Dealer

SERVER = "10.0.0.1"


SYN = 0x02


def _recs(packets: list[tuple[str, int, str, int, int, int]], tcp_flags: int = 0) -> np.ndarray:
    """Records of (source, source port, destination, destination port, IP protocol, payload length)."""
    recs = np.zeros(len(packets), PACKET_DTYPE)
    recs["tcp_flags"] = tcp_flags
    for i, (src, sport, dst, dport, proto, size) in enumerate(packets):
        r = recs[i]
        r["ipver"], r["proto"], r["sport"], r["dport"], r["payload_len"] = 4, proto, sport, dport, size
        r["src_ip"] = ipaddress.ip_address(src).packed.ljust(16, b"\0")
        r["dst_ip"] = ipaddress.ip_address(dst).packed.ljust(16, b"\0")
    return recs


def _shard_of_each(dealer: Dealer, recs: np.ndarray) -> list[int]:
    shard = [-1] * len(recs)
    for k, rows in enumerate(dealer.shares(recs)):
        for row in rows.tolist():
            shard[row] = k
    return shard


def test_a_host_s_flows_go_to_one_shard_whatever_the_direction_or_server() -> None:
    shard = _shard_of_each(Dealer(64), _recs([
        ("10.0.0.5", 40001, SERVER, 11112, 6, 100),  # the modality to the PACS
        (SERVER, 11112, "10.0.0.5", 40001, 6, 0),  # and back
        ("10.0.0.2", 53, "10.0.0.5", 51000, 17, 80),  # a DNS answer to it
        ("10.0.0.5", 5353, "224.0.0.251", 5353, 17, 60),  # equal ports: the lower address
        ("10.0.0.6", 40001, SERVER, 11112, 6, 100),  # another modality
        ("10.0.0.7", 123, "10.0.0.6", 123, 17, 48),  # equal ports: the lower address again
    ]))
    assert shard[0] == shard[1] == shard[2] == shard[3]
    assert shard[4] != shard[0] and shard[5] == shard[4]


def test_non_ip_frames_go_by_their_sender() -> None:
    recs = np.zeros(4, PACKET_DTYPE)
    recs["flow_hash"] = [11, 12, 11, 12]
    recs["payload_len"] = 10  # work, so the second sender goes elsewhere
    shard = _shard_of_each(Dealer(2), recs)
    assert shard[0] == shard[2] != shard[1] == shard[3]


def test_the_tables_must_fit_the_records() -> None:
    recs = _recs([("10.0.0.5", 40001, SERVER, 11112, 6, 100)] * 3)
    dealer = Dealer(2)
    with pytest.raises(ValueError, match="deal"):
        _fastpath.deal(recs, dealer.owner, dealer.load, np.empty(2, np.int32))
    with pytest.raises(ValueError, match="deal"):
        _fastpath.deal(recs, dealer.owner, np.zeros(0, np.int64), np.empty(3, np.int32))


def test_hosts_are_dealt_by_the_work_they_make_not_their_packets() -> None:
    # A modality sending an image (bulk segments, walked in C) and eight pumps sending HL7 messages: by
    # packets the modality would fill a shard alone; by work the pumps split evenly.
    pumps = [f"10.0.1.{k}" for k in range(1, 9)]
    packets = [("10.0.0.100", 40000, SERVER, 11112, 6, 1400)] * 400
    packets += [(p, 41000, SERVER, 2575, 6, 300) for _ in range(25) for p in pumps]
    recs = _recs(packets)
    shares = Dealer(2).shares(recs)
    assert sorted(np.concatenate(shares).tolist()) == list(range(len(recs)))
    assert [set(range(400)) <= set(rows.tolist()) for rows in shares].count(True) == 1  # the modality
    messages = [int((recs["payload_len"][rows] == 300).sum()) for rows in shares]
    assert messages == [100, 100]


def test_a_host_stays_with_its_shard_in_later_batches() -> None:
    dealer = Dealer(4)
    first = _recs([(f"10.0.2.{k}", 40000, SERVER, 2575, 6, 300) for k in range(1, 33)])
    where = _shard_of_each(dealer, first)
    later = first[::-1].copy()  # the same hosts, met in the other order
    assert _shard_of_each(dealer, later) == where[::-1]
    assert sorted(np.bincount(where, minlength=4).tolist()) == [8, 8, 8, 8]


def test_dealers_sharing_their_tables_deal_a_host_alike() -> None:
    """Readers in other processes share owners and loads: whoever meets a host first places it."""
    owner, load = np.full(Dealer.BUCKETS, -1, np.int64), np.zeros(3, np.int64)
    a, b = Dealer(3, owner, load), Dealer(3, owner, load)
    hosts = _recs([(f"10.0.3.{k}", 40000, SERVER, 2575, 6, 300) for k in range(1, 31)])
    first = _shard_of_each(a, hosts[:15])
    assert _shard_of_each(b, hosts) == first + _shard_of_each(a, hosts[15:])
    alone = Dealer(3)
    alone.shares(hosts)
    assert load.sum() == 2 * alone.load.sum()  # a message's work each time one was dealt


def test_a_scanners_connection_attempts_are_work() -> None:
    """A port scan's SYNs carry no payload, yet each makes a flow for a worker to make, end and identify:
    the scanner's shard takes fewer of the hosts met after it."""
    scan = _recs([("10.0.4.1", 40000 + port, SERVER, port, 6, 0) for port in range(1, 201)], tcp_flags=SYN)
    pumps = _recs([(f"10.0.1.{k}", 41000, SERVER, 2575, 6, 300) for _ in range(25) for k in range(1, 9)])
    dealer = Dealer(2)
    scanner = set(_shard_of_each(dealer, scan))
    assert len(scanner) == 1
    assert scanner.isdisjoint(_shard_of_each(dealer, pumps))


def test_an_empty_batch_deals_nothing() -> None:
    dealer = Dealer(3)
    assert [len(rows) for rows in dealer.shares(np.zeros(0, PACKET_DTYPE))] == [0, 0, 0]
    assert dealer.load.tolist() == [0, 0, 0]
