"""`tierctl cancel`, `run --wait`, and what `run` and `status` say about a campaign held by an orphaned step.

The holders here are real processes that take the lock like `tierctl run` (tests/campaign/holders.py);
runs of the real steps, killed and resumed, are in tests/cli/test_run.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.campaign.holders import holders
from tests.campaign.step_files import event, iteration_done, reference_done
from tests.helpers import make_campaign
from tierctl.campaign.lock import read_lock
from tierctl.cli import app

HOST = socket.gethostname()
ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
cli = CliRunner()


@pytest.fixture
def hold():
    with holders() as start:
        yield start


def files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def orphan(tmp_path, hold):
    """A campaign whose iteration 1 fine-tune (3 of 8 steps done) goes on after a kill -9 of its runner."""
    layout = make_campaign(tmp_path)
    reference_done(layout)  # `run --all` measured it first
    event(layout, 1, "finetune", "start")
    event(layout, 1, "finetune", "progress", done=3, total=8, unit="steps")
    held = hold(layout)
    held.kill_runner()
    return layout, held


def test_cancel_with_nothing_running_exits_0_and_says_so(tmp_path):
    layout = make_campaign(tmp_path)
    r = cli.invoke(app, ["cancel", str(layout.root)], env=ENV)
    assert (r.exit_code, r.stdout, r.stderr) == (0, f"nothing to cancel: no run holds {layout.root}\n", "")
    assert not layout.lock.exists()


def test_cancel_of_a_missing_campaign_is_exit_2(tmp_path):
    r = cli.invoke(app, ["cancel", str(tmp_path / "nope")], env=ENV)
    assert r.exit_code == 2 and r.stderr.startswith(f"tierctl: {tmp_path}/nope: no such campaign")


def test_cancel_wait_stops_the_orphaned_step_and_says_what_it_stopped(orphan):
    layout, held = orphan
    r = cli.invoke(app, ["cancel", str(layout.root), "--wait"], env=ENV)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == (f"stopped an orphaned step: iteration 1 finetune, 3/8 steps, pid {held.step} on {HOST} (its "
                        f"runner pid {held.runner.pid} died); the campaign is free: iteration 1: the prune starts "
                        f"from the beginning; resume with tierctl run {layout.root} --all\n")
    assert read_lock(layout.lock) is None and not held.step_alive()


def test_a_run_refused_by_an_orphaned_step_names_it_and_the_two_ways_on(orphan):
    layout, held = orphan
    before = files(layout.root)
    r = cli.invoke(app, ["run", str(layout.root), "--all"], env=ENV)
    assert r.exit_code == 2
    assert r.stderr == (f"tierctl: {layout.root}: campaign is held by an orphaned step: iteration 1 finetune, 3/8 "
                        f"steps, pid {held.step} on {HOST} (its runner pid {held.runner.pid} died); wait for it "
                        f"with --wait, or stop it with: tierctl cancel {layout.root}\n")
    assert files(layout.root) == before


def test_status_says_running_orphaned_with_the_steps_pid(orphan):
    layout, held = orphan
    r = cli.invoke(app, ["status", str(layout.root), "--json"], env=ENV)
    it = json.loads(r.stdout)["iterations"][1]  # [0] is the reference
    assert (it["steps"]["finetune"], it["pid"], it["orphaned"]) == ("running", held.step, True)
    assert "pid" not in json.loads(r.stdout)["iterations"][2]  # only beside a running step
    r = cli.invoke(app, ["status", str(layout.root)], env=ENV)
    assert r.stdout.splitlines()[-2:] == ["  step 3 of 8 (38%)",
                                          f"running (orphaned: its runner died): iteration 1 finetune (pid {held.step} "
                                          f"on {HOST})"]


def test_status_of_a_live_runner_is_running_not_orphaned(tmp_path, hold):
    layout = make_campaign(tmp_path)
    event(layout, 1, "finetune", "start")
    held = hold(layout)
    it = json.loads(cli.invoke(app, ["status", str(layout.root), "--json"], env=ENV).stdout)["iterations"][1]
    assert (it["steps"]["finetune"], it["pid"], it["orphaned"]) == ("running", held.step, False)


def test_run_wait_waits_for_the_holder_then_runs_what_is_left(tmp_path, hold):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)  # what is left of --iter 1 once the holder is gone: nothing, so no model is loaded
    held = hold(layout, iteration=2, step="prune")
    run = subprocess.Popen([sys.executable, "-m", "tierctl", "run", str(layout.root), "--iter", "1", "--wait"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        assert run.stderr.readline() == f"waiting for pid {held.runner.pid} on {HOST} (iteration 2 prune)\n"
        assert run.poll() is None
        held.kill_runner()
        assert run.stderr.readline() == (f"waiting for an orphaned step: iteration 2 prune, pid {held.step} on {HOST} "
                                         f"(its runner pid {held.runner.pid} died)\n")
        os.killpg(held.step, 9)
        assert run.wait(timeout=60) == 0
        assert (run.stdout.read(), run.stderr.read()) == ("", "nothing to do: the steps asked for are done "
                                                              "(--force redoes them)\n")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
