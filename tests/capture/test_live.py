"""Live capture end to end: the bundled example's frames are sent into one end of a veth pair in a network
namespace of their own while `medsentry analyze -i` listens on the other end. The inventory must be the one
the file gives. Needs root (namespaces, packet sockets) and pcapy-ng; skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from medsentry import analysis
from medsentry.report.serialize import device_to_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/hospital-ward.pcap"
MEDSENTRY = [sys.executable, "-m", "medsentry"]

# Sends a pcap's frames out of an interface as they are (AF_PACKET), paced so that no capture buffer
# overflows; prints how many it sent.
_SENDER = """
import socket, struct, sys, time
path, ifname, per_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
data = open(path, "rb").read()
off, n = 24, 0
while off + 16 <= len(data):
    incl = struct.unpack_from("<I", data, off + 8)[0]
    s.send(data[off + 16 : off + 16 + incl])
    off += 16 + incl
    n += 1
    if n % per_ms == 0:
        time.sleep(0.001)
print(n)
"""


# Two processes of one fanout group capture until SIGINT (opened one after the other, then forked, as
# `analyze --workers` does); prints "ready", then per process its frame count, drops and the flow hashes
# of its IP packets.
_FANOUT = """
import json, multiprocessing as mp, signal, sys
from medsentry.capture.live import LiveCapture
ctx = mp.get_context("fork")
stop = ctx.Event()
def work(k, capture, q):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    n, hashes = 0, set()
    for batch in capture:
        n += len(batch.recs)
        hashes.update(batch.recs["flow_hash"][batch.recs["ipver"] != 0].tolist())
    q.put((k, n, capture.dropped, sorted(hashes)))
signal.signal(signal.SIGINT, lambda *_: stop.set())
captures = [LiveCapture(sys.argv[1], stop=stop.is_set, fanout=int(sys.argv[2])) for _ in range(2)]
q = ctx.Queue()
procs = [ctx.Process(target=work, args=(k, c, q)) for k, c in enumerate(captures)]
for p in procs:
    p.start()
print("ready", flush=True)
print(json.dumps(sorted(q.get() for _ in procs)))
"""


def _usable() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a network namespace and packet sockets"
    if shutil.which("ip") is None:
        return "needs iproute2"
    try:
        import pcapy  # noqa: F401
    except ImportError:
        return "needs pcapy-ng (the [live] extra)"
    return None


@pytest.fixture
def veth() -> Iterator[tuple[str, str, str]]:
    """(namespace, sending end, listening end): a veth pair alone in a fresh namespace, IPv6 off so the
    kernel adds no frames of its own."""
    reason = _usable()
    if reason:
        pytest.skip(reason)
    ns = f"ms-live-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace: {exc.stderr.decode().strip()}")
    try:
        for cmd in (
            ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
            ["ip", "link", "add", "tx0", "type", "veth", "peer", "name", "rx0"],
            ["ip", "link", "set", "tx0", "up"],
            ["ip", "link", "set", "rx0", "up"],
        ):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True)
        yield ns, "tx0", "rx0"
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _in(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def _wait_for_sockets(ns: str, count: int, listener: subprocess.Popen) -> None:
    """Until `count` packet sockets are open in the namespace, and a second more: a socket is listed as soon
    as it exists, before its buffer is set up and it has joined its fanout group."""
    for _ in range(300):
        table = subprocess.run(_in(ns, "cat", "/proc/net/packet"), capture_output=True, text=True).stdout
        if len(table.splitlines()) - 1 >= count:
            time.sleep(1.0)
            return
        assert listener.poll() is None, "the listener ended before capturing"
        time.sleep(0.1)
    raise AssertionError("the listener did not start capturing within 30 s")


def _live(ns: str, tx: str, rx: str, out: Path, *options: str) -> dict:
    """`analyze -i rx` in the namespace while the example's frames go out of tx, then Ctrl-C; its JSON
    document."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    listener = subprocess.Popen(
        _in(ns, *MEDSENTRY, "analyze", "-i", rx, "--no-detect", "--no-store", "-q", "--json", str(out),
            *options),
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    workers = int(options[options.index("--workers") + 1]) if "--workers" in options else 1
    _wait_for_sockets(ns, workers, listener)
    sent = subprocess.run(_in(ns, sys.executable, "-c", _SENDER, str(EXAMPLE), tx, "20"),
                          check=True, capture_output=True, text=True)  # fmt: skip
    listener.send_signal(signal.SIGINT)  # what was captured is still analysed and reported
    _, err = listener.communicate(timeout=60)
    assert listener.returncode == 0, err.decode()
    document = json.loads(out.read_text())
    document["sent"] = int(sent.stdout)
    return document


