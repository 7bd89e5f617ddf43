"""Finished tiny campaigns to export, built once per test session by running the real steps in-process.

Schedule: iteration 1 demotes to 90/10/0, iteration 2 to 35/45/20 (the seed's last row), iteration 3
exists in the schedule but only its prune runs, so it is unfinished. Campaigns: tiny-llama in float32
(iteration 2 fine-tuned one short epoch, so the exported weights are trained ones), tiny-llama in
bfloat16, tiny-opt (matrices with partial edge blocks), and a wanda-unstructured baseline.
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
2,0.35,0.45,0.20,{epochs}
3,0.30,0.45,0.25,0
"""


def run_steps(layout: CampaignLayout, n: int, steps: tuple[str, ...] = ("prune", "finetune", "eval")) -> None:
    """The real step entry points, in this process (no interpreter start-up per step)."""
    import time

    from tierctl.steps.__main__ import main

    for step in steps:
        t0 = time.time()
        rc = main([step, "--campaign", str(layout.root), "--iter", str(n)])
        assert rc == 0, f"{step} of iteration {n} failed"
        print("TIMING", layout.name, n, step, round(time.time() - t0, 2))


def build(root: Path, name: str, model: str, epochs: int = 0, dtype: str = "float32") -> CampaignLayout:
    layout = make_campaign(root, model=model, name=name, schedule=SCHEDULE.format(epochs=epochs),
                           data={"nsamples": 2, "seqlen": 32, "batch_size": 2, "eval_windows": 2},
                           finetune={"batch_size": 2, "seqlen": 32, "tokens_per_epoch": 128})
    toml = layout.config.read_text()
    layout.config.write_text(toml.replace('dtype = "float32"', f'dtype = "{dtype}"'))
    run_steps(layout, 1)
    run_steps(layout, 2)
    return layout


@pytest.fixture(scope="session")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CampaignLayout]:
    """name -> finished campaign (iterations 1 and 2 done; tiny-llama's iteration 3 only pruned)."""
    root = tmp_path_factory.mktemp("export-campaigns")
    out = {
        "llama": build(root, "llama", "tiny-llama", epochs=1),
        "llama-bf16": build(root, "llama-bf16", "tiny-llama", dtype="bfloat16"),
        "opt": build(root, "opt", "tiny-opt"),
    }
    run_steps(out["llama"], 3, ("prune",))
    return out


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> CampaignLayout:
    """A finished one-iteration wanda-unstructured campaign (no tier map)."""
    root = tmp_path_factory.mktemp("export-baseline")
    layout = make_campaign(root, model="tiny-llama", name="wanda", schedule="iteration,dense,mid_2_4,topk,epochs\n"
                           "1,1.0,0.0,0.0,0\n", data={"nsamples": 2, "seqlen": 32, "batch_size": 2,
                                                      "eval_windows": 2},
                           prune={"method": "wanda-unstructured", "sparsity": 0.5})
    run_steps(layout, 1)
    return layout
