"""Following a campaign's runs, without Textual (cancelling them: tests/campaign/test_cancel.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.campaign.holders import holders
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import EventSink
from tierctl.tui.jobs import RunWatch, active_pid, newest_iteration_with_events, run_argv


def sink(layout: CampaignLayout, n: int, step: str) -> EventSink:
    return EventSink(n, step, layout.events(n), stream=None)


def test_the_watch_follows_the_newest_iteration_and_reads_only_new_events(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    s1 = sink(layout, 1, "prune")
    s1.start()
    s1.layer("m.0.q_proj", 0.9, 0.1, 0.0, 0.05)
    watch = RunWatch(layout)
    assert watch.poll() == 2
    assert watch.poll() == 0
    s1.end("ok")
    assert watch.poll() == 1
    assert watch.model.steps["prune"].status == "done"

    s2 = sink(layout, 2, "prune")
    s2.start()
    assert watch.poll() == 1
    assert watch.iteration == 2
    assert watch.model.iteration == 2
    assert watch.model.layers == {}  # a new model for the new iteration
    assert watch.model.steps["prune"].status == "running"


def test_read_says_to_start_over_when_the_followed_iteration_changes(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    watch = RunWatch(layout)
    assert watch.read() == (None, False, [])
    sink(layout, 3, "eval").start()
    it, over, events = watch.read()
    assert (it, over, [e.event for e in events]) == (3, True, ["start"])
    assert watch.read() == (3, False, [])


def test_newest_iteration_ignores_iteration_dirs_without_events(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    sink(layout, 1, "prune").start()
    layout.iter_dir(2).mkdir()
    assert newest_iteration_with_events(layout) == 1


def test_run_argv_runs_this_interpreter_on_the_campaign_directory(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    assert run_argv(layout, iteration=3) == [sys.executable, "-m", "tierctl", "run", str(tmp_path.resolve()),
                                             "--iter", "3", "--json"]
    assert run_argv(layout, all_iterations=True)[-2:] == ["--all", "--json"]
    with pytest.raises(ValueError):
        run_argv(layout)


def test_the_active_pid_is_the_live_holder_runner_then_its_orphaned_step(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    assert active_pid(layout) is None
    with holders() as hold:
        held = hold(layout)
        assert active_pid(layout) == held.runner.pid
        held.kill_runner()
        assert active_pid(layout) == held.step
