"""The `tierctl` command line. Thin: parse flags, call the layers below, print Rich output.

No torch, transformers, datasets or textual at import time: `tierctl --help` must answer fast.
Errors a user can cause (tierctl.errors) become one line on stderr and exit code 2 (bad input)
or 1 (a step failed).
"""

from __future__ import annotations

import sys

import typer

from tierctl.errors import TierctlError

app = typer.Typer(
    name="tierctl",
    help="Progressive three-tier (dense / 2:4 / top-k) pruning campaigns for causal LMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
schedule_app = typer.Typer(help="Validate and show schedule CSV files.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


def fail(err: TierctlError) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"tierctl: {msg}", file=sys.stderr)
    return typer.Exit(err.exit_code)


# Commands are registered below, one section each. Keep each command thin.

# === schedule ===

# === init / run / status ===

# === diff / show / report ===

# === tui ===


def main() -> None:
    app()
