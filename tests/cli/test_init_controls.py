"""`tierctl init NAME --controls`: the progressive campaign, its control and its one-shot Wanda baselines."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.steps.tiny_task import TASK, write_task
from tierctl.campaign.config import load_config
from tierctl.cli import app
from tierctl.core.schedule import SEED_SCHEDULE_CSV, load_schedule, parse_schedule

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str):
    return runner.invoke(app, ["init", *args], env={"COLUMNS": "100", "NO_COLOR": "1"})


def test_controls_make_the_comparison_set_with_identical_model_data_eval_and_budget(tmp_path):
    r = invoke("exp", "--dir", str(tmp_path), "--model", "tiny-llama", "--controls", "--no-check")  # 4 x 7 s saved
    assert r.exit_code == 0, r.stderr
    names = ["exp", "exp-control", "exp-wanda", "exp-wanda-2-4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    cfg = {n: load_config(tmp_path / n / "campaign.toml") for n in names}
    sched = {n: load_schedule(tmp_path / n / "schedule.csv") for n in names}
    assert [cfg[n].prune.method for n in names] == ["progressive", "none", "wanda-unstructured", "wanda-nm"]
    assert cfg["exp-wanda"].prune.sparsity == 0.417188  # 0.45 * 1/2 + 0.20 * (1 - 10/256), the seed's last row
    assert (cfg["exp-wanda-2-4"].prune.n, cfg["exp-wanda-2-4"].prune.m) == (2, 4)
    for n in names[1:]:
        same = dataclasses.replace(cfg[n], prune=cfg["exp"].prune)
        assert same == cfg["exp"]  # model, data, tiers, finetune, run, eval: identical
    assert sched["exp"] == sched["exp-control"] == parse_schedule(SEED_SCHEDULE_CSV)
    for n in ("exp-wanda", "exp-wanda-2-4"):
        (row,) = sched[n].rows
        assert row.epochs == 2 + 2 + 2 + 2 + 3  # the whole campaign's fine-tune epochs in one iteration
        assert (row.dense, row.mid_2_4, row.topk) == (0.35, 0.45, 0.2)
    assert r.stdout.splitlines()[-1] == "compare them with: tierctl report " + " ".join(
        str(tmp_path / n) for n in names) + " --out report"


def test_controls_refuse_a_taken_name_and_create_nothing(tmp_path):
    (tmp_path / "exp-wanda").mkdir()
    r = invoke("exp", "--dir", str(tmp_path), "--model", "tiny-llama", "--controls")
    assert r.exit_code == 2
    assert r.stderr.strip() == f"tierctl: {tmp_path / 'exp-wanda'}: already exists (something is there); " \
                               f"choose another name or --dir"
    assert [p.name for p in tmp_path.iterdir()] == ["exp-wanda"]


def test_a_task_that_cannot_load_is_refused_at_init_naming_it(tmp_path):
    tasks = write_task(tmp_path / "tasks")
    (tasks / "tiny_mc.jsonl").unlink()  # the task's YAML is there, its data is not
    proc = subprocess.run([sys.executable, "-m", "tierctl", "init", "exp", "--dir", str(tmp_path / "c"),
                           "--model", "tiny-llama", "--tasks", TASK, "--task-path", str(tasks)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
                               "HF_DATASETS_OFFLINE": "1"})
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"tierctl: --tasks: task '{TASK}' cannot be loaded: ")  # the flag named
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_an_unknown_task_name_is_refused_naming_it(tmp_path):
    from tierctl.errors import BadInput
    from tierctl.lm.zeroshot import check_tasks

    tasks = write_task(tmp_path / "tasks")
    with pytest.raises(BadInput, match=r"^\[eval\] tasks: unknown task 'no_such_task': not an lm-eval task or "
                                       r"\[eval\] task_paths$"):
        check_tasks([TASK, "no_such_task"], [str(tasks)])


def test_a_task_that_cannot_load_is_refused_by_run_before_anything_runs(tmp_path):
    from tests.helpers import make_campaign

    tasks = write_task(tmp_path / "tasks")
    (tasks / "tiny_mc.jsonl").unlink()
    layout = make_campaign(tmp_path, eval={"tasks": [TASK], "task_paths": [str(tasks)]})
    before = sorted(p.name for p in layout.root.iterdir())
    r = CliRunner().invoke(app, ["run", str(layout.root), "--all"], env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert r.exit_code == 2
    assert r.stderr.startswith(f"tierctl: {layout.config}: [eval] tasks: task '{TASK}' cannot be loaded: ")
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in layout.root.iterdir()) == before  # no iter0, no lock, no log
