"""`tierctl tui`: the dashboard (textual is imported only when it runs)."""

from __future__ import annotations

import typer

from tierctl.cli.base import app, fail
from tierctl.errors import TierctlError


@app.command("tui")
def tui_command(
    campaign: str = typer.Argument(None, metavar="[CAMPAIGN]",
                                   help="Open this campaign (a directory, or a name under --dir); default: the list."),
    campaigns_dir: str = typer.Option("campaigns", "--dir", help="Where the campaign list looks for campaigns."),
) -> None:
    """The dashboard: edit the schedule, run and cancel iterations, watch them live, look at tier maps."""
    try:
        from tierctl.tui.app import make_app  # textual is imported here only

        dashboard = make_app(campaign, campaigns_dir)
    except TierctlError as e:
        raise fail(e) from None
    dashboard.run()
