"""The `tierctl` command line. Thin: parse flags, call the layers below, print Rich output.

One module per group of commands; importing them registers their commands on `app`, in the order
`tierctl --help` lists them. No torch, transformers, datasets or textual at import time: `tierctl
--help` must answer fast. Errors a user can cause (tierctl.errors) become one line on stderr and exit
code 2 (bad input) or 1 (a step failed); usage errors and OSErrors too (tierctl/cli_shell.py).
"""

from __future__ import annotations

# Importing a module registers its commands; this order is the order `tierctl --help` lists them in.
# isort: off
from tierctl.cli import schedule, campaign, inspect, ship, fork, sweep, tui  # noqa: F401
# isort: on
from tierctl.cli.base import app, fail

__all__ = ["app", "fail", "main"]


def main() -> None:
    app()
