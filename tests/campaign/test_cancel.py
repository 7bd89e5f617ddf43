"""Cancelling a campaign's holder (tierctl.campaign.cancel), with real processes holding the lock."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tests.campaign.holders import holders
from tests.campaign.step_files import event, reference_done
from tests.helpers import make_campaign
from tierctl.campaign.cancel import cancel
from tierctl.campaign.holder import campaign_holder, last_progress, refusal
from tierctl.campaign.lock import read_lock
from tierctl.campaign.procs import start_time
from tierctl.errors import TierctlError

HOST = socket.gethostname()


@pytest.fixture
def hold():
    with holders() as start:
        yield start


def progress(layout, done: int, total: int = 8) -> None:
    event(layout, 1, "finetune", "progress", done=done, total=total, unit="steps")


def wait_free(layout, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while read_lock(layout.lock) is not None:
        assert time.monotonic() < deadline, "the lock was not freed"
        time.sleep(0.05)


def test_cancel_with_nothing_running_says_so(tmp_path):
    layout = make_campaign(tmp_path)
    done = cancel(layout)
    assert done.holder is None
    assert done.message == f"nothing to cancel: no run holds {layout.root}"


def test_the_holder_is_the_runner_with_its_step_and_the_steps_progress(tmp_path, hold):
    layout = make_campaign(tmp_path)
    event(layout, 1, "finetune", "start")
    progress(layout, 2)
    progress(layout, 3)
    held = hold(layout)
    holder = campaign_holder(layout)
    assert (holder.pid, holder.orphaned, holder.step.pid) == (held.runner.pid, False, held.step)
    assert holder.describe() == f"pid {held.runner.pid} on {HOST} (iteration 1 finetune, 3/8 steps)"


def test_a_runner_gets_sigterm_and_stops_its_step_itself(tmp_path, hold):
    layout = make_campaign(tmp_path)
    event(layout, 1, "finetune", "start")
    progress(layout, 3)
    held = hold(layout)
    done = cancel(layout)
    assert done.message == (f"stopping pid {held.runner.pid} on {HOST} (iteration 1 finetune, 3/8 steps): SIGTERM "
                            f"sent; the campaign is free once it has exited (tierctl cancel {layout.root} --wait "
                            "waits for that)")
    assert held.runner.wait(timeout=10) == 143  # its own SIGTERM handler stopped the step first
    assert not held.step_alive()
    wait_free(layout)


def test_after_a_kill_9_of_the_runner_its_step_is_the_orphaned_holder(tmp_path, hold):
    layout = make_campaign(tmp_path)
    event(layout, 1, "finetune", "start")
    progress(layout, 5)
    held = hold(layout)
    held.kill_runner()
    holder = campaign_holder(layout)
    assert (holder.orphaned, holder.pid) == (True, held.step)
    assert refusal(layout, holder) == (
        f"{layout.root}: campaign is held by an orphaned step: iteration 1 finetune, 5/8 steps, pid {held.step} on "
        f"{HOST} (its runner pid {held.runner.pid} died); wait for it with --wait, or stop it with: tierctl cancel "
        f"{layout.root}")


def test_cancel_wait_stops_an_orphaned_step_and_returns_once_the_lock_is_free(tmp_path, hold):
    layout = make_campaign(tmp_path)
    reference_done(layout)  # else the campaign resumes with it (iteration 0)
    event(layout, 1, "finetune", "start")
    progress(layout, 5)
    held = hold(layout)
    held.kill_runner()
    done = cancel(layout, wait=True)
    assert read_lock(layout.lock) is None and not held.step_alive()
    assert done.message == (f"stopped an orphaned step: iteration 1 finetune, 5/8 steps, pid {held.step} on {HOST} "
                            f"(its runner pid {held.runner.pid} died); the campaign is free: iteration 1: the prune "
                            f"starts from the beginning; resume with tierctl run {layout.root} --all")


def test_cancel_wait_kills_a_step_that_ignores_sigterm_after_the_grace_period(tmp_path, hold):
    layout = make_campaign(tmp_path)
    held = hold(layout, ignore_term=True)
    held.kill_runner()
    t0 = time.monotonic()
    cancel(layout, wait=True, grace=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert read_lock(layout.lock) is None and not held.step_alive()


def test_a_recorded_pid_that_now_names_another_process_is_never_signalled(tmp_path, hold):
    """The lock names a live process with the right start time that does not hold the lock (a recycled
    pid of the step), while the real holder is a process the lock file does not name: nothing is signalled."""
    layout = make_campaign(tmp_path)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = hold(layout, recorded=f"{stranger.pid} {start_time(stranger.pid)}")
        held.kill_runner()
        with pytest.raises(TierctlError, match="by no process tierctl recorded and can check; nothing was signalled"):
            cancel(layout)
        assert stranger.poll() is None and held.step_alive()
    finally:
        stranger.kill()
        stranger.wait()


def test_a_recorded_pid_with_another_start_time_is_not_the_holder(tmp_path, hold):
    """The recorded step's pid was recycled: a live process has it, but started at another time."""
    layout = make_campaign(tmp_path)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        held = hold(layout, recorded=f"{stranger.pid} {start_time(stranger.pid) - 1}")
        held.kill_runner()
        holder = campaign_holder(layout)
        assert holder.step is None and not holder.orphaned
        with pytest.raises(TierctlError, match="nothing was signalled"):
            cancel(layout)
        assert stranger.poll() is None and held.step_alive()
    finally:
        stranger.kill()
        stranger.wait()


def test_the_progress_names_a_phase_other_than_the_step_and_the_time_left(tmp_path):
    layout = make_campaign(tmp_path)
    event(layout, 1, "prune", "start")
    event(layout, 1, "prune", "progress", done=2, total=2, unit="layers", phase="prune", eta_s=0.0)
    assert last_progress(layout.events(1), 1, "prune") == "2/2 layers, 0:00 left"
    event(layout, 1, "prune", "progress", done=8, total=44, unit="windows", phase="ppl_pruned", eta_s=125.2)
    assert last_progress(layout.events(1), 1, "prune") == "ppl_pruned 8/44 windows, 2:05 left"
    event(layout, 1, "prune", "start")  # a new attempt: nothing done yet
    assert last_progress(layout.events(1), 1, "prune") is None
