"""The `medsentry` command: thin wiring of capture -> identify -> store -> report, no logic of its own.

Exit codes: 0 success; 1 some input could not be read completely (everything readable was analysed and
the errors are printed and listed in the JSON stats); 2 usage error (bad option, missing file).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from medsentry import STALE_HINT, __version__, stale_builds
from medsentry.cli.alerts import alerts
from medsentry.cli.common import (
    CSV_OPTION,
    DB_OPTION,
    EXIT_INPUT_ERRORS,
    JSON_OPTION,
    accepted_path,
    err,
    terminal,
    write,
)
from medsentry.cli.entry import collector_held, one_collection_regime
from medsentry.cli.vulns import feeds, monitor, vulns

if TYPE_CHECKING:
    from medsentry.identify.device import Device

SUMMARY_ROWS = 40  # devices, and alerts, in `analyze`'s closing tables


RULES_OPTION = click.option(
    "--rules",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="MEDSENTRY_RULES",
    help="Detection config merged over the defaults: address space, trusted AEs/brokers, thresholds.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medsentry")
def main() -> None:
    """Passive discovery and security monitoring of connected medical devices."""
    if stale := stale_builds():  # a source checkout: the compiled, older code is what runs
        click.echo(f"medsentry: {', '.join(stale)}: {STALE_HINT}", err=True)


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("-i", "--interface", help="Capture live from this interface (needs CAP_NET_RAW or root).")
@click.option("--bpf", "bpf", help="BPF filter for live capture, e.g. 'not port 22'.")
@click.option("--duration", type=float, help="Stop live capture after this many seconds.")
@click.option(
    "--checkpoint",
    "every",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Live: store the inventory and alerts so far every this many seconds.",
)
@click.option(
    "--fingerprints",
    type=click.Path(exists=True, path_type=Path),
    help="Learned fingerprint file from `medsentry learn` (classification falls back to it).",
)
@JSON_OPTION
@CSV_OPTION
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes; files are read by one more process per three workers, each its own byte ranges "
    "of a pcap, and their packets dealt by host, a flow's client (live: the kernel shares the interface's "
    "flows, Linux).",
)
@click.option(
    "--alerts",
    "alerts_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run's alerts as JSON ('-' for stdout).",
)
@RULES_OPTION
@click.option("--no-detect", is_flag=True, help="Identify devices only; no attack or PHI detection.")
@click.option("--no-store", is_flag=True, help="Do not merge the result into the inventory database.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no tables.")
@DB_OPTION
@one_collection_regime
def analyze(
    inputs: tuple[Path, ...],
    interface: str | None,
    bpf: str | None,
    duration: float | None,
    every: float,
    fingerprints: Path | None,
    json_out: Path | None,
    csv_out: Path | None,
    workers: int,
    alerts_out: Path | None,
    rules: Path | None,
    no_detect: bool,
    no_store: bool,
    quiet: bool,
    db: Path | None,
) -> None:
    """Identify the devices in capture files (pcap, pcapng, .gz, directories), Zeek logs or live traffic,
    and detect attacks and patient-data leaks in it."""
    with collector_held():  # the analysis path's modules, imported here to keep other commands quick
        from medsentry import analysis, privacy, report
        from medsentry.detect import Detector
        from medsentry.store import open_store

    if not inputs and not interface:
        raise click.UsageError("give capture files / Zeek logs, or --interface for live capture")
    if no_detect and alerts_out is not None:
        raise click.UsageError("--alerts needs detection: drop --no-detect")
    config = _config(rules, db, accepted=not no_detect)
    detector = None if no_detect else Detector(config, live=interface is not None)
    # The hospital's networks, from the rules file as detection reads them: hosts outside them are not
    # inventoried (a cloud service is not a device of the hospital).
    address_space = config.networks
    store = None if no_store else open_store(db)
    try:
        if store is not None:
            # PHI hashes must be comparable across runs of one installation, so the salt lives in the store.
            privacy.set_salt(store.get_or_create_salt())
        started = time.time()
        show = not quiet and json_out != Path("-") and csv_out != Path("-")
        console = err.console if show else None
        live_run = None
        if interface:
            checkpoint = None
            if store is not None:
                # A live run is recorded when it starts and saved as it goes: a capture that never gets
                # to its end (power cut, kill -9) still leaves its inventory up to the last checkpoint.
                nothing_yet = analysis.run_stats_of(analysis.Stats(), started)
                live_run = store.record_run(nothing_yet, [f"live:{interface}"])
                checkpoint = _saver(db, live_run, started)
            result = analysis.run_live(interface, bpf, duration, fingerprints, console, detector, workers,
                                       checkpoint, every, address_space)  # fmt: skip
        else:
            result = analysis.run_inputs(list(inputs), fingerprints, workers, console, detector,
                                         address_space)  # fmt: skip
        run = analysis.run_stats(result, started)
        merged = None
        if store is not None:
            if live_run is None:
                run_id = store.record_run(run, result.inputs)
            else:
                run_id = live_run
                store.update_run(run_id, run)
            merged = store.upsert_devices(result.devices, run_id)
            store.upsert_alerts(result.alerts, run_id)
    finally:
        if store is not None:
            store.close()
    if json_out is not None:
        write(json_out, report.render_json(result.devices, run, result.inputs, details=result.stats_dict))
    if csv_out is not None:
        write(csv_out, report.render_csv(result.devices))
    if alerts_out is not None:
        report.write_alerts_json(str(alerts_out), result.alerts)
    if show:
        out = terminal()
        devices, alerts = result.devices, result.alerts
        # A hospital has thousands of devices: the summary shows the head, the lists are a command away
        # (rendering 800 rows took 1.5 s, longer than analysing a 100k-packet capture).
        shown = report.most_relevant(devices, SUMMARY_ROWS)
        caption = _more(len(devices) - len(shown), "devices", "medical first", store, "devices",
                        "--json/--csv")  # fmt: skip
        out.print(report.device_table(shown, width=out.width, caption=caption))
        if alerts:
            shown_alerts = report.most_severe(alerts, SUMMARY_ROWS)
            caption = _more(len(alerts) - len(shown_alerts), "alerts", "gravest first", store, "alerts",
                            "--alerts FILE")  # fmt: skip
            out.print(report.fitting_alert_table(shown_alerts, out.width, caption=caption))
        out.print(report.run_summary(run, devices, merged))
        if remote := result.stats_dict.get("remote_hosts"):
            networks = ", ".join(str(n) for n in address_space)
            hosts, verb = ("1 host", "is") if remote == 1 else (f"{remote:,} hosts", "are")
            out.print(f"{hosts} seen only by IP outside the hospital's address space ({networks}) {verb}"
                      " not in the inventory; if some are the hospital's, list its networks under"
                      " address_space in a --rules file", highlight=False, markup=False)  # fmt: skip
    if result.stats.capture_dropped:
        err.print(
            f"warning: {result.stats.capture_dropped:,} frames were dropped before analysis (it fell behind"
            " the interface); more --workers or a narrower --bpf help",
            highlight=False,
            markup=False,
        )
    errors = result.stats.errors
    for e in errors:
        err.print(f"error: {e}", highlight=False, markup=False)
    if errors:
        sys.exit(EXIT_INPUT_ERRORS)


def _more(hidden: int, what: str, order: str, store: Any, command: str, option: str) -> str | None:
    """A summary table's caption when rows did not fit: how many, and where to see them all."""
    if hidden <= 0:
        return None
    where = f"`medsentry {command}` lists" if store is not None else f"{option} writes"
    return f"{hidden:,} more {what} not shown ({order}); {where} them all"


