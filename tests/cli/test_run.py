"""`tierctl run`: refusals (exit 2, one line, nothing written), the one-runner lock, and real runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.campaign.step_files import iteration_done, prune_done
from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLock
from tierctl.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["run", *args], env={"COLUMNS": "100", "NO_COLOR": "1"})


def files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("args", "message"), [
    (["--iter", "0"], "--iter 0: {schedule} has iterations 1..5"),
    (["--iter", "6"], "--iter 6: {schedule} has iterations 1..5"),
    ([], "give --iter N or --all"),
    (["--iter", "2"], "iteration 2 needs iteration 1 complete: its prune step is pending (run: tierctl run {root} "
                      "--iter 1)"),
    (["--iter", "1", "--step", "eval"], "--step eval of iteration 1 needs its prune step, which is pending (run: "
                                        "tierctl run {root} --iter 1)"),
    (["--all", "--step", "prune"], "--step runs one step of one iteration: use it with --iter N, not --all"),
    (["--iter", "1", "--launcher", "mpirun"], "--launcher mpirun: must be one of local, torchrun"),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    layout = make_campaign(tmp_path)
    before = files(layout.root)
    r = invoke(str(layout.root), *args)
    assert r.exit_code == 2
    assert r.stderr == "tierctl: " + message.format(schedule=layout.schedule, root=layout.root) + "\n"
    assert files(layout.root) == before  # not even the lock file


def test_a_broken_campaign_toml_is_exit_2_naming_it(tmp_path):
    layout = make_campaign(tmp_path)
    layout.config.write_text("[data]\nnsamples = 'many'\n")
    r = invoke(str(layout.root), "--all")
    assert r.exit_code == 2
    assert r.stderr == f"tierctl: {layout.config}: [data] nsamples must be int, got 'many'\n"
    assert files(layout.root) == ["campaign.toml", "schedule.csv"]


def test_a_missing_campaign_is_exit_2(tmp_path):
    r = invoke(str(tmp_path / "nope"), "--all")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"tierctl: {tmp_path}/nope: no such campaign")


def test_a_missing_previous_step_is_named(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    prune_done(layout, 2)
    r = invoke(str(layout.root), "--iter", "3")
    assert r.exit_code == 2
    assert r.stderr == (f"tierctl: iteration 3 needs iteration 2 complete: its finetune step is pending "
                        f"(run: tierctl run {layout.root} --iter 2)\n")


def test_a_second_run_of_the_same_campaign_is_refused_naming_the_holder(tmp_path):
    layout = make_campaign(tmp_path)
    with CampaignLock(layout.lock):
        r = invoke(str(layout.root), "--iter", "1")
    assert r.exit_code == 2
    assert r.stderr == (f"tierctl: {layout.root}: campaign is being run by pid {os.getpid()} on "
                        f"{socket.gethostname()}\n")
    assert not layout.iter_dir(1).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)  # so the run has nothing to do but take the lock
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from tierctl.campaign.layout import CampaignLock\n"
         f"CampaignLock(Path({str(layout.lock)!r})).acquire()\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    r = invoke(str(layout.root), "--iter", "1")
    assert r.exit_code == 2 and f"campaign is being run by pid {holder.pid} on" in r.stderr
    holder.kill()  # kill -9: no chance to unlock; the kernel drops its flock
    holder.wait()
    assert layout.lock.read_text().split()[0] == str(holder.pid)
    r = invoke(str(layout.root), "--iter", "1")
    assert r.exit_code == 0, r.stderr
    assert layout.lock.read_text().split()[0] == str(os.getpid())


def test_a_complete_iteration_is_not_run_again(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    before = layout.metrics(1).read_text()
    r = invoke(str(layout.root), "--iter", "1", "--json")
    assert r.exit_code == 0 and r.stdout == ""
    assert layout.metrics(1).read_text() == before
    assert not layout.logs.exists()


def test_leftovers_of_killed_writes_are_removed_when_a_run_starts(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    (layout.iter_dir(1) / ".tmp-metrics.json.x1").write_text("{")
    (layout.iter_dir(1) / ".tmp-model.abc").mkdir()
    assert invoke(str(layout.root), "--iter", "1").exit_code == 0
    assert not any(p.name.startswith(".tmp-") for p in layout.root.rglob("*"))
