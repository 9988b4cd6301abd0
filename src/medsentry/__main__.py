"""`python -m medsentry` is the `medsentry` command."""

from medsentry.cli.entry import main

main(prog_name="medsentry")
