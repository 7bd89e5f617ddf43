"""Run controls that refuse, and why: in the dashboard itself, or by the runner it launched."""

from __future__ import annotations

from textual.widgets import Input

from tests.tui.conftest import run_async, wait_for
from tierctl.campaign import jobs
from tierctl.campaign.layout import CampaignLayout
from tierctl.tui.app import make_app
from tierctl.tui.screens.campaign import CampaignScreen
from tierctl.tui.screens.prompt import PromptScreen
from tierctl.tui.widgets.log_tail import LogTail


async def ready(pilot) -> CampaignScreen:  # noqa: ANN001
    screen = pilot.app.screen
    assert isinstance(screen, CampaignScreen)
    await wait_for(pilot, lambda: screen.status is not None, what="status")
    return screen


@run_async
async def test_run_iteration_asks_for_a_number_of_the_schedule(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("i")
        prompt = app.screen
        assert isinstance(prompt, PromptScreen)
        prompt.query_one(Input).value = ""
        await pilot.press("9", "enter")
        assert prompt.refusals == ["the schedule has iterations 1..5"]
        await pilot.press("escape")
        assert isinstance(app.screen, CampaignScreen)
    assert not (demo.logs / jobs.RUN_LOG).exists()  # nothing was launched


@run_async
async def test_a_run_is_not_launched_over_unsaved_schedule_edits(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        await pilot.press("n", "r")
        assert screen.launched is None
        assert not (demo.logs / jobs.RUN_LOG).exists()


@run_async
async def test_an_iteration_the_runner_refuses_shows_the_runners_reason(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        await pilot.press("i")
        app.screen.query_one(Input).value = ""
        await pilot.press("4", "enter")  # iteration 2 is not complete
        # launched, then refused by the runner (it may exit before this line runs)
        await wait_for(pilot, lambda: screen.run_note == "run ended with exit code 2", timeout=60,
                       what="the runner to exit")
        assert screen.launched is None
        lines = [str(line) for line in screen.query_one(LogTail).lines]
        assert any("tierctl: iteration 4 needs iteration 2 complete" in line for line in lines), lines


def test_the_run_panel_says_when_the_running_step_is_orphaned() -> None:
    from rich.console import Console

    from tierctl.core.live_model import LiveModel
    from tierctl.tui.widgets.run_controls import RunState, progress_renderable

    console = Console(width=100, color_system=None, record=True)
    for orphaned, word in ((False, "running pid 42"), (True, "running (orphaned: its runner died) pid 42")):
        console.print(progress_renderable(LiveModel(), RunState(active_pid=42, orphaned=orphaned)))
        assert console.export_text().splitlines()[-1] == word
