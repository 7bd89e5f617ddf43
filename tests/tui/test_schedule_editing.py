"""Editing the schedule in the campaign screen: cells, invalid values, read-only rows, saving."""

from __future__ import annotations

from textual.widgets import Input

from tests.tui.conftest import campaign_screen, run_async, wait_for
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.schedule import load_schedule
from tierctl.tui.app import make_app
from tierctl.tui.screens.campaign import CampaignScreen
from tierctl.tui.screens.campaigns import CampaignsScreen
from tierctl.tui.screens.choice import ChoiceScreen
from tierctl.tui.screens.prompt import PromptScreen
from tierctl.tui.widgets.schedule_editor import KEYS, ScheduleEditor


def cell(app, iteration: int, column: str) -> str:  # noqa: ANN001
    table = app.screen.query_one(ScheduleEditor).table
    return table.get_cell_at((iteration - 1, KEYS.index(column))).plain


async def put_cursor(pilot, iteration: int, column: str) -> None:  # noqa: ANN001
    editor = pilot.app.screen.query_one(ScheduleEditor)
    editor.table.focus()
    editor.table.move_cursor(row=iteration - 1, column=KEYS.index(column), animate=False)
    await pilot.pause()


async def type_into_prompt(pilot, text: str) -> PromptScreen:  # noqa: ANN001
    prompt = pilot.app.screen
    assert isinstance(prompt, PromptScreen)
    prompt.query_one(Input).value = ""
    await pilot.press(*text, "enter")
    return prompt


@run_async
async def test_editing_a_cell_through_its_prompt_changes_the_row_and_the_projected_sparsity(
        demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot, draft=True)
        assert cell(app, 3, "sparsity") == "24.4%"
        await put_cursor(pilot, 3, "mid_2_4")
        await pilot.press("enter")
        await type_into_prompt(pilot, "0.25")
        assert isinstance(app.screen, CampaignScreen)
        assert screen.draft.rows[2].mid_2_4 == 0.25
        assert cell(app, 3, "mid_2_4") == "0.25"
        assert cell(app, 3, "sparsity") == "26.9%"  # 0.25 * 1/2 + 0.15 * (1 - 10/256)
        # 0.65 + 0.25 + 0.15 = 1.05 and the transitions no longer match: marked, not refused
        assert screen.draft.errors_at(3, "dense") == ["dense + mid_2_4 + topk = 1.05, expected 1 (within 0.001)"]
        assert screen.draft.dirty


@run_async
async def test_a_value_that_cannot_stand_in_its_cell_is_refused_with_the_reason_and_nothing_changes(
        demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot, draft=True)
        await put_cursor(pilot, 4, "topk")
        await pilot.press("enter")
        prompt = await type_into_prompt(pilot, "1.5")
        assert app.screen is prompt  # still open, the typed text kept for fixing
        assert prompt.refusals == ["topk: '1.5' must be a fraction in [0, 1]"]
        assert "refused: topk: '1.5' must be a fraction in [0, 1]" in str(prompt.query_one("#prompt-error").render())
        prompt.query_one(Input).value = ""
        await pilot.press(*"lots", "enter")
        assert prompt.refusals[-1] == "topk: 'lots' is not a number"
        await pilot.press("escape")
        assert isinstance(app.screen, CampaignScreen)
        assert screen.draft.rows[3].topk == 0.2
        assert not screen.draft.dirty


@run_async
async def test_rows_of_iterations_that_ran_are_read_only_and_the_screen_says_why(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot, draft=True)
        await put_cursor(pilot, 1, "dense")
        message = str(screen.query_one("#schedule-message").render())
        assert "read-only" in message and "iteration 1 already ran (prune done, finetune done, eval done)" in message
        await pilot.press("enter")
        assert isinstance(app.screen, CampaignScreen)  # no prompt opened
        assert screen.draft.rows[0].dense == 0.9
        # iteration 2 was pruned but its fine-tune never finished: only its epochs may still change
        await put_cursor(pilot, 2, "dense")
        await pilot.press("enter")
        assert isinstance(app.screen, CampaignScreen)
        await put_cursor(pilot, 2, "epochs")
        await pilot.press("enter")
        await type_into_prompt(pilot, "3")
        assert screen.draft.rows[1].epochs == 3
        await put_cursor(pilot, 1, "dense")
        await pilot.press("x")  # remove: refused too
        assert len(screen.draft.rows) == 5


