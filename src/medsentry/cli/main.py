"""The `medsentry` command: thin wiring of capture -> identify -> store -> report, no logic of its own.

Exit codes: 0 success; 1 some input could not be read completely (everything readable was analysed and
the errors are printed and listed in the JSON stats); 2 usage error (bad option, missing file).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from medsentry import __version__

err = Console(stderr=True)
EXIT_INPUT_ERRORS = 1

DB_OPTION = click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MEDSENTRY_DB",
    help="Inventory database (default ~/.local/share/medsentry/medsentry.db; env MEDSENTRY_DB).",
)


# Every machine-readable output takes a file, or '-' for stdout (the tables then stay off).
JSON_OPTION = click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON ('-' stdout)."
)
CSV_OPTION = click.option(
    "--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), help="Write CSV ('-' stdout)."
)
VULN_DB_OPTION = click.option(
    "--vuln-db",
    "vuln_db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="MEDSENTRY_VULN_DB",
    help="Vulnerability database (default vulns.db beside the inventory; env MEDSENTRY_VULN_DB).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="medsentry")
def main() -> None:
    """Passive discovery and security monitoring of connected medical devices."""


@main.command()
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("-i", "--interface", help="Capture live from this interface (needs CAP_NET_RAW or root).")
@click.option("--bpf", "bpf", help="BPF filter for live capture, e.g. 'not port 22'.")
@click.option("--duration", type=float, help="Stop live capture after this many seconds.")
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
    help="Processes; packets are sharded by flow.",
)
@click.option(
    "--alerts",
    "alerts_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run's alerts as JSON ('-' for stdout).",
)
@click.option(
    "--rules",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="MEDSENTRY_RULES",
    help="Detection config merged over the defaults: address space, trusted AEs/brokers, thresholds.",
)
@click.option("--no-detect", is_flag=True, help="Identify devices only; no attack or PHI detection.")
@click.option("--no-store", is_flag=True, help="Do not merge the result into the inventory database.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no tables.")
@DB_OPTION
def analyze(
    inputs: tuple[Path, ...],
    interface: str | None,
    bpf: str | None,
    duration: float | None,
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
    from medsentry import analysis, privacy, report
    from medsentry.store import open_store

    if not inputs and not interface:
        raise click.UsageError("give capture files / Zeek logs, or --interface for live capture")
    if no_detect and alerts_out is not None:
        raise click.UsageError("--alerts needs detection: drop --no-detect")
    detector = None if no_detect else _detector(rules, live=interface is not None)
    store = None if no_store else open_store(db)
    try:
        if store is not None:
            # PHI hashes must be comparable across runs of one installation, so the salt lives in the store.
            privacy.set_salt(store.get_or_create_salt())
        started = time.time()
        show = not quiet and json_out != Path("-") and csv_out != Path("-")
        console = err if show else None
        if interface:
            result = analysis.run_live(interface, bpf, duration, fingerprints, console, detector)
        else:
            result = analysis.run_inputs(list(inputs), fingerprints, workers, console, detector)
        run = analysis.run_stats(result, started)
        merged = None
        if store is not None:
            run_id = store.record_run(run, result.inputs)
            merged = store.upsert_devices(result.devices, run_id)
            store.upsert_alerts(result.alerts, run_id)
    finally:
        if store is not None:
            store.close()
    if json_out is not None:
        _write(json_out, report.render_json(result.devices, run, result.inputs, details=result.stats_dict))
    if csv_out is not None:
        _write(csv_out, report.render_csv(result.devices))
    if alerts_out is not None:
        report.write_alerts_json(str(alerts_out), result.alerts)
    if show:
        out = Console()
        out.print(report.device_table(result.devices, wide=out.width >= 140))
        if result.alerts:
            out.print(report.alert_table(result.alerts, wide=out.width >= 120))
        out.print(report.run_summary(run, result.devices, merged))
    errors = result.stats.errors
    for e in errors:
        err.print(f"error: {e}", highlight=False, markup=False)
    if errors:
        sys.exit(EXIT_INPUT_ERRORS)


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
        _write(json_out, report.render_json(found))
    if csv_out is not None:
        _write(csv_out, report.render_csv(found))
    if json_out is None and csv_out is None:
        out = Console()
        out.print(report.device_table(found, wide=out.width >= 140))


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
        Console().print(report.device_detail(device, store.device_history(device.key)))


def _detector(rules: Path | None, live: bool):  # -> medsentry.detect.Detector
    from medsentry.detect import ConfigError, Detector, load_config

    try:
        return Detector(load_config(rules), live=live)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--rules") from exc


@main.group(invoke_without_command=True)
@click.option("--state", type=click.Choice(["new", "acknowledged", "closed"]), help="Only this state.")
@click.option("--rule", help="A rule (recon.port_scan) or a family (recon).")
@click.option(
    "--severity", type=click.Choice(["info", "low", "medium", "high", "critical"]), help="At least this."
)
@click.option("--device", help="Alerts naming this MAC or IP (attacker or victim).")
@JSON_OPTION
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "jsonl", "cef"]),
    help="Write to stdout as CSV, JSON lines or CEF.",
)
@click.option("--syslog", "syslog_to", metavar="HOST[:PORT]", help="Send as CEF over syslog (UDP).")
@click.option("--webhook", metavar="URL", help="POST as JSON to this URL.")
@DB_OPTION
@click.pass_context
def alerts(
    ctx: click.Context,
    state: str | None,
    rule: str | None,
    severity: str | None,
    device: str | None,
    json_out: Path | None,
    fmt: str | None,
    syslog_to: str | None,
    webhook: str | None,
    db: Path | None,
) -> None:
    """List stored alerts (or `alerts show|ack|close ID`); export them to files, syslog or a webhook."""
    ctx.obj = db
    if ctx.invoked_subcommand is not None:
        return
    from medsentry import report
    from medsentry.detect import output
    from medsentry.store import open_store
    from medsentry.store.base import AlertFilter

    with open_store(db) as store:
        rows = store.list_alerts(AlertFilter(state=state, rule=rule, severity=severity, device=device))
    if json_out is not None:
        report.write_alerts_json(str(json_out), rows)
    if fmt is not None:
        _write(Path("-"), report.render_alerts(rows, fmt))
    if syslog_to is not None:
        host, _, port = syslog_to.partition(":")
        sent = output.send_syslog(report.alert_dicts(rows), host, int(port or 514))
        err.print(f"sent {sent} alerts to syslog {host}:{port or 514}")
    if webhook is not None:
        sent = output.post_webhook(report.alert_dicts(rows), webhook)
        err.print(f"posted {sent} alerts to {webhook}", highlight=False, markup=False)
    if json_out is None and fmt is None and syslog_to is None and webhook is None:
        out = Console()
        out.print(report.alert_table(rows, wide=out.width >= 120))


@alerts.command("show")
@click.argument("alert_id")
@click.pass_obj
def alerts_show(db: Path | None, alert_id: str) -> None:
    """One alert: explanation, evidence, victims and its state history (an id prefix is enough)."""
    from medsentry import report

    Console().print(report.alert_detail(_stored_alert(db, alert_id)))


@alerts.command("ack")
@click.argument("alert_id")
@click.option("--note", help="Why: kept in the alert's history.")
@click.pass_obj
def alerts_ack(db: Path | None, alert_id: str, note: str | None) -> None:
    """Mark an alert acknowledged: it stays listed and keeps counting, but is no longer new."""
    _set_state(db, alert_id, "acknowledged", note)


@alerts.command("close")
@click.argument("alert_id")
@click.option("--note", help="Why: kept in the alert's history.")
@click.pass_obj
def alerts_close(db: Path | None, alert_id: str, note: str | None) -> None:
    """Close an alert; it is re-opened as new if it fires again."""
    _set_state(db, alert_id, "closed", note)


def _stored_alert(db: Path | None, alert_id: str):  # -> StoredAlert
    from medsentry.store import open_store
    from medsentry.store.base import StoreError

    with open_store(db) as store:
        try:
            found = store.get_alert(alert_id)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from exc
    if found is None:
        raise click.ClickException(f"no alert {alert_id!r}")
    return found


def _set_state(db: Path | None, alert_id: str, state: str, note: str | None) -> None:
    from medsentry.store import open_store

    full_id = _stored_alert(db, alert_id).alert.id
    with open_store(db) as store:
        store.set_alert_state(full_id, state, note)
    err.print(f"alert {full_id} {state}", highlight=False, markup=False)


MAX_AGE_OPTION = click.option(
    "--max-age",
    "max_age_days",
    type=click.IntRange(0),
    default=7,
    show_default=True,
    help="Refuse feeds older than this many days (0: accept any age, e.g. an archived snapshot).",
)


@main.group()
def vulns() -> None:
    """Known vulnerabilities of SBOM components and inventory devices: matched, triaged, prioritised."""


@vulns.command("sbom")
@click.argument("sbom_path", metavar="SBOM", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--role",
    type=click.Choice(["supplier", "deployer"]),
    default="supplier",
    show_default=True,
    help="SSVC tree: the product's maker (supplier) or a hospital running it (deployer).",
)
@JSON_OPTION
@CSV_OPTION
@MAX_AGE_OPTION
@VULN_DB_OPTION
def vulns_sbom(
    sbom_path: Path,
    role: str,
    json_out: Path | None,
    csv_out: Path | None,
    max_age_days: int,
    vuln_db: Path | None,
) -> None:
    """Findings for every component of a CycloneDX (JSON/XML) or SPDX (JSON/tag-value) SBOM."""
    from medsentry.vulns.sbom import SbomError, read_sbom
    from medsentry.vulns.scan import scan_sbom
    from medsentry.vulns.triage import apply_triage, load_triage

    try:
        sbom = read_sbom(sbom_path)
    except SbomError as exc:
        raise click.ClickException(str(exc)) from exc
    with _vuln_store(vuln_db) as store:
        result = _scan(
            lambda: scan_sbom(store, sbom, load_triage(store), role=role, max_age=_age(max_age_days))
        )
        apply_triage(store, result.findings)
    _findings_out(result, json_out, csv_out)


@vulns.command("devices")
@click.option("--class", "device_class", help="Only devices of this class.")
@JSON_OPTION
@CSV_OPTION
@MAX_AGE_OPTION
@DB_OPTION
@VULN_DB_OPTION
def vulns_devices(
    device_class: str | None,
    json_out: Path | None,
    csv_out: Path | None,
    max_age_days: int,
    db: Path | None,
    vuln_db: Path | None,
) -> None:
    """Findings for the inventory's devices (vendor/model/firmware from identification)."""
    from medsentry.store import open_store
    from medsentry.store.base import DeviceFilter
    from medsentry.vulns.scan import scan_devices
    from medsentry.vulns.triage import apply_triage, load_triage

    with open_store(db) as inventory:
        found = inventory.list_devices(DeviceFilter(device_class=device_class))
    with _vuln_store(vuln_db) as store:
        result = _scan(lambda: scan_devices(store, found, load_triage(store), max_age=_age(max_age_days)))
        apply_triage(store, result.findings)
    _findings_out(result, json_out, csv_out)