def _saver(db: Path | None, run_id: int, started: float) -> Any:
    """A live run's checkpoint: the inventory, alerts and counters so far, into the store under its run (the
    store replaces what the same run stored before instead of adding it again). It opens the store itself:
    it may run in a forked process, which must not use its parent's connection."""
    from medsentry import analysis
    from medsentry.store import open_store

    def save(devices: list[Any], alerts: list[Any], stats: Any) -> None:
        with open_store(db) as store:
            store.upsert_devices(devices, run_id)
            store.upsert_alerts(alerts, run_id)
            store.update_run(run_id, analysis.run_stats_of(stats, started))

    return save


@main.group(invoke_without_command=True)
@JSON_OPTION
@CSV_OPTION
@click.option("--class", "device_class", help="Only this device class.")
@click.option("--vendor", help="Only vendors containing this text.")
@DB_OPTION
@click.pass_context
def devices(
    ctx: click.Context,
    json_out: Path | None,
    csv_out: Path | None,
    device_class: str | None,
    vendor: str | None,
    db: Path | None,
) -> None:
    """List the inventory (or `devices show KEY` for one device with evidence and history)."""
    ctx.obj = db
    if ctx.invoked_subcommand is not None:
        return
    from medsentry import report
    from medsentry.store import open_store
    from medsentry.store.base import DeviceFilter

    with open_store(db) as store:
        found = store.list_devices(DeviceFilter(device_class=device_class, vendor=vendor))
    if json_out is not None:
        write(json_out, report.render_json(found))
    if csv_out is not None:
        write(csv_out, report.render_csv(found))
    if json_out is None and csv_out is None:
        out = terminal()
        out.print(report.device_table(found, width=out.width))