def _identified(devices: list[dict]) -> dict[str, tuple]:
    return {
        d["key"]: (d["device_class"], d["vendor"], d["model"], d["firmware"], d["os"], d["hostname"])
        for d in devices
    }


@pytest.fixture(scope="module")
def from_file() -> dict[str, tuple]:
    return _identified([device_to_dict(d) for d in analysis.run_inputs([EXAMPLE]).devices])


def test_live_capture_identifies_what_the_file_gives(veth: tuple[str, str, str], tmp_path: Path,
                                                     from_file: dict[str, tuple]) -> None:  # fmt: skip
    ns, tx, rx = veth
    document = _live(ns, tx, rx, tmp_path / "live.json")
    stats = document["stats"]
    assert document["sent"] == stats["packets"] == 10_010
    assert stats.get("capture_dropped", 0) == 0
    assert len(from_file) >= 16
    assert _identified(document["devices"]) == from_file


def test_live_workers_share_the_interface_by_flow(veth: tuple[str, str, str], tmp_path: Path,
                                                  from_file: dict[str, tuple]) -> None:  # fmt: skip
    ns, tx, rx = veth
    document = _live(ns, tx, rx, tmp_path / "live.json", "--workers", "2")
    stats = document["stats"]
    assert document["sent"] == stats["packets"] == 10_010  # each frame reached exactly one worker
    assert stats["capture_dropped"] == 0
    assert _identified(document["devices"]) == from_file


