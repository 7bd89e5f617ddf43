"""The root `tierctl` command and the one way a command fails (`fail`).

No torch, transformers, datasets or textual at import time: `tierctl --help` must answer fast.
Errors a user can cause (tierctl.errors) become one line on stderr and exit code 2 (bad input)
or 1 (a step failed); usage errors and OSErrors too (tierctl/cli_shell.py, the root command's class).
"""

from __future__ import annotations

import sys

import typer

from tierctl.cli_shell import TierctlGroup, version_callback
from tierctl.errors import TierctlError

app = typer.Typer(
    name="tierctl",
    help="Progressive three-tier (dense / 2:4 / top-k) pruning campaigns for causal LMs.",
    cls=TierctlGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Progressive three-tier (dense / 2:4 / top-k) pruning campaigns for causal LMs."""


def fail(err: TierctlError) -> typer.Exit:
    """Print one line on stderr and return the Exit to raise."""
    msg = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"tierctl: {msg}", file=sys.stderr)
    return typer.Exit(err.exit_code)