@devices.command("show")
@click.argument("key")
@click.pass_obj
def devices_show(db: Path | None, key: str) -> None:
    """One device: every attribute with its evidence, services and change history."""
    from medsentry import report
    from medsentry.store import open_store

    with open_store(db) as store:
        device = store.get_device(key)
        if device is None:
            raise click.ClickException(f"no device {key!r} in the inventory")
        terminal().print(report.device_detail(device, store.device_history(device.key)))


@devices.command("forget")
@click.argument("keys", nargs=-1)
@click.option("--not-seen-since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
              help="Also every device whose traffic was last seen before this UTC date (decommissioned).")
@click.option("--remote", is_flag=True,
              help="Also hosts known only by IP outside the address space (what earlier versions listed).")
@RULES_OPTION
@click.option("--dry-run", is_flag=True, help="List what would be forgotten; change nothing.")
@click.pass_obj
def devices_forget(db: Path | None, keys: tuple[str, ...], not_seen_since: datetime | None, remote: bool,
                   rules: Path | None, dry_run: bool) -> None:  # fmt: skip
    """Remove devices from the inventory, with their evidence and history: KEYs (MAC, or the IP of a
    routed-only device), and/or the ones the options select. The next run that sees one adds it anew."""
    from medsentry import report
    from medsentry.store import open_store

    if not (keys or not_seen_since or remote):
        raise click.UsageError("name devices (KEY...) or select them (--not-seen-since, --remote)")
    config = _config(rules, db, accepted=False) if remote else None
    before = not_seen_since.replace(tzinfo=UTC).timestamp() if not_seen_since else None
    with open_store(db) as store:
        chosen: dict[str, Device] = {}
        for key in keys:
            device = store.get_device(key)
            if device is None:
                raise click.ClickException(f"no device {key!r} in the inventory")
            if device.key.lower() != key.lower():  # an address of a device kept by its MAC
                raise click.ClickException(f"{key} is an address of {device.key}: name that key to forget it")
            chosen[device.key] = device
        for d in store.list_devices() if before is not None or remote else ():
            stale = before is not None and (d.last_seen or 0.0) < before
            outside = config is not None and d.mac is None and not any(map(config.is_local, d.ips))
            if stale or outside:
                chosen.setdefault(d.key, d)
        if dry_run:
            out = terminal()
            out.print(report.device_table(chosen.values(), title="Would be forgotten", width=out.width))
            return
        gone = store.forget_devices(list(chosen))
    err.print(f"forgot {gone:,} device{'s' if gone != 1 else ''}", highlight=False)


@main.command()
@JSON_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Runs shown.")
@DB_OPTION
def runs(json_out: Path | None, limit: int, db: Path | None) -> None:
    """The analysis runs merged into the inventory, newest first: what was read, when, how much, how fast
    (a device's history names the run that changed it)."""
    from medsentry import report
    from medsentry.store import open_store

    with open_store(db) as store:
        found = store.list_runs(limit)
    if json_out is not None:
        document = {"runs": [{"id": r.id, **report.stats_to_dict(r.stats, r.inputs)} for r in found]}
        write(json_out, json.dumps(document, indent=2))
    else:
        out = terminal()
        out.print(report.runs_table(found, width=out.width))


def _config(rules: Path | None, db: Path | None, accepted: bool):  # -> medsentry.detect.Config
    """The detection configuration (`--rules` over the defaults), and with `accepted` what `alerts accept`
    recorded beside the inventory `db`."""
    from medsentry.detect import ConfigError, load_config
    from medsentry.detect.config import read_accepted

    try:
        config = load_config(rules)
        extra = read_accepted(accepted_path(db)) if accepted else None
        if extra:
            config = load_config(rules, overrides={"accept": [*(config["accept"] or []), *extra]})
        return config
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--rules") from exc



@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Fingerprint file to write (JSON, human-editable).",
)
def learn(directory: Path, out: Path) -> None:
    """Learn one device type per sub-folder of DIRECTORY (folder name = label, captures inside; the device is
    the MAC most often seen as a source, or the one in an optional mac.txt)."""
    from medsentry.identify import learn as learning

    fingerprints = learning.learn_directory(directory)
    out.write_text(json.dumps(fingerprints, indent=2, sort_keys=True) + "\n")
    err.print(f"learned {len(fingerprints.get('types', {}))} device types -> {out}")


main.add_command(alerts)
main.add_command(feeds)
main.add_command(vulns)
main.add_command(monitor)
