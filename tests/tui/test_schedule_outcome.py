"""The schedule table answers "how is it going": each iteration's outcome beside its row."""

from __future__ import annotations

from tests.tui.conftest import campaign_screen, run_async, screen_text
from tierctl.campaign.layout import CampaignLayout
from tierctl.tui.app import make_app
from tierctl.tui.widgets.schedule_editor import KEYS, ScheduleEditor


@run_async
async def test_the_first_screen_at_120x36_shows_each_iterations_ppl_sparsity_and_state(demo: CampaignLayout) -> None:
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await campaign_screen(pilot, draft=True)
        await pilot.pause(0.2)
        table = screen.query_one(ScheduleEditor).table
        row = {n: [table.get_cell_at((n - 1, KEYS.index(k))).plain for k in ("reached", "ppl", "state")]
               for n in (1, 2, 3)}
        assert row[1] == ["5.2%", "48.25→41.50", "✓ done"]  # metrics.json of the fixture
        assert row[2] == ["14.5%", "63.75→-", "↻ finetune"]
        assert row[3] == ["", "", ""]  # not run: nothing to show
        # ...and they are on the screen, not scrolled out of sight, with the reference ppl
        shown = screen_text(pilot)
        for text in ("48.25→41.50", "63.75→-", "✓ done", "↻ finetune", "reference ppl 30.25"):
            assert text in shown, text
