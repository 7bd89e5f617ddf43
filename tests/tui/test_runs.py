"""Launching, following, leaving and cancelling real runs of the shipped tiny-smoke campaign.

The run is a detached `tierctl run` process (tiny-llama: an iteration takes seconds), followed
through its events.jsonl and the campaign lock, exactly as a user's dashboard would.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tui.conftest import run_async, wait_for
from tierctl.campaign import jobs
from tierctl.campaign.cancel import cancel
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.state import campaign_status
from tierctl.tui.app import make_app
from tierctl.tui.screens.campaign import CampaignScreen
from tierctl.tui.screens.choice import ChoiceScreen

SHIPPED = Path(__file__).resolve().parents[2] / "campaigns" / "tiny-smoke"

pytestmark = pytest.mark.slow


@pytest.fixture
def smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CampaignLayout:
    """A fresh copy of campaigns/tiny-smoke (its config and schedule only) under ./campaigns."""
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "campaigns" / "tiny-smoke"
    dest.mkdir(parents=True)
    for name in ("campaign.toml", "schedule.csv"):
        shutil.copy(SHIPPED / name, dest / name)
    return CampaignLayout(Path("campaigns") / "tiny-smoke")


def stop_leftover(layout: CampaignLayout) -> None:
    """Never leave a run behind a failed test."""
    if jobs.active_pid(layout) is not None:
        cancel(layout, wait=True)


async def campaign_screen(pilot) -> CampaignScreen:  # noqa: ANN001
    screen = pilot.app.screen
    assert isinstance(screen, CampaignScreen)
    await wait_for(pilot, lambda: screen.status is not None, what="status")
    return screen


@run_async
async def test_run_next_launches_iteration_1_and_its_events_arrive_until_it_is_complete(
        smoke: CampaignLayout) -> None:
    app = make_app("tiny-smoke", poll_interval=0.1)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            screen = await campaign_screen(pilot)
            await pilot.press("r")
            assert screen.launched is not None
            await wait_for(pilot, lambda: screen._pid is not None, timeout=60, what="the run to take the lock")
            await wait_for(pilot, lambda: len(screen.model.layers) > 0, timeout=120, what="layer events")
            assert screen.model.iteration == 1
            assert screen.model.steps["prune"].status in ("running", "done")
            await wait_for(pilot, lambda: screen.model.steps["eval"].status == "done", timeout=240,
                           what="the eval step to end")
            await wait_for(pilot, lambda: screen._pid is None and screen.launched is None, timeout=60,
                           what="the run to exit")
            assert screen.run_note == "run finished"
            assert screen.model.metrics["ppl"] > 0
            assert screen.model.loss.count > 0
            await wait_for(pilot, lambda: screen.status.iterations[0].complete, timeout=30, what="status")
            assert screen.live_refreshes < screen.model.events_applied + 50
    finally:
        stop_leftover(smoke)
    status = campaign_status(smoke)
    assert status.iterations[0].steps == {"prune": "done", "finetune": "done", "eval": "done"}
    assert "--iter 1 --json" in (smoke.logs / jobs.RUN_LOG).read_text()


@run_async
async def test_a_run_outlives_the_dashboard_that_started_it_and_the_next_one_reattaches_and_cancels_it(
        smoke: CampaignLayout) -> None:
    try:
        first = make_app("tiny-smoke", poll_interval=0.1)
        async with first.run_test(size=(100, 30)) as pilot:
            screen = await campaign_screen(pilot)
            await pilot.press("a")  # run all: long enough to still be running after we quit
            await wait_for(pilot, lambda: screen._pid is not None, timeout=60, what="the lock")
            pid = screen._pid
            await pilot.press("q")
            assert isinstance(first.screen, ChoiceScreen)  # asked first
            await pilot.press("k")  # keep it running
        assert jobs.active_pid(smoke) == pid  # the run did not die with the dashboard

        second = make_app("tiny-smoke", poll_interval=0.1)
        async with second.run_test(size=(100, 30)) as pilot:
            screen = await campaign_screen(pilot)
            await wait_for(pilot, lambda: screen._pid == pid, timeout=10, what="re-attach")
            await wait_for(pilot, lambda: screen.model.events_applied > 0, timeout=60, what="events")
            assert screen.launched is None  # followed, not launched, by this dashboard
            await pilot.press("c")
            assert isinstance(second.screen, ChoiceScreen)
            await pilot.press("y")
            assert screen.run_note == f"SIGTERM sent to pid {pid}"
            await wait_for(pilot, lambda: screen._pid is None, timeout=60, what="the run to stop")
            await wait_for(pilot, lambda: any(v.status == "interrupted" and v.error == "interrupted"
                                              for v in screen.model.steps.values()),
                           timeout=30, what="the step's end event")
    finally:
        stop_leftover(smoke)
    status = campaign_status(smoke)
    assert status.holder is None
    assert not status.complete  # stopped early; `tierctl run --all` resumes it
