"""Following a campaign's runs and cancelling them, without Textual."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tierctl.campaign.layout import CampaignLayout, holder_of
from tierctl.core.events import EventSink
from tierctl.errors import BadInput
from tierctl.tui.jobs import RunWatch, active_pid, cancel, newest_iteration_with_events, run_argv


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


HOLDER = """
import sys, time
from pathlib import Path
from tierctl.campaign.layout import CampaignLock
lock = CampaignLock(Path(sys.argv[1])).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_cancel_sends_sigterm_to_the_process_holding_the_campaign_lock(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(layout.lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert active_pid(layout) == proc.pid
        assert cancel(layout) == proc.pid
        assert proc.wait(timeout=10) == -15
        deadline = time.monotonic() + 5
        while holder_of(layout.lock) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert active_pid(layout) is None
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, 9)


RUNNER_WITH_STEP = """
import subprocess, sys, time
from pathlib import Path
from tierctl.campaign.layout import CampaignLock, record_step_group
lock = CampaignLock(Path(sys.argv[1])).acquire()
step = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
                        pass_fds=(lock.fd,))
record_step_group(lock.fd, step.pid)
print(step.pid, flush=True)
time.sleep(60)
"""


def test_cancel_reaches_the_orphaned_step_of_a_runner_killed_with_sigkill(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER_WITH_STEP, str(layout.lock)], stdout=subprocess.PIPE,
                              text=True)
    assert runner.stdout is not None
    step = int(runner.stdout.readline())
    try:
        runner.kill()
        runner.wait()
        assert holder_of(layout.lock) is not None  # the step inherited the lock
        assert cancel(layout) == step
        deadline = time.monotonic() + 10
        while holder_of(layout.lock) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        try:
            os.killpg(step, 9)
        except ProcessLookupError:
            pass


def test_cancel_without_a_run_says_so(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no run is active"):
        cancel(CampaignLayout(tmp_path))