@vulns.group("triage", invoke_without_command=True)
@JSON_OPTION
@VULN_DB_OPTION
@click.pass_context
def vulns_triage(ctx: click.Context, json_out: Path | None, vuln_db: Path | None) -> None:
    """Triage decisions (VEX): list the current ones, or `import`, `export`, `set`, `drafts`, `accept`."""
    ctx.obj = vuln_db
    if ctx.invoked_subcommand is not None:
        return
    from medsentry.report import vulns as vulns_report

    with _triage_store(vuln_db) as triage:
        decisions = triage.current()
    if json_out is not None:
        _write(json_out, json.dumps({"decisions": [d.to_json() for d in decisions]}, indent=2, default=str))
    else:
        Console().print(vulns_report.decisions_table(decisions))


@vulns_triage.command("import")
@click.argument("vex_path", metavar="VEX", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--author", default="", help="Who stands behind these decisions.")
@click.pass_obj
def vulns_triage_import(vuln_db: Path | None, vex_path: Path, author: str) -> None:
    """Import a CycloneDX VEX, OpenVEX or CSAF VEX document as decisions (nothing is written if it is bad)."""
    from medsentry.vulns.vex import VexError

    with _triage_store(vuln_db) as triage:
        try:
            result = triage.import_vex(vex_path, author)
        except VexError as exc:
            raise click.ClickException(str(exc)) from exc
    err.print(
        f"{vex_path}: {result.recorded} decisions recorded, {result.unchanged} unchanged, "
        f"{len(result.problems)} skipped",
        highlight=False,
        markup=False,
    )
    for problem in result.problems:
        err.print(f"  skipped: {problem}", highlight=False, markup=False)


@vulns_triage.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["cyclonedx", "openvex", "csaf"]),
    default="cyclonedx",
    show_default=True,
)
@click.option(
    "--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=Path("-"), help="File."
)
@click.pass_obj
def vulns_triage_export(vuln_db: Path | None, fmt: str, out: Path) -> None:
    """The current decisions as a VEX document."""
    with _triage_store(vuln_db) as triage:
        _write(out, triage.export_vex(fmt))


