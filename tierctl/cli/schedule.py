"""`tierctl schedule validate|show`: a schedule CSV checked and shown with its projected sparsity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tierctl.cli.base import app, fail
from tierctl.errors import TierctlError

if TYPE_CHECKING:
    from tierctl.core.schedule import Schedule


schedule_app = typer.Typer(help="Validate and show schedule CSV files.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")


def _schedule_and_tiers(file: str, block_size: int | None, k: int | None) -> tuple[Schedule, str, int, int]:
    """(schedule, its path, block size, k) for a schedule file or a campaign directory.

    A campaign directory lends its schedule.csv and the block size and k of its campaign.toml, so the
    projected sparsity is the campaign's; flags override; otherwise the defaults 16 and 10.
    """

    from tierctl.core.schedule import load_schedule

    path = Path(file)
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


_BLOCK_OPT = typer.Option(None, "--block-size", "-b", min=4, max=4096,
                          help="Block size (default: the campaign's, else 16).")
_K_OPT = typer.Option(None, "--topk", "-k", min=0, help="Non-zeros kept per top-k block (default: the campaign's, "
                      "else 10).")


@schedule_app.command("validate")
def schedule_validate(
    file: str = typer.Argument(..., metavar="FILE", help="schedule.csv, or a campaign directory."),
    block_size: int = _BLOCK_OPT,
    k: int = _K_OPT,
) -> None:
    """Check a schedule (docs/tiers.md, The schedule): exit 0 and a summary, or exit 2 and one line naming the cell."""
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

    from tierctl.render.schedule import schedule_table

    try:
        schedule, path, b, kk = _schedule_and_tiers(file, block_size, k)
        table = schedule_table(schedule, b, kk, title=path)
    except TierctlError as e:
        raise fail(e) from None
    Console(highlight=False).print(table)
