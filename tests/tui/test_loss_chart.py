"""The live fine-tune loss chart: its x axis is the optimizer step the events report (`opt_step`)."""

from __future__ import annotations

from tests.tui.conftest import run_async, screen_text, wait_for
from tests.tui.fixtures import T0, Events
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import read_events
from tierctl.tui.app import make_app
from tierctl.tui.screens.campaign import CampaignScreen


@run_async
async def test_the_loss_chart_x_axis_is_the_optimizer_step(demo: CampaignLayout) -> None:
    # iteration 2's fine-tune restarted, logging every 10 optimizer steps (log_every = 10)
    ev = Events(demo.events(2), 2, T0 + 9000)
    ev("finetune", "start")
    for n, loss in ((10, 3.0), (20, 2.75), (30, 2.5)):
        ev("finetune", "metric", name="loss", value=loss, opt_step=n)
        ev("finetune", "progress", done=n, total=40, unit="steps")
    ev.close()
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        assert isinstance(screen, CampaignScreen)
        recorded = len(read_events(demo.events(2)))
        await wait_for(pilot, lambda: screen.model.events_applied == recorded, what="events")
        await pilot.press("2")
        await pilot.pause(0.2)
        axis = [line.split() for line in screen_text(pilot).splitlines() if "optimizer step" in line]
        assert [w for w in axis[0] if w != "│"] == ["10", "optimizer", "step", "30"]  # 3 reports: steps 10..30
