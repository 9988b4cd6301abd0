"""`medsentry` end to end: the --json contract, exit codes, the inventory across runs, privacy on disk."""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from medsentry.cli import entry
from medsentry.cli.main import main
from medsentry.store import open_store
from tests import pcaputil

CONTRACT_KEYS = {
    "mac", "ips", "device_class", "vendor", "model", "firmware", "label", "confidence", "evidence",
}  # fmt: skip
# Values of the PID/NK1 segments in nDPI's hl7.pcap: none of them may reach a file medsentry writes.
PHI_VALUES = (b"MICKEY", b"MINNIE", b"135769", b"19281118", b"123 Main St", b"939-5555", b"999999999")


@pytest.fixture()
def hl7_pcap(shared_data: Path) -> Path:
    return shared_data / "captures/ndpi/cfgs/default/pcap/hl7.pcap"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_analyze_json_contract_and_packet_count(hl7_pcap: Path, tmp_path: Path) -> None:
    out, db = tmp_path / "out.json", tmp_path / "inv.db"
    result = run("analyze", hl7_pcap, "--json", out, "--db", db, "-q")
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    assert document["devices"], "the HL7 sender and receiver are devices"
    for device in document["devices"]:
        assert device.keys() >= CONTRACT_KEYS
        assert 0.0 <= device["confidence"] <= 1.0
        assert all({"attribute", "value", "protocol"} <= e.keys() for e in device["evidence"])
    stats = document["stats"]
    assert stats["packets"] == sum(1 for _ in pcaputil.frames(hl7_pcap))
    assert isinstance(stats["malformed"], int)
    assert stats["inputs"] == [str(hl7_pcap)]
    hl7_speakers = [d for d in document["devices"] if any(e["protocol"] == "hl7" for e in d["evidence"])]
    assert hl7_speakers, "HL7 identities are evidence"


def test_rerun_merges_into_one_inventory(hl7_pcap: Path, tmp_path: Path) -> None:
    db = tmp_path / "inv.db"
    assert run("analyze", hl7_pcap, "--db", db, "-q").exit_code == 0
    first = json.loads(run("devices", "--json", "-", "--db", db).output)["devices"]
    assert run("analyze", hl7_pcap, "--db", db, "-q").exit_code == 0
    second = json.loads(run("devices", "--json", "-", "--db", db).output)["devices"]
    assert sorted(d["key"] for d in first) == sorted(d["key"] for d in second)
    with open_store(db) as store:
        assert len(store.list_runs()) == 2
    runs = json.loads(run("runs", "--json", "-", "--db", db).output)["runs"]
    assert [r["id"] for r in runs] == [2, 1] and all(r["inputs"] == [str(hl7_pcap)] for r in runs)
    assert runs[0]["packets"] == runs[1]["packets"] > 0 and runs[0]["started"] >= runs[1]["started"]
    latest = json.loads(run("runs", "--limit", "1", "--json", "-", "--db", db).output)["runs"]
    assert [r["id"] for r in latest] == [2]
    table = run("runs", "--db", db).output  # 80 columns: counts stacked beside the inputs
    assert f"{runs[0]['packets']:,} packets" in table and max(map(len, table.splitlines())) <= 80
    shown = run("devices", "--db", db, "show", first[0]["key"])
    assert shown.exit_code == 0 and first[0]["key"] in shown.output
    assert run("devices", "--db", db, "show", "no-such-device").exit_code == 1


def test_no_phi_on_disk(hl7_pcap: Path, tmp_path: Path) -> None:
    assert any(v in hl7_pcap.read_bytes() for v in PHI_VALUES), "the sample must carry the PHI we look for"
    out, csv_out, db = tmp_path / "out.json", tmp_path / "out.csv", tmp_path / "inv.db"
    result = run("analyze", hl7_pcap, "--json", out, "--csv", csv_out, "--db", db)
    assert result.exit_code == 0
    written = b"".join(p.read_bytes() for p in tmp_path.iterdir()) + result.output.encode()
    for value in PHI_VALUES:
        assert value not in written, value