@vulns_triage.command("set")
@click.argument("subject")
@click.argument("vulnerability")
@click.argument("status", type=click.Choice(["affected", "not_affected", "fixed", "under_investigation"]))
@click.option(
    "--justification", default="", help="For not_affected, e.g. vulnerable_code_not_in_execute_path."
)
@click.option("--impact", "impact_statement", default="", help="Why it does not affect the subject.")
@click.option("--action", "action_statement", default="", help="What to do (for affected).")
@click.option("--version", default="", help="Only this version or vers: range of the subject.")
@click.option("--author", default="", help="Who decided.")
@click.pass_obj
def vulns_triage_set(
    vuln_db: Path | None,
    subject: str,
    vulnerability: str,
    status: str,
    justification: str,
    impact_statement: str,
    action_statement: str,
    version: str,
    author: str,
) -> None:
    """Record a decision for SUBJECT (bom-ref, purl, CPE, device MAC/IP) and VULNERABILITY."""
    from datetime import UTC, datetime

    from medsentry.vulns.vex import VexStatement

    statement = VexStatement(
        vulnerability,
        subject,
        status,
        version=version,
        justification=justification,
        impact_statement=impact_statement,
        action_statement=action_statement,
        timestamp=datetime.now(UTC),
        author=author,
    )
    with _triage_store(vuln_db) as triage:
        triage.record(statement)
    err.print(f"{subject} {vulnerability}: {status}", highlight=False, markup=False)


