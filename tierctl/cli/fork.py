"""`tierctl fork`: a new campaign sharing a finished one's first iterations."""

from __future__ import annotations

from pathlib import Path

import typer

from tierctl.cli.base import app, fail
from tierctl.errors import TierctlError


@app.command()
def fork(
    source: str = typer.Argument(..., metavar="SOURCE@K", help="The campaign to fork and its last iteration to share."),
    new: str = typer.Argument(..., metavar="NEW", help="Name of the new campaign (a plain directory name)."),
    schedule: Path = typer.Option(None, "--schedule", help="The fork's schedule CSV (rows 1..K must be the "
                                  "source's; default: the source's schedule)."),
    dir: Path = typer.Option(None, "--dir", help="Where NEW is created (default: next to SOURCE)."),
) -> None:
    """A new campaign sharing iterations 1..K of SOURCE (hard links; the source is never written)."""
    from tierctl.campaign.fork import fork_campaign, parse_fork_source
    from tierctl.campaign.layout import resolve_campaign

    try:
        camp, k = parse_fork_source(source)
        result = fork_campaign(resolve_campaign(camp), k, new, dir, schedule)
    except TierctlError as e:
        raise fail(e) from None
    shared = f"{result.links} files linked" + (f", {result.copies} copied" if result.copies else "")
    print(f"created {result.layout.root}: iterations 1..{k} shared with {result.origin.source} ({shared}); "
          f"go on with: tierctl run {result.layout.root} --all")
