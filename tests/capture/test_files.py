"""Capture files through the C fast path, checked against the plain walker in tests/pcaputil.py."""

from __future__ import annotations

import gzip
import ipaddress
import struct
import tempfile
import weakref
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsentry.capture.errors import CaptureError
from medsentry.capture.files import CaptureFile, expand_paths
from medsentry.capture.records import ST_FRAGMENT, ST_MALFORMED, ST_OK, Batch
from tests import pcaputil

VH = "captures/virtual-hospital/general-hospital-normal-60s.pcap"


def _records(path: Path) -> np.ndarray:
    return np.concatenate([b.recs for b in CaptureFile(path)])


def _pcap(frames: list[bytes], linktype: int = 1, ts0: int = 1_700_000_000) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        out.append(struct.pack("<IIII", ts0 + i, 500_000, len(f), len(f)) + f)
    return b"".join(out)


def _ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes, ttl: int = 64) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            1,
            0,
            ttl,
            17,
            0,
            ipaddress.ip_address(src).packed,
            ipaddress.ip_address(dst).packed,
        )
        + udp
    )


def _eth(payload: bytes, ethertype: int = 0x0800, tags: tuple[int, ...] = ()) -> bytes:
    head = bytes.fromhex("ffffffffffff00095c000001")
    for tpid, vid in zip((0x88A8, 0x8100), tags, strict=False):
        head += struct.pack("!HH", tpid if len(tags) == 2 else 0x8100, vid)
    return head + struct.pack("!H", ethertype) + payload


def test_matches_plain_walker_on_real_capture(shared_data: Path) -> None:
    path = shared_data / VH
    recs = _records(path)
    frames = list(pcaputil.frames(path))
    assert len(recs) == len(frames)
    assert np.allclose(recs["ts"], [f[0] for f in frames])
    segs = [s for s in pcaputil.segments(path) if s.payload]
    ours = recs[(recs["payload_len"] > 0) & np.isin(recs["proto"], [6, 17]) & (recs["status"] == ST_OK)]
    assert len(ours) == len(segs)
    for rec, seg in zip(ours[:2000], segs[:2000], strict=True):
        assert (int(rec["sport"]), int(rec["dport"])) == (seg.sport, seg.dport)
        assert int(rec["payload_len"]) == len(seg.payload)


def test_pcapng_and_linktypes_of_ndpi_captures(shared_data: Path) -> None:
    pcaps = sorted((shared_data / "captures/ndpi/cfgs/default/pcap").iterdir())[:120]
    checked = 0
    for path in pcaps:
        try:
            want = list(pcaputil.frames(path))
        except Exception:
            continue
        try:
            got = _records(path)
        except CaptureError:
            continue
        assert len(got) == len(want), path.name
        checked += 1
    assert checked > 80


def test_gzip_and_directory(tmp_path: Path, shared_data: Path) -> None:
    raw = (shared_data / VH).read_bytes()
    (tmp_path / "a.pcap.gz").write_bytes(gzip.compress(raw, 1))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.pcap").write_bytes(raw)
    (tmp_path / "notes.txt").write_text("not a capture")
    files = expand_paths([tmp_path])
    assert [f.name for f in files] == ["a.pcap.gz", "b.pcap"]
    assert len(_records(files[0])) == len(_records(files[1])) == 27246


def test_vlan_qinq_sll_sll2_raw() -> None:
    ip = _ipv4_udp("10.0.0.1", "10.0.0.2", 5000, 53, b"x" * 12)
    frames = {
        1: [_eth(ip), _eth(ip, tags=(12,)), _eth(ip, tags=(100, 200))],
        113: [struct.pack("!HHH8sH", 0, 1, 6, bytes(range(8)), 0x0800) + ip],
        276: [struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, bytes(range(8))) + ip],
        101: [ip],
        228: [ip],
    }
    for linktype, fs in frames.items():
        data = _pcap(fs, linktype)
        recs = np.concatenate([b.recs for b in _iter_bytes(data)])
        assert (recs["status"] == ST_OK).all(), linktype
        assert (recs["dport"] == 53).all() and (recs["payload_len"] == 12).all(), linktype
        assert len(set(recs["flow_hash"].tolist()) - {0}) >= 1
    recs = np.concatenate([b.recs for b in _iter_bytes(_pcap(frames[1]))])
    assert recs["vlan"].tolist() == [0, 12, 100]


