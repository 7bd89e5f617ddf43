"""Launching a campaign's runs and finding the active one, without Textual (cancelling them:
tests/campaign/test_cancel.py; following them: tests/campaign/test_follow.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.campaign.holders import holders
from tierctl.campaign.jobs import active_pid, run_argv
from tierctl.campaign.layout import CampaignLayout


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
