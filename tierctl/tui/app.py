"""The dashboard app, and `make_app`, the one factory the CLI (`tierctl tui`) and the tests share.

The app owns navigation: a screen asks it to open a campaign, the tier maps or the list, and never
imports another screen.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding

from tierctl.campaign import jobs
from tierctl.campaign.cancel import cancel
from tierctl.campaign.layout import CAMPAIGNS_DIR, CampaignLayout, resolve_campaign
from tierctl.tui.screens.campaign import CampaignScreen
from tierctl.tui.screens.campaigns import CampaignsScreen
from tierctl.tui.screens.choice import ChoiceScreen, quit_choices, unsaved_choices
from tierctl.tui.screens.help import HelpScreen
from tierctl.tui.screens.tier_map import TierMapScreen


class TierctlApp(App[None]):
    """Opens on the campaign list, or on one campaign (with the list underneath, one Escape away)."""

    CSS_PATH = "app.tcss"
    TITLE = "tierctl"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit_asking", "Quit"),
        Binding("ctrl+c,ctrl+q", "quit_asking", "Quit", show=False, priority=True),
    ]

    def __init__(self, campaign: CampaignLayout | None = None, campaigns_dir: Path = CAMPAIGNS_DIR,
                 poll_interval: float = 0.2) -> None:
        super().__init__()
        self.campaign = campaign
        self.campaigns_dir = Path(campaigns_dir)
        self.poll_interval = poll_interval

    def on_mount(self) -> None:
        self.push_screen(CampaignsScreen(self.campaigns_dir))
        if self.campaign is not None:
            self.open_campaign(self.campaign)

    # ---- navigation: the one place that knows the screens ----

    def open_campaign(self, layout: CampaignLayout) -> None:
        """One campaign, over the list (Escape comes back to it)."""
        self.push_screen(CampaignScreen(layout, poll_interval=self.poll_interval))

    def open_tier_maps(self, layout: CampaignLayout) -> None:
        self.push_screen(TierMapScreen(layout))

    def show_campaigns(self) -> None:
        """Back to the list: the one underneath, or a fresh one when the campaign screen is alone."""
        if len(self.screen_stack) > 2:
            self.pop_screen()
        else:
            self.switch_screen(CampaignsScreen(self.campaigns_dir))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def active_runs(self) -> list[tuple[CampaignLayout, int]]:
        """(campaign, pid) of the runs active in the campaigns this dashboard has open."""
        out = []
        seen = set()
        for screen in self.screen_stack:
            if isinstance(screen, CampaignScreen) and screen.campaign.root.resolve() not in seen:
                seen.add(screen.campaign.root.resolve())
                pid = jobs.active_pid(screen.campaign)
                if pid is not None:
                    out.append((screen.campaign, pid))
        return out

    def action_quit_asking(self) -> None:
        """Quit; with unsaved schedule edits or a run active, ask first."""
        if isinstance(self.screen, ChoiceScreen):
            return
        dirty = [s for s in self.screen_stack if isinstance(s, CampaignScreen) and s.draft is not None
                 and s.draft.dirty]
        if not dirty:
            self._quit_asking_about_runs()
            return

        def answer(value: str | None) -> None:
            if value == "save" and all(s.save_draft() for s in dirty):
                self._quit_asking_about_runs()
            elif value == "discard":
                self._quit_asking_about_runs()

        self.push_screen(ChoiceScreen(
            "unsaved schedule edits",
            f"The schedule of {', '.join(s.campaign.name for s in dirty)} has edits that are not in schedule.csv.",
            unsaved_choices(), escape_value="stay"), answer)

    def _quit_asking_about_runs(self) -> None:
        """Quit; with a run active, ask whether to keep it running, cancel it, or stay."""
        runs = self.active_runs()
        if not runs:
            self.exit()
            return
        names = ", ".join(f"{layout.name} (pid {pid})" for layout, pid in runs)

        def answer(value: str | None) -> None:
            if value == "keep":
                self.exit()
            elif value == "cancel":
                for layout, _ in runs:
                    try:
                        cancel(layout)
                    except Exception as e:  # noqa: BLE001  (report, still quit as asked)
                        self.log.warning(f"cancel {layout.name}: {e}")
                self.exit()

        self.push_screen(ChoiceScreen(
            "a run is active",
            f"{names} is running. It runs on its own and keeps going after the dashboard quits; "
            "open the dashboard again to follow it.",
            quit_choices(), escape_value="stay"), answer)


def make_app(campaign: str | Path | None = None, campaigns_dir: str | Path = CAMPAIGNS_DIR,
             poll_interval: float = 0.2) -> TierctlApp:
    """The dashboard for CAMPAIGN (a directory, or a name under `campaigns_dir`), or for the list.

    Raises BadInput for a campaign that does not exist, before anything is drawn.
    """
    layout = resolve_campaign(campaign, Path(campaigns_dir)) if campaign is not None else None
    return TierctlApp(layout, Path(campaigns_dir), poll_interval)
