"""Iteration 0 (the reference), zero-shot tasks through lm-eval, and the fine-tune-only control."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import make_campaign
from tests.steps.tiny_task import TASK, write_task
from tierctl.campaign.layout import CampaignLayout

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

NOTHING_PRUNED = """iteration,dense,mid_2_4,topk,epochs
1,1.0,0.0,0.0,0
"""


def run(layout: CampaignLayout, n: int, step: str) -> int:
    import importlib

    module = importlib.import_module(f"tierctl.steps.{step}")
    return module.main(["--campaign", str(layout.root), "--iter", str(n)])


def metrics(layout: CampaignLayout, n: int) -> dict[str, Any]:
    return json.loads(layout.metrics(n).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def unpruned(tmp_path_factory: pytest.TempPathFactory) -> CampaignLayout:
    """A campaign whose iteration 1 prunes nothing and fine-tunes 0 epochs, with the tiny task; all run."""
    tmp = tmp_path_factory.mktemp("reference")
    tasks = write_task(tmp / "tasks")
    layout = make_campaign(tmp, schedule=NOTHING_PRUNED, data={"eval_windows": 6, "seqlen": 32},
                           eval={"tasks": [TASK], "task_paths": [str(tasks)], "limit": 20, "batch_size": 8})
    assert run(layout, 0, "eval") == 0
    for step in ("prune", "finetune", "eval"):
        assert run(layout, 1, step) == 0
    return layout


@pytest.mark.slow
def test_iteration_0_equals_an_iteration_with_nothing_pruned_and_no_fine_tune(unpruned: CampaignLayout):
    ref, it1 = metrics(unpruned, 0), metrics(unpruned, 1)
    assert ref["iteration"] == 0 and ref["reference"] is True and ref["composition"] is None
    assert ref["ppl"] == it1["ppl"] == it1["ppl_pruned"]
    assert ref["ppl_interval"] == it1["ppl_interval"] and ref["ppl_interval"][0] < ref["ppl"] < ref["ppl_interval"][1]
    assert ref["eval"] == it1["eval"] and ref["eval"]["windows"] == 6
    assert ref["zeroshot"]["tasks"] == it1["zeroshot"]["tasks"]
    assert ref["sparsity"] == 0.0 and set(ref["timings"]) >= {"eval_s", "zeroshot_s"}


@pytest.mark.slow
def test_zero_shot_equals_lm_evals_own_simple_evaluate_on_the_saved_model(unpruned: CampaignLayout):
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": str(unpruned.model(1)), "device": "cpu"},
                                  tasks=[TASK], num_fewshot=0, limit=20, batch_size=8, log_samples=False,
                                  task_manager=TaskManager(include_path=str(unpruned.root.parent / "tasks"),
                                                           include_defaults=False))
    want = out["results"][TASK]
    got = metrics(unpruned, 1)["zeroshot"]
    assert got["tasks"][TASK] == {"acc": want["acc,none"], "acc_stderr": want["acc_stderr,none"],
                                  "acc_norm": want["acc_norm,none"], "acc_norm_stderr": want["acc_norm_stderr,none"],
                                  "samples": 20}
    assert got["mean_acc"] == want["acc,none"] and got["num_fewshot"] == 0 and got["limit"] == 20


def test_iteration_0_of_another_step_is_bad_input(tmp_path: Path, capsys):
    layout = make_campaign(tmp_path)
    assert run(layout, 0, "prune") == 2
    assert "(0, the reference, has only an eval step)" in capsys.readouterr().err
    assert not layout.iter_dir(0).exists()


@pytest.mark.slow
def test_the_control_fine_tunes_and_changes_no_weight_to_zero(tmp_path: Path):
    from tierctl.lm.models import load_model, prunable_linears

    layout = make_campaign(tmp_path, schedule="iteration,dense,mid_2_4,topk,epochs\n1,0.9,0.1,0.0,1\n",
                           prune={"method": "none"}, data={"eval_windows": 2, "seqlen": 32})
    for step in ("prune", "finetune", "eval"):
        assert run(layout, 1, step) == 0
    base = prunable_linears(load_model("tiny-llama", device="cpu")[0])
    tuned = prunable_linears(load_model(str(layout.model(1)), device="cpu")[0])
    m = metrics(layout, 1)
    assert m["method"] == "none" and m["sparsity"] == 0.0 and m["finetune"]["steps"] > 0
    assert not layout.tiers(1).exists() and not layout.act_norms(1).exists()
    assert sum(int((lin.weight == 0).sum()) for lin in tuned.values()) == 0
    assert any(not torch.equal(base[k].weight, tuned[k].weight) for k in base)  # it did fine-tune
