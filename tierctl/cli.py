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


def _schedule_and_tiers(file: str, block_size: int | None, k: int | None) -> tuple[object, str, int, int]:
    """(schedule, its path, block size, k) for a schedule file or a campaign directory.

    A campaign directory lends its schedule.csv and the block size and k of its campaign.toml, so the
    projected sparsity is the campaign's; flags override; otherwise SPEC defaults 16 and 10.
    """
    from pathlib import Path as _Path

    from tierctl.core.schedule import load_schedule

    path = _Path(file)
    if path.is_dir() and (path / "schedule.csv").is_file():
        if (path / "campaign.toml").is_file():
            from tierctl.campaign.config import load_config

            tiers = load_config(path / "campaign.toml").tiers
            block_size = tiers.block_size if block_size is None else block_size
            k = tiers.topk_per_block if k is None else k
        path = path / "schedule.csv"
    block_size, k = 16 if block_size is None else block_size, 10 if k is None else k
    schedule = load_schedule(path)
    return schedule, str(path), block_size, k


_BLOCK_OPT = typer.Option(None, "--block-size", "-b", min=1, help="Block size (default: the campaign's, else 16).")
_K_OPT = typer.Option(None, "--topk", "-k", min=0, help="Non-zeros kept per top-k block (default: the campaign's, "
                      "else 10).")


@schedule_app.command("validate")
def schedule_validate(
    file: str = typer.Argument(..., metavar="FILE", help="schedule.csv, or a campaign directory."),
    block_size: int = _BLOCK_OPT,
    k: int = _K_OPT,
) -> None:
    """Check a schedule (SPEC section 4): exit 0 and a summary, or exit 2 and one line naming the cell."""
    from tierctl.core.schedule import project

    try:
        schedule, path, b, kk = _schedule_and_tiers(file, block_size, k)
        final = project(schedule, b, kk)[-1]["sparsity"]
    except TierctlError as e:
        raise fail(e) from None
    print(f"{path}: ok, {len(schedule)} iterations, final sparsity {100 * final:.1f}%")


@schedule_app.command("show")
def schedule_show(
    file: str = typer.Argument(..., metavar="FILE", help="schedule.csv, or a campaign directory."),
    block_size: int = _BLOCK_OPT,
    k: int = _K_OPT,
) -> None:
    """Draw the schedule with its projection: block composition and expected sparsity per iteration."""
    from rich.console import Console

    from tierctl.render_schedule import schedule_table

    try:
        schedule, path, b, kk = _schedule_and_tiers(file, block_size, k)
        table = schedule_table(schedule, b, kk, title=path)  # type: ignore[arg-type]
    except TierctlError as e:
        raise fail(e) from None
    Console(highlight=False).print(table)


# === init / run / status ===

# === diff / show / report ===

# === tui ===


def main() -> None:
    app()
