"""The running step's progress in words, in `tierctl run`'s panels and the dashboard's run panel."""

from __future__ import annotations

import io

from rich.console import Console

from tierctl.core.events import Event
from tierctl.core.live_model import LiveModel


def ppl_pruned_events() -> list[Event]:
    """A prune that pruned its 30 layers and is measuring ppl_pruned, 8 windows of 44 in."""
    return [Event(100.0, 2, "prune", "start"),
            Event(130.0, 2, "prune", "progress", {"done": 30, "total": 30, "unit": "layers", "phase": "prune",
                                                  "elapsed_s": 29.0, "eta_s": 0.0}),
            Event(134.0, 2, "prune", "progress", {"done": 8, "total": 44, "unit": "windows", "phase": "ppl_pruned",
                                                  "elapsed_s": 4.0, "eta_s": 18.0})]


def text_of(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def test_the_run_panel_says_the_prune_is_measuring_ppl_pruned_and_how_long_is_left(tmp_path) -> None:
    from tests.helpers import make_campaign
    from tierctl.live import LiveView

    view = LiveView(make_campaign(tmp_path), Console(file=io.StringIO(), width=120, height=40))
    for e in ppl_pruned_events():
        view.on_event(e, e.to_json())
    text = text_of(view.render())
    assert "ppl_pruned 8/44 windows" in text
    assert "measuring ppl_pruned: window 8 of 44 (18%)" in text and "left" in text


def test_the_dashboard_run_panel_shows_the_same_words_while_a_run_is_active() -> None:
    from tierctl.tui.widgets.run_controls import RunState, progress_renderable

    model = LiveModel()
    model.apply(ppl_pruned_events())
    text = text_of(progress_renderable(model, RunState(active_pid=4242), now=140.0))
    assert "ppl_pruned 8/44 windows" in text
    assert "measuring ppl_pruned: window 8 of 44 (18%), 0:10 elapsed, about 0:12 left" in text
