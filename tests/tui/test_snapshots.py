"""Pictures of the main screens at fixed terminal sizes, drawn from a campaign with fixed contents.

Update with `pytest tests/tui/test_snapshots.py --snapshot-update`, then look at the SVGs under
__snapshots__/: they must show what a user should see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from tests.tui.conftest import wait_for
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import read_events
from tierctl.tui.app import make_app
from tierctl.tui.screens.campaign import CampaignScreen
from tierctl.tui.screens.campaigns import CampaignsScreen
from tierctl.tui.screens.tier_map import TierMapScreen
from tierctl.tui.widgets.schedule_editor import KEYS, ScheduleEditor

SIZE = (100, 30)


async def campaign_ready(pilot: Pilot) -> None:
    """The campaign screen with its status read and every recorded event applied."""
    screen = pilot.app.screen
    assert isinstance(screen, CampaignScreen)
    recorded = len(read_events(screen.campaign.events(2)))
    await wait_for(pilot, lambda: screen.status is not None and screen.model.events_applied == recorded,
                   what="events")
    await pilot.pause(0.3)


def then(*steps: Callable[[Pilot], Any]) -> Callable[[Pilot], Any]:
    async def run(pilot: Pilot) -> None:
        for step in steps:
            result = step(pilot)
            if result is not None:
                await result
    return run


def test_campaign_list(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    async def ready(pilot: Pilot) -> None:
        screen = pilot.app.screen
        assert isinstance(screen, CampaignsScreen)
        await wait_for(pilot, lambda: len(screen.rows) == 1, what="campaign rows")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=ready)


def test_campaign_schedule_view(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    async def cursor_on_row_3(pilot: Pilot) -> None:
        await campaign_ready(pilot)
        pilot.app.screen.query_one(ScheduleEditor).table.move_cursor(row=2, column=KEYS.index("mid_2_4"))

    assert snap_compare(make_app("demo"), terminal_size=SIZE, run_before=cursor_on_row_3)


def test_campaign_schedule_with_an_inconsistent_edit_marked(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    async def edit(pilot: Pilot) -> None:
        await campaign_ready(pilot)
        screen = pilot.app.screen
        screen.draft.edit(3, "dense", "0.60")
        screen.query_one(ScheduleEditor).redraw()
        screen.query_one(ScheduleEditor).table.move_cursor(row=2, column=KEYS.index("dense"))

    assert snap_compare(make_app("demo"), terminal_size=SIZE, run_before=edit)


def test_cell_prompt_refusing_a_value(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    async def refuse(pilot: Pilot) -> None:
        await campaign_ready(pilot)
        pilot.app.screen.query_one(ScheduleEditor).table.move_cursor(row=3, column=KEYS.index("topk"))
        await pilot.press("enter")
        box = pilot.app.screen.query_one(Input)
        box.cursor_blink = False
        box.value = ""
        await pilot.press(*"1.5", "enter")

    assert snap_compare(make_app("demo"), terminal_size=SIZE, run_before=refuse)


def test_campaign_live_view(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    assert snap_compare(make_app("demo"), terminal_size=SIZE, run_before=campaign_ready, press=["2"])


def test_campaign_results_view(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    assert snap_compare(make_app("demo"), terminal_size=SIZE, run_before=campaign_ready, press=["3"])


def test_campaign_wide_shows_everything_at_once(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    assert snap_compare(make_app("demo"), terminal_size=(180, 45), run_before=campaign_ready)


def test_tier_map_diff_between_iterations(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    async def diff(pilot: Pilot) -> None:
        await campaign_ready(pilot)
        await pilot.press("t")
        assert isinstance(pilot.app.screen, TierMapScreen)
        await pilot.press("down", "down", "down")  # the 4th matrix: layer 0 o
        await pilot.press("d")  # compare iteration 2 with iteration 1

    assert snap_compare(make_app("demo"), terminal_size=SIZE, run_before=diff)


def test_help(demo: CampaignLayout, snap_compare) -> None:  # noqa: ANN001
    assert snap_compare(make_app("demo"), terminal_size=SIZE, run_before=campaign_ready, press=["question_mark"])
