"""`python -m medsentry` is the `medsentry` command."""

from medsentry.cli.main import main

main(prog_name="medsentry")
