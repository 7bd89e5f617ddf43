"""Step command lines, and reaching every process of a step (torchrun puts workers in sessions of their own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.runner import StepResult, process_groups, step_argv
from tierctl.core.events import Event


def test_a_step_is_python_m_tierctl_steps_with_the_absolute_campaign(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layout = CampaignLayout(Path("camp"))
    assert step_argv(layout, 3, "prune") == [sys.executable, "-m", "tierctl.steps", "prune", "--campaign",
                                             str(tmp_path / "camp"), "--iter", "3"]


def test_only_the_fine_tune_runs_under_torchrun(tmp_path):
    layout = CampaignLayout(tmp_path)
    assert step_argv(layout, 1, "finetune", "torchrun", 4) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4",
        "-m", "tierctl.steps", "finetune", "--campaign", str(tmp_path), "--iter", "1"]
    assert step_argv(layout, 1, "eval", "torchrun", 4)[:4] == [sys.executable, "-m", "tierctl.steps", "eval"]


def test_process_groups_include_descendants_in_their_own_sessions():
    # A parent in its own group whose child starts a new session, as torchrun does with its workers.
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'], start_new_session=True)\n"
            "print(p.pid, flush=True)\ntime.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        child = int(parent.stdout.readline())
        assert process_groups(parent.pid) == {parent.pid, child}
    finally:
        for g in (parent.pid, child):
            os.killpg(g, signal.SIGKILL)
        parent.wait()
    time.sleep(0.05)


def test_our_own_group_is_never_signalled():
    assert os.getpgrp() not in process_groups(os.getpid())


def _result(returncode, end=None, tail=""):
    return StepResult(1, "prune", returncode, end, Path("logs/iter1-prune.log"), tail=tail)


def test_the_error_of_a_step_is_its_end_event_else_how_it_died():
    failed = Event(0.0, 1, "prune", "end", {"status": "failed", "error": "RuntimeError: boom\nmore"})
    assert _result(1, failed).error == "RuntimeError: boom"
    assert _result(-9).error == "its process was killed by SIGKILL, not by tierctl cancel: often the " \
                                "out-of-memory killer"
    assert _result(2, tail="tierctl prune: --campaign x: no such directory").error == \
        "tierctl prune: --campaign x: no such directory"
    assert _result(1).error == "exited with code 1 without an end event"
    ok = Event(0.0, 1, "prune", "end", {"status": "ok"})
    assert _result(0, ok).ok and not _result(0).ok and not _result(1, ok).ok


def test_a_stop_as_a_step_starts_kills_it_and_leaves_the_campaign_as_it_was(tmp_path):
    from tests.helpers import make_campaign
    from tierctl.campaign.layout import holder_of
    from tierctl.campaign.plan import RunRequest
    from tierctl.campaign.runner import run_campaign
    from tierctl.campaign.state import campaign_status

    layout = make_campaign(tmp_path)

    def sigterm_at_start(n, step, result):  # the runner's own handler receives it, as from `kill`
        if result is None:
            os.kill(os.getpid(), signal.SIGTERM)

    outcome = run_campaign(layout, RunRequest(iteration=1), on_step=sigterm_at_start, grace=5.0)
    assert outcome.exit_code == 143
    assert outcome.message == (f"interrupted (SIGTERM): stopped iteration 1 prune; iteration 1: the prune starts "
                               f"from the beginning; resume with: tierctl run {layout.root} --iter 1")
    assert [(r.step, r.returncode) for r in outcome.results] == [("prune", -signal.SIGTERM)]
    assert campaign_status(layout).iteration(1).steps == {"prune": "pending", "finetune": "pending",
                                                          "eval": "pending"}
    assert holder_of(layout.lock) is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the runner's handlers are gone again