def test_flow_hash_is_direction_independent() -> None:
    a = _eth(_ipv4_udp("10.0.0.1", "10.0.0.2", 5000, 53, b"q"))
    b = _eth(_ipv4_udp("10.0.0.2", "10.0.0.1", 53, 5000, b"r"))
    recs = np.concatenate([x.recs for x in _iter_bytes(_pcap([a, b]))])
    assert recs["flow_hash"][0] == recs["flow_hash"][1]
    assert recs["dir"][0] != recs["dir"][1]


def test_flow_hash_spreads_structured_addresses_over_shards() -> None:
    # Wards numbered by subnet, hosts numbered alike in each (10.78.K.21 -> 10.78.K.10:1883): the same
    # flow of 256 wards. The flow table indexes by the hash's low bits, so those must not follow the
    # addresses' low bits (FNV-1a's do: 8 residues got 0.4x-2.4x their share).
    frames = [
        _eth(_ipv4_udp(f"10.78.{k}.21", f"10.78.{k}.10", 40000, 1883, b"x")) for k in range(256)
    ]
    hashes = np.concatenate([b.recs for b in _iter_bytes(_pcap(frames))])["flow_hash"]
    for n in (2, 4, 8):
        per_shard = np.bincount((hashes % np.uint64(n)).astype(np.int64), minlength=n)
        assert per_shard.max() <= 256 / n * 1.5, (n, per_shard.tolist())


def test_link_layer_frames_are_keyed_by_their_sender() -> None:
    # ARP and other non-IP frames have no flow; keyed by the source MAC they spread over `--workers` shards
    # (`_fastpath.deal` deals them by this key; all in shard 0 made it the slowest worker), one
    # sender's frames in one shard.
    def arp(k: int) -> bytes:
        return bytes.fromhex("ffffffffffff") + bytes([0, 0x09, 0xFB, 0, 0, k]) + b"\x08\x06" + b"\x00" * 28

    recs = np.concatenate([b.recs for b in _iter_bytes(_pcap([arp(k) for k in range(64)] + [arp(7)]))])
    assert (recs["ipver"] == 0).all() and (recs["flow_hash"] != 0).all()
    assert recs["flow_hash"][7] == recs["flow_hash"][64] and len(set(recs["flow_hash"][:64].tolist())) == 64
    per_shard = np.bincount((recs["flow_hash"][:64] % np.uint64(4)).astype(np.int64), minlength=4)
    assert per_shard.min() >= 8, per_shard.tolist()


def test_fragments_and_malformed_are_flagged() -> None:
    ip = bytearray(_ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"abcdefgh"))
    frag = bytes(ip[:6]) + struct.pack("!H", 0x0010) + bytes(ip[8:])  # offset 16 bytes: a later fragment
    bad = bytes([0x4F]) + bytes(ip[1:10])  # IHL says 60 bytes, frame has 10
    recs = np.concatenate([b.recs for b in _iter_bytes(_pcap([_eth(frag), _eth(bad)]))])
    assert recs["status"].tolist() == [ST_FRAGMENT, ST_MALFORMED]