@run_async
async def test_save_writes_schedule_csv_once_every_cell_is_valid(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    before = demo.schedule.read_text()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot, draft=True)
        # iteration 3 ends at 0.60 dense / 0.25 2:4 instead of 0.65 / 0.20
        await put_cursor(pilot, 3, "dense")
        await pilot.press("enter")
        await type_into_prompt(pilot, "0.60")
        await put_cursor(pilot, 3, "mid_2_4")
        await pilot.press("enter")
        await type_into_prompt(pilot, "0.25")
        await pilot.press("ctrl+s")  # transitions of rows 3 and 4 no longer match: refused
        assert demo.schedule.read_text() == before
        assert screen.draft.errors_at(4, "dense_to_2_4") == [
            "dense_to_2_4 is 0.15 but dense goes 0.6 -> 0.5 (moves 0.1)"]
        await pilot.press("f")  # fill in the transition columns from the cumulative ones
        assert screen.draft.valid
        await pilot.press("ctrl+s")
        assert not screen.draft.dirty
    assert demo.schedule.read_text() == (
        "iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs\n"
        "1,0.90,0.10,0.00,0.10,0.00,2\n"
        "2,0.80,0.10,0.10,0.10,0.10,2\n"
        "3,0.60,0.25,0.15,0.20,0.05,2\n"
        "4,0.50,0.30,0.20,0.10,0.05,2\n"
        "5,0.35,0.45,0.20,0.15,0.00,3\n"
    )
    assert [r.dense for r in load_schedule(demo.schedule)] == [0.9, 0.8, 0.6, 0.5, 0.35]


@run_async
async def test_adding_and_removing_an_iteration_row(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot, draft=True)
        await put_cursor(pilot, 5, "dense")
        await pilot.press("n")
        assert [r.iteration for r in screen.draft.rows] == [1, 2, 3, 4, 5, 6]
        assert screen.draft.valid  # a new row moves nothing, which is a valid row
        assert cell(app, 6, "sparsity") == "41.7%"
        await put_cursor(pilot, 6, "topk")
        await pilot.press("enter")
        await type_into_prompt(pilot, "0.30")
        await put_cursor(pilot, 6, "mid_2_4")
        await pilot.press("enter")
        await type_into_prompt(pilot, "0.35")
        await pilot.press("f")
        assert screen.draft.valid
        assert cell(app, 6, "sparsity") == "46.3%"
        await put_cursor(pilot, 4, "dense")
        await pilot.press("x", "y")  # remove, confirmed
        assert [r.iteration for r in screen.draft.rows] == [1, 2, 3, 4, 5]
        assert screen.draft.rows[3].dense == 0.35  # the old iteration 5, renumbered
        assert not screen.draft.valid  # its transitions now start from iteration 3: marked


@run_async
async def test_quitting_with_unsaved_edits_asks_and_save_writes_them_before_quitting(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot, draft=True)
        await put_cursor(pilot, 5, "epochs")
        await pilot.press("enter")
        await type_into_prompt(pilot, "4")
        await pilot.press("q")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("escape")  # stay
        assert app.screen is screen and screen.draft.dirty
        await pilot.press("q", "s")
        await wait_for(pilot, lambda: not app.is_running, what="the app to quit")
    assert load_schedule(demo.schedule).row(5).epochs == 4


@run_async
async def test_leaving_a_campaign_with_unsaved_edits_can_discard_them(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    before = demo.schedule.read_text()
    async with app.run_test(size=(100, 30)) as pilot:
        await campaign_screen(pilot, draft=True)
        await pilot.press("n")  # add an iteration, unsaved
        await pilot.press("escape")
        assert isinstance(app.screen, ChoiceScreen)
        await pilot.press("d")
        assert isinstance(app.screen, CampaignsScreen)
    assert demo.schedule.read_text() == before


@run_async
async def test_x_asks_before_removing_the_selected_iteration_naming_it(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await campaign_screen(pilot, draft=True)
        await put_cursor(pilot, 4, "dense")
        await pilot.press("x")
        assert isinstance(app.screen, ChoiceScreen)
        assert app.screen.title_text == "remove iteration 4?"
        assert len(screen.draft.rows) == 5  # nothing removed while asking
        await pilot.press("escape")  # keep it
        assert app.screen is screen
        assert [r.dense for r in screen.draft.rows] == [0.9, 0.8, 0.65, 0.5, 0.35]
        await pilot.press("x", "y")
        assert app.screen is screen
        assert [r.dense for r in screen.draft.rows] == [0.9, 0.8, 0.65, 0.35]
