"""`medsentry alerts`: stored alerts with their state, and their export to files, syslog and webhooks."""

from __future__ import annotations

from pathlib import Path

import click

from medsentry.cli.common import DB_OPTION, JSON_OPTION, accepted_path, err, terminal, write


@click.group(invoke_without_command=True)
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
        write(Path("-"), report.render_alerts(rows, fmt))
    if syslog_to is not None:
        host, _, port = syslog_to.partition(":")
        sent = output.send_syslog(report.alert_dicts(rows), host, int(port or 514))
        err.print(f"sent {sent} alerts to syslog {host}:{port or 514}")
    if webhook is not None:
        sent = output.post_webhook(report.alert_dicts(rows), webhook)
        err.print(f"posted {sent} alerts to {webhook}", highlight=False, markup=False)
    if json_out is None and fmt is None and syslog_to is None and webhook is None:
        out = terminal()
        out.print(report.fitting_alert_table(rows, out.width))


@alerts.command("show")
@click.argument("alert_id")
@click.pass_obj
def alerts_show(db: Path | None, alert_id: str) -> None:
    """One alert: explanation, evidence, victims and its state history (an id prefix is enough)."""
    from medsentry import report

    terminal().print(report.alert_detail(_stored_alert(db, alert_id)))


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


@alerts.command("accept")
@click.argument("alert_id")
@click.option("--note", help="Why this is normal: kept in the alert's history.")
@click.pass_obj
def alerts_accept(db: Path | None, alert_id: str, note: str | None) -> None:
    """Accept what an alert saw as normal from now on: later runs do not raise it again (the entry goes to
    accepted.yaml beside the inventory), and the alert is closed."""
    from medsentry.detect import accept_entry
    from medsentry.detect.config import add_accepted

    stored = _stored_alert(db, alert_id)
    entry = accept_entry(stored.alert.to_dict())
    path = accepted_path(db)
    added = add_accepted(path, entry)  # first: a bad accepted.yaml must not leave the alert closed
    _set_state(db, stored.alert.id, "closed", note or "accepted as normal")
    err.print(
        f"{'accepted' if added else 'already accepted'}: {entry} ({path})", highlight=False, markup=False
    )


def _stored_alert(db: Path | None, alert_id: str):  # -> StoredAlert
    from medsentry.store import open_store

    with open_store(db) as store:
        return _find(store, alert_id)


def _set_state(db: Path | None, alert_id: str, state: str, note: str | None):  # -> StoredAlert
    """Resolve an id (or prefix) and change its state over one connection."""
    from medsentry.store import open_store

    with open_store(db) as store:
        found = _find(store, alert_id)
        store.set_alert_state(found.alert.id, state, note)
    err.print(f"alert {found.alert.id} {state}", highlight=False, markup=False)
    return found


def _find(store, alert_id: str):  # -> StoredAlert, or a ClickException naming what went wrong
    from medsentry.store.base import StoreError

    try:
        found = store.get_alert(alert_id)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if found is None:
        raise click.ClickException(f"no alert {alert_id!r}")
    return found