def test_pcapng_two_interfaces_epb_spb(tmp_path: Path) -> None:
    ip = _ipv4_udp("10.0.0.1", "10.0.0.2", 1234, 161, b"snmp!")

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb_eth = block(1, struct.pack("<HHI", 1, 0, 65535))
    tsresol = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)  # nanoseconds
    idb_raw = block(1, struct.pack("<HHI", 101, 0, 65535) + tsresol)
    ts_ns = 1_700_000_000_123_456_789
    epb0 = block(
        6,
        struct.pack(
            "<IIIII",
            0,
            (1_700_000_000_000_000 >> 32),
            1_700_000_000_000_000 & 0xFFFFFFFF,
            len(_eth(ip)),
            len(_eth(ip)),
        )
        + _eth(ip),
    )
    epb1 = block(6, struct.pack("<IIIII", 1, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(ip), len(ip)) + ip)
    spb = block(3, struct.pack("<I", len(_eth(ip))) + _eth(ip))
    path = tmp_path / "x.pcapng"
    path.write_bytes(shb + idb_eth + idb_raw + epb0 + epb1 + spb + block(5, b"stats"))
    recs = _records(path)
    assert len(recs) == 3
    assert (recs["dport"] == 161).all()
    assert recs["ts"][0] == pytest.approx(1_700_000_000.0)
    assert recs["ts"][1] == pytest.approx(1_700_000_000.123456789)
    assert recs["iface"].tolist() == [0, 1, 0]


def test_truncated_file_reports_offset_after_delivering_what_was_readable(
    tmp_path: Path, shared_data: Path
) -> None:
    raw = (shared_data / VH).read_bytes()
    cut = len(raw) // 2
    path = tmp_path / "cut.pcap"
    path.write_bytes(raw[:cut])
    got = 0
    with pytest.raises(CaptureError) as info:
        for b in CaptureFile(path):
            got += len(b.recs)
    assert str(path) in str(info.value) and "truncated" in str(info.value)
    assert 0 < info.value.offset <= cut
    walker = sum(1 for _ in pcaputil.frames(path))  # counts a partial last frame too
    assert got > 10000 and got in (walker - 1, walker)


def test_corrupt_record_length_and_not_a_capture(tmp_path: Path) -> None:
    good = _pcap([_eth(_ipv4_udp("10.0.0.1", "10.0.0.2", 1, 2, b"a"))] * 3)
    bad = bytearray(good)
    second = 24 + (len(good) - 24) // 3
    bad[second + 8 : second + 12] = struct.pack("<I", 0x7FFFFFFF)
    p = tmp_path / "bad.pcap"
    p.write_bytes(bytes(bad))
    n = 0
    with pytest.raises(CaptureError) as info:
        for b in CaptureFile(p):
            n += len(b.recs)
    assert n == 1 and info.value.offset == second
    q = tmp_path / "x.pcap"
    q.write_text("hello, this is not a capture file at all")
    with pytest.raises(CaptureError, match="not a pcap"):
        list(CaptureFile(q))


def _iter_bytes(data: bytes) -> list[Batch]:
    with tempfile.NamedTemporaryFile(suffix=".pcap") as fh:
        fh.write(data)
        fh.flush()
        return list(CaptureFile(Path(fh.name)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.binary(max_size=200), max_size=20), st.sampled_from([0, 1, 12, 101, 113, 228, 229, 276, 147])
)
def test_fuzz_random_frames_never_crash(frames: list[bytes], linktype: int) -> None:
    recs = [r for b in _iter_bytes(_pcap(frames, linktype)) for r in b.recs]
    assert len(recs) == len(frames)
    for r in recs:
        assert int(r["payload_off"]) + int(r["payload_len"]) <= int(r["caplen"]) or r["payload_len"] == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=3000), st.booleans())
def test_fuzz_random_files_error_cleanly(blob: bytes, ng: bool) -> None:
    head = bytes.fromhex("0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000") if ng else _pcap([])
    try:
        for b in _iter_bytes(head + blob):
            assert (b.recs["caplen"] <= 256 * 1024).all()
    except CaptureError as exc:
        assert exc.offset >= 0


