"""Getting around: the campaign list, views by key and by mouse, tier maps, the CLI entry point."""

from __future__ import annotations

from textual.widgets import Static, Tabs
from typer.testing import CliRunner

from tests.tui.conftest import campaign_screen, run_async, wait_for
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.lock import CampaignLock
from tierctl.cli import app as cli
from tierctl.render import TierMapDiffGrid
from tierctl.tui.app import make_app
from tierctl.tui.screens.campaign import CampaignScreen
from tierctl.tui.screens.campaigns import CampaignsScreen
from tierctl.tui.screens.prompt import PromptScreen
from tierctl.tui.screens.tier_map import TierMapScreen


@run_async
async def test_the_list_shows_each_campaign_and_enter_opens_it_and_escape_returns(demo: CampaignLayout) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, CampaignsScreen)
        await wait_for(pilot, lambda: len(screen.rows) == 1, what="rows")
        row = screen.rows[0]
        assert (row.name, row.model, row.done, row.total, row.state, row.ppl) == (
            "demo", "tiny-llama", 1, 5, "interrupted", 41.5)
        await pilot.press("enter")
        assert isinstance(app.screen, CampaignScreen)
        await pilot.press("escape")
        assert app.screen is screen


@run_async
async def test_the_mouse_switches_views_and_a_second_click_on_a_cell_edits_it(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot)
        await pilot.click("#tab-results")
        assert screen.has_class("view-results") and not screen.has_class("view-schedule")
        await pilot.click("#tab-schedule")
        assert screen.has_class("view-schedule")
        await pilot.click("#schedule-table", offset=(10, 3))  # line 3 = iteration 3 (line 0 is the header)
        await pilot.click("#schedule-table", offset=(10, 3))
        assert isinstance(app.screen, PromptScreen)
        assert app.screen.title_text == "iteration 3 · dense"


@run_async
async def test_tier_maps_step_through_iterations_and_compare_with_the_previous(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("t")
        tm = app.screen
        assert isinstance(tm, TierMapScreen)
        assert (tm.iterations, tm.iteration, tm.matrix) == ([1, 2], 2, "model.layers.0.self_attn.q_proj")
        await pilot.press("left_square_bracket")
        assert tm.iteration == 1
        await pilot.press("right_square_bracket", "d")
        assert (tm.iteration, tm.compare) == (2, 1)
        grid = tm.query_one("#tm-grid", Static).content
        assert isinstance(grid, TierMapDiffGrid)
        assert grid.title == "iteration 1 → 2  model.layers.0.self_attn.q_proj"
        await pilot.press("escape")
        assert isinstance(app.screen, CampaignScreen)


def test_tui_of_a_missing_campaign_exits_2_naming_it(demo: CampaignLayout) -> None:
    result = CliRunner().invoke(cli, ["tui", "nosuch"])
    assert result.exit_code == 2
    assert "nosuch: no such campaign" in result.output


@run_async
async def test_focus_follows_the_visible_view_and_x_never_removes_a_hidden_row(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot)
        table = screen.editor.table
        await pilot.press("2")
        await pilot.pause()
        assert not table.has_focus
        await pilot.press("x")  # the schedule is hidden: nothing is removed
        assert len(screen.draft.rows) == 5
        await pilot.press("1")
        await pilot.pause()
        assert table.has_focus
        row = table.cursor_coordinate.row
        await pilot.press("down")
        assert table.cursor_coordinate.row == row + 1


@run_async
async def test_a_campaign_held_by_a_runner_opens_on_the_live_view(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    with CampaignLock(demo.lock):  # this process is the runner, as `tierctl run` would be
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await campaign_screen(pilot)
            await pilot.pause()
            assert screen.has_class("view-live") and not screen.has_class("view-schedule")
            assert screen.query_one(Tabs).active == "tab-live"
            assert not screen.editor.table.has_focus


@run_async
async def test_a_campaign_nobody_runs_opens_on_the_schedule(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot)
        await pilot.pause()
        assert screen.has_class("view-schedule") and screen.query_one(Tabs).active == "tab-schedule"
        assert screen.editor.table.has_focus
