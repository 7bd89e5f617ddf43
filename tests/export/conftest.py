"""Finished tiny campaigns to export, built once per test session by running the real steps in-process.

tiny-llama in float32: iteration 1 demotes to 90/10/0, iteration 2 to 35/45/20 (the seed's last row) and
is fine-tuned one short epoch (so the exported weights are trained ones), iteration 3 exists in the schedule
but only its prune runs, so it is unfinished. tiny-llama in bfloat16 and tiny-opt (matrices with partial
edge blocks): one iteration straight to 35/45/20, not fine-tuned.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import make_campaign  # noqa: E402
from tierctl.campaign.layout import CampaignLayout  # noqa: E402

SCHEDULE = """iteration,dense,mid_2_4,topk,epochs
1,0.90,0.10,0.00,0
2,0.35,0.45,0.20,1
3,0.30,0.45,0.25,0
"""
ONE_ROW = "iteration,dense,mid_2_4,topk,epochs\n1,0.35,0.45,0.20,0\n"


def run_steps(layout: CampaignLayout, n: int, steps: tuple[str, ...] = ("prune", "finetune", "eval")) -> None:
    """The real step entry points, in this process (no interpreter start-up per step)."""
    from tierctl.steps.__main__ import main

    for step in steps:
        rc = main([step, "--campaign", str(layout.root), "--iter", str(n)])
        assert rc == 0, f"{step} of iteration {n} failed"


def build(root: Path, name: str, model: str, schedule: str = ONE_ROW, dtype: str = "float32") -> CampaignLayout:
    """A campaign whose iterations 1 (and 2, when the schedule has it) are finished."""
    layout = make_campaign(root, model=model, name=name, schedule=schedule,
                           data={"nsamples": 2, "seqlen": 32, "batch_size": 2, "eval_windows": 2},
                           finetune={"batch_size": 2, "seqlen": 32, "tokens_per_epoch": 128})
    toml = layout.config.read_text()
    layout.config.write_text(toml.replace('dtype = "float32"', f'dtype = "{dtype}"'))
    run_steps(layout, 1)
    if schedule != ONE_ROW:
        run_steps(layout, 2)
    return layout


@pytest.fixture(scope="session")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CampaignLayout]:
    """name -> campaign: llama (iterations 1, 2 done, 3 only pruned), llama-bf16 and opt (iteration 1 done)."""
    root = tmp_path_factory.mktemp("export-campaigns")
    out = {
        "llama": build(root, "llama", "tiny-llama", SCHEDULE),
        "llama-bf16": build(root, "llama-bf16", "tiny-llama", dtype="bfloat16"),
        "opt": build(root, "opt", "tiny-opt"),
    }
    run_steps(out["llama"], 3, ("prune",))
    return out
