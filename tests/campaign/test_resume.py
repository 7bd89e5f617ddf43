"""What every message about resuming says: where the rerun starts, and the command to run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import make_campaign
from tierctl.campaign.plan import RunRequest
from tierctl.campaign.resume import resume_point, run_command


def test_a_fine_tune_resumes_from_the_step_its_checkpoint_holds(tmp_path: Path) -> None:
    layout = make_campaign(tmp_path)
    ckpt = layout.finetune_checkpoint(1)
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"format": 1, "step": 450, "tokens": 921600,
                                                 "fingerprint": {"plan": {"total_steps": 677}}}))
    assert resume_point(layout, 1, "finetune") == "the fine-tune resumes from its checkpoint at step 450 of 677"


def test_without_a_checkpoint_the_fine_tune_and_the_other_steps_start_over(tmp_path: Path) -> None:
    layout = make_campaign(tmp_path)
    assert resume_point(layout, 2, "finetune") == "the fine-tune starts from its first step (it has no checkpoint yet)"
    assert resume_point(layout, 2, "prune") == "the prune starts from the beginning"
    assert resume_point(layout, 2, "eval") == "the eval starts from the beginning"


def test_the_resume_command_repeats_the_interrupted_one_without_force(tmp_path: Path) -> None:
    layout = make_campaign(tmp_path)
    root = layout.root
    assert run_command(layout, RunRequest(iteration=1)) == f"tierctl run {root} --iter 1"
    assert run_command(layout, RunRequest(iteration=2, step="finetune", force=True)) == \
        f"tierctl run {root} --iter 2 --step finetune"
    assert run_command(layout, RunRequest(all=True)) == f"tierctl run {root} --all"