def test_truncated_capture_keeps_what_was_readable_and_exits_1(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "captures/virtual-hospital/general-hospital-normal-60s.pcap"
    cut = tmp_path / "cut.pcap"
    with source.open("rb") as f:
        cut.write_bytes(f.read(200_000) + b"\x01\x02\x03")  # ends inside a record
    out = tmp_path / "out.json"
    result = run("analyze", cut, "--json", out, "--no-store", "-q")
    assert result.exit_code == 1
    assert str(cut) in result.stderr and "offset" in result.stderr
    document = json.loads(out.read_text())
    assert document["stats"]["packets"] > 100 and document["devices"]
    assert any(str(cut) in e for e in document["stats"]["errors"])


def test_not_a_capture_is_an_input_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("these are not packets\n")
    result = run("analyze", bogus, "--no-store", "-q")
    assert result.exit_code == 1 and str(bogus) in result.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("analyze", "--no-store").exit_code == 2
    assert run("analyze", tmp_path / "missing.pcap").exit_code == 2


def test_directory_and_gzip_inputs(hl7_pcap: Path, tmp_path: Path) -> None:
    folder = tmp_path / "caps"
    folder.mkdir()
    shutil.copy(hl7_pcap, folder / "a.pcap")
    out = tmp_path / "out.json"
    assert run("analyze", folder, "--json", out, "--no-store", "-q").exit_code == 0
    assert json.loads(out.read_text())["stats"]["packets"] == sum(1 for _ in pcaputil.frames(hl7_pcap))


def test_live_drops_are_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames the kernel dropped are missing from the analysis: say so even with -q (the numbers come from
    the capture, see tests/capture/test_live.py)."""
    from medsentry import analysis
    from medsentry.pipeline import Stats

    def run_live(interface: str, *args: object) -> analysis.Result:
        stats = Stats(packets=10, capture_dropped=1234)
        return analysis.Result([], stats.to_dict(), [f"live:{interface}"], stats)

    monkeypatch.setattr(analysis, "run_live", run_live)
    result = run("analyze", "-i", "eth9", "--no-store", "--no-detect", "-q")
    assert result.exit_code == 0
    assert "1,234 frames were dropped" in result.stderr
    monkeypatch.setattr(analysis, "run_live", lambda i, *a: analysis.Result([], {}, [i], Stats(packets=10)))
    assert "dropped" not in run("analyze", "-i", "eth9", "--no-store", "--no-detect", "-q").stderr


EXAMPLE = Path(__file__).resolve().parents[2] / "examples/hospital-ward.pcap"


@pytest.mark.parametrize("stored", [True, False])
def test_summary_shows_medical_devices_first_and_says_where_the_rest_are(
    stored: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medsentry.cli.main as cli
    from medsentry.identify.taxonomy import classes

    monkeypatch.setattr(cli, "SUMMARY_ROWS", 3)
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "all.json"
    where = ("--db", tmp_path / "inv.db") if stored else ("--no-store",)
    result = run("analyze", EXAMPLE, "--json", out, *where)
    assert result.exit_code == 0, result.output
    devices = json.loads(out.read_text())["devices"]  # the files keep every device
    medical = [d for d in devices if classes()[d["device_class"]].medical]
    assert len(medical) >= 3 and len(devices) > len(medical)
    table = result.output.split("Run summary")[0]
    shown = [d for d in devices if (d["mac"] or d["ips"][0]) in table]
    assert len(shown) == 3 and all(d in medical for d in shown)
    hint = "`medsentry devices` lists them all" if stored else "--json/--csv writes them all"
    assert f"{len(devices) - 3} more devices not shown (medical first); {hint}" in table


def test_hosts_outside_the_address_space_are_not_inventoried(shared_data: Path, tmp_path: Path) -> None:
    import ipaddress

    capture = shared_data / "captures/ndpi/cfgs/default/pcap/1kxun.pcap"  # a LAN client and web servers
    default, everything = tmp_path / "default.json", tmp_path / "everything.json"
    rules = tmp_path / "site.yaml"
    rules.write_text('address_space: [0.0.0.0/0, "::/0"]\n')
    assert run("analyze", capture, "--no-store", "-q", "--json", default).exit_code == 0
    assert run("analyze", capture, "--no-store", "-q", "--json", everything, "--rules", rules).exit_code == 0
    mine, all_hosts = (json.loads(p.read_text()) for p in (default, everything))
    remote = mine["stats"]["remote_hosts"]
    assert remote >= 10 and all_hosts["stats"]["remote_hosts"] == 0
    assert len(all_hosts["devices"]) == len(mine["devices"]) + remote
    for d in mine["devices"]:
        assert d["mac"] or ipaddress.ip_address(d["ips"][0]).is_private, d


def test_forget_removes_devices_with_their_evidence_and_history(shared_data: Path, tmp_path: Path) -> None:
    import sqlite3

    capture = shared_data / "captures/ndpi/cfgs/default/pcap/1kxun.pcap"
    db, rules = tmp_path / "inv.db", tmp_path / "site.yaml"
    rules.write_text('address_space: [0.0.0.0/0, "::/0"]\n')  # as earlier versions stored Internet hosts
    mine = tmp_path / "mine.json"
    assert run("analyze", capture, "--no-store", "-q", "--json", mine).exit_code == 0
    remote = json.loads(mine.read_text())["stats"]["remote_hosts"]
    assert run("analyze", capture, "--db", db, "-q", "--rules", rules).exit_code == 0

    def keys() -> set[str]:
        return {d["key"] for d in json.loads(run("devices", "--json", "-", "--db", db).output)["devices"]}

    before = keys()
    assert run("devices", "--db", db, "forget", "--remote", "--dry-run").exit_code == 0
    assert keys() == before  # a dry run changes nothing
    done = run("devices", "--db", db, "forget", "--remote")
    assert done.exit_code == 0 and f"forgot {remote} devices" in done.stderr
    left = keys()
    assert len(before - left) == remote and all(":" in k or k.startswith(("192.168.", "10.")) for k in left)
    mac = next(k for k in sorted(left) if k.count(":") == 5)
    device = json.loads(run("devices", "--json", "-", "--db", db).output)["devices"]
    ip = next(d["ips"][0] for d in device if d["key"] == mac and d["ips"])
    refused = run("devices", "--db", db, "forget", ip)  # an address of a MAC-keyed device: name its key
    assert refused.exit_code == 1 and f"{ip} is an address of {mac}" in refused.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT evidence FROM devices WHERE key = ?", (mac,)).fetchone()[0] != "[]"
    assert run("devices", "--db", db, "forget", mac).exit_code == 0
    assert mac not in keys() and run("devices", "--db", db, "show", mac).exit_code == 1
    with sqlite3.connect(db) as conn:  # its row (with its evidence), services, addresses and history
        for table in ("services", "device_ips", "device_changes"):
            rows = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE device_key = ?", (mac,)).fetchone()
            assert rows == (0,), table
        assert conn.execute("SELECT COUNT(*) FROM devices WHERE key = ?", (mac,)).fetchone() == (0,)
        others = conn.execute("SELECT COUNT(*) FROM devices WHERE evidence != '[]'").fetchone()[0]
        assert others > 0  # the others' evidence stays
    assert run("devices", "--db", db, "forget").exit_code == 2  # nothing named or selected
    assert run("devices", "--db", db, "forget", "--not-seen-since", "2100-01-01").exit_code == 0
    assert keys() == set()


def test_identification_and_detection_default_to_one_address_space() -> None:
    from medsentry.detect import load_config
    from medsentry.identify.inventory import LOCAL_NETWORKS

    assert tuple(load_config().networks) == LOCAL_NETWORKS


def test_a_gateway_is_not_given_the_remote_servers_address(shared_data: Path, tmp_path: Path) -> None:
    capture = shared_data / "captures/ndpi/cfgs/default/pcap/443-curl.pcap"  # one HTTPS fetch via a gateway
    out = tmp_path / "out.json"
    assert run("analyze", capture, "--no-store", "-q", "--json", out).exit_code == 0
    document = json.loads(out.read_text())
    devices = {d["mac"]: d for d in document["devices"]}
    assert devices["28:37:37:00:6d:c8"]["ips"] == ["192.168.1.13"]  # the client
    assert devices["10:13:31:f1:39:76"]["ips"] == []  # the gateway: the server's packets came through it
    assert document["stats"]["remote_hosts"] == 1  # the server, 178.62.197.130
    said = " ".join(run("analyze", capture, "--no-store").output.split())
    assert "1 host seen only by IP outside the hospital's address space (10.0.0.0/8," in said
    assert "fc00::/7) is not in the inventory" in said


def test_the_command_starts_with_the_collector_held_off_then_on(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        with pytest.raises(SystemExit) as done:
            entry.main(["--version"])
        assert done.value.code == 0
        assert "medsentry, version" in capsys.readouterr().out
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # what the imports made is left out of later collections
    finally:
        gc.unfreeze()


def test_analyze_holds_the_raised_threshold_throughout_and_freezes_what_it_leaves(
    hl7_pcap: Path, tmp_path: Path
) -> None:
    before = gc.get_threshold()
    try:
        result = run("analyze", hl7_pcap, "--db", tmp_path / "inv.db", "--json", tmp_path / "out.json", "-q")
        assert result.exit_code == 0
        assert gc.get_threshold() == before and gc.isenabled()  # Python's again after the command
        assert gc.get_freeze_count() > 0
        # not a bad input: the errors path (exit 1) freezes too
        bogus = tmp_path / "notes.pcap"
        bogus.write_text("not a capture")
        gc.unfreeze()
        assert run("analyze", bogus, "--db", tmp_path / "inv.db", "-q").exit_code == 1
        assert gc.get_freeze_count() > 0 and gc.get_threshold() == before
    finally:
        gc.unfreeze()