def test_another_process_finds_a_batch_by_its_window(tmp_path: Path) -> None:
    """`analyze --workers`: a worker given a batch's records and `CaptureFile.window` maps the file and
    reads the same frames; a compressed file has no window (its frames travel as bytes)."""
    from medsentry.capture.windows import Windows

    example = Path(__file__).resolve().parents[2] / "examples/hospital-ward.pcap"
    plain, packed = tmp_path / "ward.pcap", tmp_path / "ward.pcap.gz"
    plain.write_bytes(example.read_bytes())
    packed.write_bytes(gzip.compress(example.read_bytes()))
    cap = CaptureFile(plain, batch_size=512)
    windows = Windows.of(plain)
    seen = []
    for batch in cap:
        assert cap.window is not None
        buf = windows.at(cap.window, len(batch.buf))
        recs = batch.recs
        frames = [(int(r["frame_off"]), int(r["caplen"])) for r in recs[:: max(1, len(recs) // 8)]]
        assert [bytes(buf[o : o + n]) for o, n in frames] == [bytes(batch.buf[o : o + n]) for o, n in frames]
        seen.append((buf, frames, [bytes(buf[o : o + n]) for o, n in frames]))
    assert len(seen) > 10
    # pages behind the latest window were dropped from the mapping: an earlier buffer still reads the same
    first_buf, frames, before = seen[0]
    assert [bytes(first_buf[o : o + n]) for o, n in frames] == before
    windows.close()
    compressed = CaptureFile(packed)
    assert sum(len(batch.recs) for batch in compressed) == sum(len(b.recs) for b in CaptureFile(plain))
    assert compressed.window is None


@pytest.mark.parametrize("gzipped", [False, True])
def test_batches_held_or_dropped_read_the_same_records(tmp_path: Path, gzipped: bool) -> None:
    """Record arrays are used again once nothing holds a batch's records (`RecordArrays`): records held
    while later batches are read stay as they were, a view of a field holds its array too, and an array
    nothing holds is the one taken next."""
    from medsentry.capture.records import RecordArrays

    example = (Path(__file__).resolve().parents[2] / "examples/hospital-ward.pcap").read_bytes()
    path = tmp_path / ("ward.pcap.gz" if gzipped else "ward.pcap")
    path.write_bytes(gzip.compress(example) if gzipped else example)
    held = [b.recs for b in CaptureFile(path, batch_size=64)]
    copies = [recs.copy() for recs in held]
    assert len(held) > 20
    stamps = [recs["ts"] for recs in held]  # views of the arrays' fields, their arrays dropped
    del held
    dropped = [b.recs.copy() for b in CaptureFile(path, batch_size=64)]
    assert all(np.array_equal(a, b) for a, b in zip(copies, dropped, strict=True))
    assert all(np.array_equal(ts, c["ts"]) for ts, c in zip(stamps, copies, strict=True))

    arrays = RecordArrays(8)
    first = arrays.take()[:3]
    was = weakref.ref(first.base)
    second = arrays.take()
    assert second is not was()  # the first one's records are held
    del first
    assert arrays.take() is was()
    assert arrays.take() is was()  # nothing holds it since


def _resident_kb(path: Path) -> int:
    """Resident kB of this process's mapping of `path` (Linux /proc/self/smaps)."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.endswith(str(path)):
            for attr in lines[i + 1 :]:
                if attr.startswith("Rss:"):
                    return int(attr.split()[1])
    raise AssertionError(f"{path} is not mapped")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_windows_stay_mapped_only_as_far_behind_as_asked(tmp_path: Path) -> None:
    """Memory stays flat however large the file: pages behind the latest window leave this process, and
    with `behind` (batches read ahead of their analysis still in use) only those windows stay."""
    import mmap

    from medsentry.capture.windows import Windows

    page = mmap.PAGESIZE
    window = 4 << 20
    path = tmp_path / "capture.bin"
    path.write_bytes(bytes(range(256)) * (24 * window // 256))
    resident = {}
    for behind in (0, 2):
        with open(path, "rb") as fh:
            windows = Windows(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ), behind)
        for k in range(16):
            view = windows.at(k * window, window)
            assert sum(view[::page]) == 0  # every page touched (each page starts with byte 0)
            del view
        resident[behind] = _resident_kb(path) << 10
        windows.close()
    # the kernel maps somewhat more than a fault asks (fault-around, a large folio: up to 2 MB)
    assert window <= resident[0] <= window + (2 << 20)
    assert 3 * window <= resident[2] <= 3 * window + (2 << 20)
