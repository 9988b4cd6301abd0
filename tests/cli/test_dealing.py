"""How `--workers` deals a file's records: by host (a flow's client), balanced by the work they make."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from medsentry.capture import _fastpath
from medsentry.capture.records import PACKET_DTYPE
from medsentry.pipeline import Dealer

SERVER = "10.0.0.1"


def _recs(packets: list[tuple[str, int, str, int, int, int]]) -> np.ndarray:
    """Records of (source, source port, destination, destination port, IP protocol, payload length)."""
    recs = np.zeros(len(packets), PACKET_DTYPE)
    for i, (src, sport, dst, dport, proto, size) in enumerate(packets):
        r = recs[i]
        r["ipver"], r["proto"], r["sport"], r["dport"], r["payload_len"] = 4, proto, sport, dport, size
        r["src_ip"] = ipaddress.ip_address(src).packed.ljust(16, b"\0")
        r["dst_ip"] = ipaddress.ip_address(dst).packed.ljust(16, b"\0")
    return recs


def _keys(recs: np.ndarray) -> list[int]:
    keys = np.empty(len(recs), np.uint64)
    _fastpath.deal_keys(recs, keys)
    return keys.tolist()


def test_a_host_s_flows_share_one_key_whatever_the_direction_or_server() -> None:
    keys = _keys(_recs([
        ("10.0.0.5", 40001, SERVER, 11112, 6, 100),  # the modality to the PACS
        (SERVER, 11112, "10.0.0.5", 40001, 6, 0),  # and back
        ("10.0.0.2", 53, "10.0.0.5", 51000, 17, 80),  # a DNS answer to it
        ("10.0.0.5", 5353, "224.0.0.251", 5353, 17, 60),  # equal ports: the lower address
        ("10.0.0.6", 40001, SERVER, 11112, 6, 100),  # another modality
        ("10.0.0.7", 123, "10.0.0.6", 123, 17, 48),  # equal ports: the lower address again
    ]))
    assert keys[0] == keys[1] == keys[2] == keys[3]
    assert keys[4] != keys[0] and keys[5] == keys[4]


def test_non_ip_frames_keep_their_sender_s_key() -> None:
    recs = np.zeros(3, PACKET_DTYPE)
    recs["flow_hash"] = [11, 12, 11]
    assert _keys(recs) == [11, 12, 11]


def test_keys_need_one_slot_per_record() -> None:
    recs = _recs([("10.0.0.5", 40001, SERVER, 11112, 6, 100)] * 3)
    with pytest.raises(ValueError, match="deal_keys"):
        _fastpath.deal_keys(recs, np.empty(2, np.uint64))


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
    where = {}
    for k, rows in enumerate(dealer.shares(first)):
        for row in rows.tolist():
            where[row] = k
    later = first[::-1].copy()  # the same hosts, met in the other order, with the work spread otherwise
    for k, rows in enumerate(dealer.shares(later)):
        for row in rows.tolist():
            assert where[len(first) - 1 - row] == k
    assert sorted(np.bincount(list(where.values()), minlength=4).tolist()) == [8, 8, 8, 8]


def test_an_empty_batch_deals_nothing() -> None:
    dealer = Dealer(3)
    assert [len(rows) for rows in dealer.shares(np.zeros(0, PACKET_DTYPE))] == [0, 0, 0]
    assert dealer.load.tolist() == [0.0, 0.0, 0.0]
