"""Sweeps through submitit: the grid's points, the sbatch script of a [slurm] table, and a real local sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import make_campaign
from tierctl.campaign.config import SlurmConfig
from tierctl.campaign.runner import process_groups
from tierctl.campaign.slurm import sbatch_script
from tierctl.campaign.sweep_spec import load_sweep, points
from tierctl.cli import app
from tierctl.core.events import read_events
from tierctl.errors import BadInput

ONE_ROW = "iteration,dense,mid_2_4,topk,epochs\n1,{dense},{mid},0.00,1\n"
GRID = """[sweep]
base = "base"
executor = "local"
max_parallel = 2
[axes]
schedule = ["a.csv", "b.csv"]
"finetune.lr" = [1e-4, 1e-3]
[slurm]
partition = "gpu"
gpus_per_node = 1
time = "04:00:00"
"""
# The sweeps that really run: two points (two schedules, one lr), enough for a kill mid-sweep, a resume and
# a best point per sparsity; every campaign of a grid costs five step processes.
RUN_GRID = GRID.replace('"finetune.lr" = [1e-4, 1e-3]', '"finetune.lr" = [1e-3]')


def write_sweep(root: Path, text: str = GRID) -> Path:
    """A tiny-llama base campaign (one iteration, two windows, one fine-tune step), two schedules, SWEEP.toml."""
    make_campaign(root, name="base", schedule=ONE_ROW.format(dense="0.90", mid="0.10"),
                  data={"nsamples": 2, "seqlen": 32, "batch_size": 2, "eval_windows": 2},
                  finetune={"batch_size": 2, "seqlen": 32, "tokens_per_epoch": 64, "checkpoint_every": 0})
    (root / "a.csv").write_text(ONE_ROW.format(dense="0.90", mid="0.10"))
    (root / "b.csv").write_text(ONE_ROW.format(dense="0.80", mid="0.20"))
    (root / "grid.toml").write_text(text)
    return root / "grid.toml"


def test_every_combination_is_a_point_named_after_its_values(tmp_path: Path) -> None:
    pts = points(load_sweep(write_sweep(tmp_path)))

    assert [p.name for p in pts] == ["schedule-a_lr-0.0001", "schedule-a_lr-0.001",
                                     "schedule-b_lr-0.0001", "schedule-b_lr-0.001"]
    assert [p.config.finetune.lr for p in pts] == [1e-4, 1e-3, 1e-4, 1e-3]
    assert pts[2].schedule_csv.splitlines()[1].startswith("1,0.80,0.20,0.00")
    assert pts[0].config.model.name == "tiny-llama"  # the rest is the base campaign's


@pytest.mark.parametrize(("axes", "message"), [
    ('"finetune.lrr" = [1]',
     "[axes] 'finetune.lrr': not a campaign.toml key (\"table.key\", e.g. \"finetune.lr\"; or schedule)"),
    ('"data.seed" = []', "[axes] data.seed must be a non-empty list of values"),
    ('"finetune.lr" = ["fast"]', "[axes] finetune.lr = 'fast': [finetune] lr must be float, got 'fast'"),
])
def test_a_bad_axis_is_refused_naming_it(tmp_path: Path, axes: str, message: str) -> None:
    path = write_sweep(tmp_path, "[sweep]\nbase = \"base\"\n[axes]\n" + axes + "\n")
    with pytest.raises(BadInput) as e:
        points(load_sweep(path))
    assert str(e.value) == f"{path}: {message}"


def test_the_sbatch_script_submitit_writes_carries_the_slurm_table(tmp_path: Path) -> None:
    table = SlurmConfig(partition="gpu", account="proj", nodes=2, gpus_per_node=4, cpus_per_task=8, mem_gb=64,
                        time="1-02:00:00", setup=["module load cuda"], extra={"mail-type": "END"})

    script = sbatch_script(tmp_path / ".submitit", table, tasks_per_node=4, name="tierctl-grid")

    directives = {line for line in script.splitlines() if line.startswith("#SBATCH")}
    assert {"#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --nodes=2", "#SBATCH --gpus-per-node=4",
            "#SBATCH --ntasks-per-node=4", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64GB",
            "#SBATCH --time=1560", "#SBATCH --mail-type=END", "#SBATCH --job-name=tierctl-grid"} <= directives
    assert "module load cuda" in script.splitlines()
    assert "-m submitit.core._submit" in script


def test_sweep_dry_run_prints_the_points_and_the_sbatch_script(tmp_path: Path) -> None:
    path = write_sweep(tmp_path)

    out = CliRunner().invoke(app, ["sweep", str(path), "--executor", "slurm", "--dry-run"])

    assert out.exit_code == 0, out.output
    assert out.stdout.count(str(tmp_path / "grid")) >= 4 and "#SBATCH --partition=gpu" in out.stdout
    assert not (tmp_path / "grid").exists()  # nothing created


def sweep_cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tierctl", "sweep", *args, str(path)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})


def kill_all(pid: int) -> None:
    groups = process_groups(pid)  # the sweep, its submitit controllers, their jobs and the jobs' steps
    for g in groups:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(g, signal.SIGKILL)


@pytest.mark.slow
def test_a_local_sweep_runs_resumes_a_killed_campaign_and_then_submits_nothing(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, RUN_GRID)
    grid = tmp_path / "grid"

    # 1. The sweep is killed (everything, kill -9) once the first campaign has pruned.
    first = subprocess.Popen([sys.executable, "-m", "tierctl", "sweep", str(path)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(grid.glob("*/iter1/metrics.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_all(first.pid)
    first.wait()
    pruned = sorted(p.parent.parent.name for p in grid.glob("*/iter1/metrics.json"))
    assert pruned, "no campaign pruned within 300 s"
    time.sleep(0.5)  # the kernel releases the flocks of the killed processes

    # 2. The next sweep finishes every campaign; the killed ones resume (their prune is not redone).
    second = sweep_cli(path)
    assert second.returncode == 0, second.stderr
    doc = json.loads(sweep_cli(path, "status", "--json").stdout)
    assert [(c["name"], c["state"], c["iteration"]) for c in doc["campaigns"]] == [
        (n, "done", 1) for n in ("schedule-a_lr-0.001", "schedule-b_lr-0.001")]
    for name in pruned:
        starts = [e for e in read_events(grid / name / "iter1" / "events.jsonl") if e.event == "start"]
        assert [e.step for e in starts].count("prune") == 1, name
    assert [b["sparsity"] for b in doc["best"]] == sorted({c["sparsity"] for c in doc["campaigns"]})
    assert "best point at each sparsity" in second.stdout

    # 3. Running it again submits nothing.
    jobs = (grid / "jobs.json").read_bytes()
    third = sweep_cli(path)
    assert third.returncode == 0 and "nothing to submit" in third.stdout
    assert (grid / "jobs.json").read_bytes() == jobs


def test_report_takes_a_sweep_like_the_list_of_its_campaigns(tmp_path: Path) -> None:
    from tests.cli.campaign_fixtures import write_campaign

    path = write_sweep(tmp_path)
    for name in ("schedule-a_lr-0.0001", "schedule-b_lr-0.001"):  # two points have results, two never ran
        write_campaign(tmp_path / "grid", name=name)

    out = CliRunner().invoke(app, ["report", str(path), "--out", str(tmp_path / "report")])

    assert out.exit_code == 0, out.output
    html = (tmp_path / "report" / "index.html").read_text()
    assert "<h2>schedule-a_lr-0.0001</h2>" in html and "<h2>schedule-b_lr-0.001</h2>" in html


@pytest.mark.slow
def test_sweep_cancel_stops_a_local_sweep_and_its_running_campaign(tmp_path: Path) -> None:
    path = write_sweep(tmp_path, RUN_GRID.replace("max_parallel = 2", "max_parallel = 1"))
    grid = tmp_path / "grid"
    sweep = subprocess.Popen([sys.executable, "-m", "tierctl", "sweep", str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(grid.glob("*/iter1/events.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.2)

        cancel = sweep_cli(path, "cancel")

        assert cancel.returncode == 0 and "stopped the sweep's scheduler" in cancel.stdout
        assert sweep.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        kill_all(sweep.pid)
    doc = json.loads(sweep_cli(path, "status", "--json").stdout)
    assert [c["state"] for c in doc["campaigns"]] == ["pending"] * 2  # the first one stopped, resumable
    assert list(json.loads((grid / "jobs.json").read_text())["jobs"]) == ["schedule-a_lr-0.001"]