@vulns_triage.command("drafts")
@click.pass_obj
def vulns_triage_drafts(vuln_db: Path | None) -> None:
    """Network-aware not_affected proposals from the last device scans (proposals, not decisions)."""
    from medsentry.report import vulns as vulns_report

    with _triage_store(vuln_db) as triage:
        Console().print(vulns_report.drafts_table(triage.drafts()))


@vulns_triage.command("accept")
@click.argument("subject")
@click.argument("vulnerability")
@click.option("--author", default="", help="Who accepts the draft.")
@click.pass_obj
def vulns_triage_accept(vuln_db: Path | None, subject: str, vulnerability: str, author: str) -> None:
    """Turn a draft into a decision."""
    with _triage_store(vuln_db) as triage:
        try:
            decision = triage.accept_draft(subject, vulnerability, author)
        except (KeyError, LookupError) as exc:
            raise click.ClickException(f"no draft for {subject} {vulnerability}") from exc
    err.print(f"{subject} {vulnerability}: {decision.statement.status}", highlight=False, markup=False)


@main.command()
@click.option("--sbom", "sboms", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--devices", "with_devices", is_flag=True, help="Also the inventory's devices.")
@click.option("--scope", default="default", show_default=True, help="Name of this watch list (own history).")
@JSON_OPTION
@CSV_OPTION
@MAX_AGE_OPTION
@DB_OPTION
@VULN_DB_OPTION
def monitor(
    sboms: tuple[Path, ...],
    with_devices: bool,
    scope: str,
    json_out: Path | None,
    csv_out: Path | None,
    max_age_days: int,
    db: Path | None,
    vuln_db: Path | None,
) -> None:
    """Re-match products (SBOMs) and devices and report what is new since the last run: new CVEs, new KEV
    entries, EPSS jumps, re-opened triage. Run it after every `feeds sync`."""
    from medsentry.report import vulns as vulns_report
    from medsentry.store import open_store
    from medsentry.vulns.monitor import monitor as run_monitor
    from medsentry.vulns.sbom import SbomError, read_sbom

    if not sboms and not with_devices:
        raise click.UsageError("give --sbom FILE (repeatable) and/or --devices")
    try:
        products = [read_sbom(p) for p in sboms]
    except SbomError as exc:
        raise click.ClickException(str(exc)) from exc
    devices = []
    if with_devices:
        with open_store(db) as inventory:
            devices = inventory.list_devices()
    with _vuln_store(vuln_db) as store:
        result = _scan(lambda: run_monitor(store, products, devices, scope=scope, max_age=_age(max_age_days)))
    if json_out is not None:
        _write(json_out, json.dumps(result.to_json(), indent=2, default=str))
    if csv_out is not None:
        _write(csv_out, vulns_report.monitor_csv(result))
    if json_out != Path("-") and csv_out != Path("-"):
        Console().print(vulns_report.monitor_table(result))


def _triage_store(path: Path | None):  # -> TriageStore on the vulnerability database
    from medsentry.vulns.store import default_vulndb_path
    from medsentry.vulns.triage import TriageStore

    return TriageStore(path if path is not None else default_vulndb_path())


def _vuln_store(path: Path | None):  # -> VulnStore
    from medsentry.vulns.store import open_vulndb

    return open_vulndb(path)


def _age(days: int):  # -> timedelta | None
    from datetime import timedelta

    return None if days == 0 else timedelta(days=days)


def _scan(run):  # -> ScanResult; feed problems are the user's to fix, not a crash
    from medsentry.vulns.store import FeedsError

    try:
        return run()
    except FeedsError as exc:
        raise click.ClickException(str(exc)) from exc


def _findings_out(result, json_out: Path | None, csv_out: Path | None) -> None:
    from medsentry.report import vulns as vulns_report

    if json_out is not None:
        _write(json_out, json.dumps(result.to_json(), indent=2, default=str))
    if csv_out is not None:
        _write(csv_out, vulns_report.findings_csv(result.findings))
    if json_out != Path("-") and csv_out != Path("-"):
        Console().print(vulns_report.findings_table(result.findings))


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


@main.group()
def feeds() -> None:
    """Vulnerability feeds: NVD, CVE 5, CISA KEV, EPSS, CSAF advisories, OSV — online or offline."""


@feeds.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(["nvd", "cve5", "kev", "epss", "csaf", "osv"]),
    help="Feed of every file given (detected from the content otherwise).",
)
@JSON_OPTION
@VULN_DB_OPTION
def feeds_import(
    paths: tuple[Path, ...], kind: str | None, json_out: Path | None, vuln_db: Path | None
) -> None:
    """Import feed files or mirrors (air-gapped sites): files, directories, .gz, OSV .zip archives.

    Each import is one transaction: an interrupted import leaves the previous data as it was."""
    from medsentry import report
    from medsentry.vulns.feeds import import_path
    from medsentry.vulns.store import open_vulndb

    summaries = []
    with open_vulndb(vuln_db) as store:
        for path in paths:
            summary = import_path(store, path, kind)
            summaries.append(summary)
            err.print(
                f"{path}: {summary.written:,} records written, "
                f"{sum(summary.counts.unchanged.values()):,} unchanged, {summary.problems.count:,} skipped "
                f"({summary.seconds:.1f} s)",
                highlight=False,
                markup=False,
            )
            for e in summary.problems.errors:
                err.print(f"  skipped: {e}", highlight=False, markup=False)
        status = store.feed_status()
    if json_out is not None:
        _write(json_out, json.dumps({"imports": [s.to_json() for s in summaries]}, indent=2))
    else:
        Console().print(report.feed_table(status))


