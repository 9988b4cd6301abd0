"""What every `medsentry` command shares: options, the error console, writing to a file or stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console


def terminal() -> Console:
    """rich's console on stdout, for tables. rich is imported on first use: ~30 ms of every command's
    start, and `analyze -q --json` shows nothing."""
    from rich.console import Console

    return Console()


class _Errors:
    """The error console (rich, on stderr), made on first use like `terminal()`."""

    _console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # Messages, not tables: a long path in an error must stay one piece (the terminal wraps it).
            self._console = Console(stderr=True, soft_wrap=True)
        return self._console

    def print(self, *objects: Any, **options: Any) -> None:
        self.console.print(*objects, **options)


err = _Errors()
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


MAX_AGE_OPTION = click.option(
    "--max-age",
    "max_age_days",
    type=click.IntRange(0),
    default=7,
    show_default=True,
    help="Refuse feeds older than this many days (0: accept any age, e.g. an archived snapshot).",
)


def write(path: Path, text: str) -> None:
    if path == Path("-"):
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        path.write_text(text if text.endswith("\n") else text + "\n")


def accepted_path(db: Path | None) -> Path:
    """`medsentry alerts accept` entries live beside the inventory database they were decided on."""
    from medsentry.store.sqlite import default_db_path

    return (db or default_db_path()).with_name("accepted.yaml")
