"""`medsentry feeds`, `vulns` and `monitor`: vulnerability feeds, findings, triage and what is new."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from medsentry.cli.common import (
    CSV_OPTION,
    DB_OPTION,
    EXIT_INPUT_ERRORS,
    JSON_OPTION,
    MAX_AGE_OPTION,
    VULN_DB_OPTION,
    err,
    terminal,
    write,
)


@click.group()
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
    """Triage decisions (VEX): list the current ones, or `import`, `export`, `set`, `drafts`, `accept`,
    `reject`."""
    ctx.obj = vuln_db
    if ctx.invoked_subcommand is not None:
        return
    from medsentry.report import vulns as vulns_report

    with _triage_store(vuln_db) as triage:
        decisions = triage.current()
    if json_out is not None:
        write(json_out, json.dumps({"decisions": [d.to_json() for d in decisions]}, indent=2, default=str))
    else:
        out = terminal()
        out.print(vulns_report.decisions_table(decisions, width=out.width))


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
        write(out, triage.export_vex(fmt))


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
        out = terminal()
        out.print(vulns_report.drafts_table(triage.drafts(), width=out.width))


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


@vulns_triage.command("reject")
@click.argument("subject")
@click.argument("vulnerability")
@click.pass_obj
def vulns_triage_reject(vuln_db: Path | None, subject: str, vulnerability: str) -> None:
    """Dismiss a draft: it is not proposed again, and the finding stays as the scan judges it."""
    with _triage_store(vuln_db) as triage:
        try:
            triage.reject_draft(subject, vulnerability)
        except (KeyError, LookupError) as exc:
            raise click.ClickException(f"no draft for {subject} {vulnerability}") from exc
    err.print(f"{subject} {vulnerability}: draft rejected", highlight=False, markup=False)


@click.command()
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
        write(json_out, json.dumps(result.to_json(), indent=2, default=str))
    if csv_out is not None:
        write(csv_out, vulns_report.monitor_csv(result))
    if json_out != Path("-") and csv_out != Path("-"):
        out = terminal()
        out.print(vulns_report.monitor_table(result, width=out.width))


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


TABLE_ROWS = 50  # findings shown in the terminal, highest priority first


def _findings_out(result, json_out: Path | None, csv_out: Path | None) -> None:
    from medsentry.report import vulns as vulns_report

    if json_out is not None:
        write(json_out, json.dumps(result.to_json(), indent=2, default=str))
    if csv_out is not None:
        write(csv_out, vulns_report.findings_csv(result.findings))
    if json_out != Path("-") and csv_out != Path("-"):
        out = terminal()
        out.print(vulns_report.findings_table(result.findings, limit=TABLE_ROWS, width=out.width))


@click.group()
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
        write(json_out, json.dumps({"imports": [s.to_json() for s in summaries]}, indent=2))
    else:
        terminal().print(report.feed_table(status))


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
        write(json_out, json.dumps(document, indent=2))
    else:
        terminal().print(report.feed_table(status))
        err.print(f"store size {size / 1e6:.1f} MB")


@feeds.command("sync")
@click.option("--nvd-api-key", envvar="NVD_API_KEY", help="NVD API key (env NVD_API_KEY): 50 requests/30 s.")
@click.option("--no-nvd", is_flag=True, help="Skip NVD (e.g. when you mirror it otherwise).")
@click.option(
    "--cve5", is_flag=True, help="Also CVE List V5 releases (first run downloads the ~500 MB baseline)."
)
@click.option("--osv", "osv_ecosystems", multiple=True, help="OSV ecosystem archive to fetch (repeatable).")
@click.option("--csaf-provider", "csaf_providers", multiple=True, help="URL of a provider-metadata.json.")
@JSON_OPTION
@VULN_DB_OPTION
def feeds_sync(
    nvd_api_key: str | None,
    no_nvd: bool,
    cve5: bool,
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
        cve5=cve5,
        osv_ecosystems=osv_ecosystems,
        csaf_providers=csaf_providers,
    )
    with open_vulndb(vuln_db) as store:
        summary = sync(store, sources)
    if json_out is not None:
        write(json_out, json.dumps(summary.to_json(), indent=2, default=str))
    else:
        terminal().print(report.feed_table(summary.status))
    for source, message in summary.errors.items():
        err.print(f"error: {source}: {message}", highlight=False, markup=False)
    if summary.errors:
        sys.exit(EXIT_INPUT_ERRORS)