@feeds.command("status")
@JSON_OPTION
@VULN_DB_OPTION
def feeds_status(json_out: Path | None, vuln_db: Path | None) -> None:
    """Record counts, last update and age of every feed."""
    from medsentry import report
    from medsentry.vulns.store import open_vulndb

    with open_vulndb(vuln_db) as store:
        status = store.feed_status()
        size = store.size_bytes()
    if json_out is not None:
        document = {"feeds": {f: s.to_json() for f, s in status.items()}, "size_bytes": size}
        _write(json_out, json.dumps(document, indent=2))
    else:
        Console().print(report.feed_table(status))
        err.print(f"store size {size / 1e6:.1f} MB")


@feeds.command("sync")
@click.option("--nvd-api-key", envvar="NVD_API_KEY", help="NVD API key (env NVD_API_KEY): 50 requests/30 s.")
@click.option("--no-nvd", is_flag=True, help="Skip NVD (e.g. when you mirror it otherwise).")
@click.option("--osv", "osv_ecosystems", multiple=True, help="OSV ecosystem archive to fetch (repeatable).")
@click.option("--csaf-provider", "csaf_providers", multiple=True, help="URL of a provider-metadata.json.")
@JSON_OPTION
@VULN_DB_OPTION
def feeds_sync(
    nvd_api_key: str | None,
    no_nvd: bool,
    osv_ecosystems: tuple[str, ...],
    csaf_providers: tuple[str, ...],
    json_out: Path | None,
    vuln_db: Path | None,
) -> None:
    """Fetch what changed since the last sync (NVD incrementally by lastModified, resumable), KEV and EPSS.
    A source that fails is reported and does not stop the others."""
    from medsentry import report
    from medsentry.vulns.feeds import SyncSources, sync
    from medsentry.vulns.store import open_vulndb

    sources = SyncSources(
        nvd=not no_nvd,
        nvd_api_key=nvd_api_key,
        osv_ecosystems=osv_ecosystems,
        csaf_providers=csaf_providers,
    )
    with open_vulndb(vuln_db) as store:
        summary = sync(store, sources)
    if json_out is not None:
        _write(json_out, json.dumps(summary.to_json(), indent=2, default=str))
    else:
        Console().print(report.feed_table(summary.status))
    for source, message in summary.errors.items():
        err.print(f"error: {source}: {message}", highlight=False, markup=False)
    if summary.errors:
        sys.exit(EXIT_INPUT_ERRORS)


def _write(path: Path, text: str) -> None:
    if path == Path("-"):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        path.write_text(text if text.endswith("\n") else text + "\n")