def test_fanout_gives_each_flow_to_one_process(veth: tuple[str, str, str]) -> None:
    ns, tx, rx = veth
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    listener = subprocess.Popen(_in(ns, sys.executable, "-c", _FANOUT, rx, str(os.getpid() & 0xFFFF)),
                                env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert listener.stdout is not None and listener.stdout.readline() == "ready\n"
    subprocess.run(_in(ns, sys.executable, "-c", _SENDER, str(EXAMPLE), tx, "20"), check=True,
                   capture_output=True)  # fmt: skip
    listener.send_signal(signal.SIGINT)
    out, _ = listener.communicate(timeout=30)
    (_, n0, dropped0, flows0), (_, n1, dropped1, flows1) = json.loads(out)
    assert n0 + n1 == 10_010 and dropped0 == dropped1 == 0
    assert min(n0, n1) > 2_000  # shared, not all to one
    assert not set(flows0) & set(flows1)  # both directions of a flow reach the same process


def test_small_batches_wait_for_frames_to_gather_full_ones_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 100k packets/s the kernel wakes a reader for a few hundred frames, and every batch costs the
    analysis about the same whatever its size: after a small batch the next read waits until
    GATHER_SECONDS have passed since the last; after a full one (the reader is behind) it does not."""
    pytest.importorskip("pcapy")
    from medsentry.capture import live

    frame = bytes.fromhex("ffffffffffff0200000000010806") + bytes(46)  # an (empty) ARP frame

    def frames(n: int) -> tuple[bytes, bytes]:
        return frame * n, b"".join(struct.pack("=4I", 1, 0, i * len(frame), len(frame)) for i in range(n))

    reads = [frames(10), frames(10), frames(live.BATCH_PACKETS), frames(10)]
    events: list[tuple[str, float]] = []

    class Handle:
        def datalink(self) -> int:
            return 1

        def getfd(self) -> int:
            return 0

        def next_batch(self, most: int) -> tuple[bytes, bytes]:
            data, meta = reads.pop(0) if reads else (b"", b"")
            events.append(("read", len(meta) // 16))
            return data, meta

        def stats(self) -> tuple[int, int, int]:
            return 0, 0, 0

        def close(self) -> None:
            pass

    monkeypatch.setattr(live, "_open", lambda *_: (Handle(), 0.0))
    monkeypatch.setattr(live.select, "select", lambda *_: None)
    monkeypatch.setattr(live.time, "sleep", lambda s: events.append(("wait", s)))
    monkeypatch.setattr(live, "FLUSH_SECONDS", 0.001)  # end soon once the reads run out
    got = [len(b.recs) for b in live.LiveCapture("fake0", stop=lambda: not reads)]
    assert got == [10, 10, live.BATCH_PACKETS, 10]
    kinds = [e[0] for e in events]
    assert kinds[:6] == ["read", "wait", "read", "wait", "read", "read"]
    assert all(0 < s <= live.GATHER_SECONDS for kind, s in events if kind == "wait")


def test_live_bpf_filter_is_applied(veth: tuple[str, str, str], tmp_path: Path) -> None:
    from medsentry.capture.files import CaptureFile

    recs = [b.recs for b in CaptureFile(EXAMPLE)]
    not_tcp = sum(int(((r["proto"] != 6) | (r["ipver"] == 0)).sum()) for r in recs)
    ns, tx, rx = veth
    document = _live(ns, tx, rx, tmp_path / "live.json", "--bpf", "not tcp")
    assert 0 < document["stats"]["packets"] == not_tcp < document["sent"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_missing_interface_is_a_clear_error(workers: str, tmp_path: Path) -> None:
    pytest.importorskip("pcapy")
    done = subprocess.run([*MEDSENTRY, "analyze", "-i", "nosuch0", "--duration", "5", "--no-store", "-q",
                           "--workers", workers, "--json", str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "live:nosuch0: cannot capture: no such interface" in done.stderr
    assert json.loads((tmp_path / "out.json").read_text())["devices"] == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_checkpoints_keep_the_inventory_when_the_run_never_ends(
    veth: tuple[str, str, str], tmp_path: Path, from_file: dict[str, tuple], workers: str
) -> None:
    """A sensor killed outright (power cut, OOM killer) keeps what it had stored at its last checkpoint."""
    from medsentry.store import open_store

    ns, tx, rx = veth
    db = tmp_path / "inventory.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    listener = subprocess.Popen(
        _in(ns, *MEDSENTRY, "analyze", "-i", rx, "--checkpoint", "1", "--db", str(db), "-q",
            "--workers", workers),
        env=env, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    _wait_for_sockets(ns, int(workers), listener)
    subprocess.run(_in(ns, sys.executable, "-c", _SENDER, str(EXAMPLE), tx, "20"), check=True,
                   capture_output=True)  # fmt: skip
    time.sleep(3.5)  # at least two checkpoints after the last frame
    os.killpg(listener.pid, signal.SIGKILL)  # the listener and its workers, no chance to finish
    listener.wait(timeout=30)
    with open_store(db) as store:
        stored = {d.key: d for d in store.list_devices()}
        (run,) = store.list_runs()
        alerts = store.list_alerts()
    assert run.stats.packets == 10_010
    for key, (device_class, vendor, model, firmware, *_) in from_file.items():
        d = stored[key]  # also those known only from flows not ended yet: they count as they are
        assert (d.device_class, d.vendor, d.model, d.firmware) == (device_class, vendor, model, firmware), key
    # alerts judged so far, the port scan among them though its flows have not ended
    rules = {a.alert.rule for a in alerts}
    assert rules >= {"spoof.arp", "abuse.mqtt_wildcard", "abuse.hl7_injection", "recon.port_scan"}
