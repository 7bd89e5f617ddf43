"""What each step leaves in iter<N>/ when it completes (docs/campaign.md, When is a step done).

The state module's input *is* these files, so its tests write them the way the steps do: metrics.json
last for the prune, model/finetune.json for the fine-tune, `ppl` merged for the eval, events appended.
End-to-end runs of the real steps are in tests/cli/test_run.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tierctl.campaign.layout import CampaignLayout
from tierctl.core.schedule import load_schedule

COMP = {"dense": 0.9, "semi": 0.1, "topk": 0.0}


def event(layout: CampaignLayout, n: int, step: str, kind: str, **data: Any) -> None:
    layout.iter_dir(n).mkdir(parents=True, exist_ok=True)
    line = json.dumps({"t": time.time(), "iter": n, "step": step, "event": kind, **data})
    with open(layout.events(n), "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _merge(layout: CampaignLayout, n: int, **fields: Any) -> None:
    path = layout.metrics(n)
    metrics = json.loads(path.read_text()) if path.exists() else {}
    metrics.update(fields)
    path.write_text(json.dumps(metrics))


def prune_done(layout: CampaignLayout, n: int, comp: dict[str, float] | None = None, ppl_pruned: float = 40.0) -> None:
    row = load_schedule(layout.schedule).row(n)
    event(layout, n, "prune", "start")
    (layout.model(n)).mkdir(parents=True, exist_ok=True)
    (layout.model(n) / "config.json").write_text("{}")
    _merge(layout, n, iteration=n, composition=comp or COMP, sparsity=0.05, ppl_pruned=ppl_pruned, ppl=None,
           per_layer={"model.layers.0.mlp.up_proj": {**(comp or COMP), "sparsity": 0.05}},
           mask_violations=None, schedule_row=row.__dict__)
    event(layout, n, "prune", "end", status="ok")


def finetune_done(layout: CampaignLayout, n: int) -> None:
    event(layout, n, "finetune", "start")
    ledger = {"epochs": 2, "final_loss": 3.0, "mask_violations": 0}
    (layout.model(n) / "finetune.json").write_text(json.dumps(ledger))
    _merge(layout, n, mask_violations=0, finetune=ledger)
    event(layout, n, "finetune", "end", status="ok")


def eval_done(layout: CampaignLayout, n: int, ppl: float = 30.0, interval: list[float] | None = None) -> None:
    event(layout, n, "eval", "start")
    _merge(layout, n, ppl=ppl, ppl_interval=interval or [ppl * 0.9, ppl * 1.1])
    event(layout, n, "eval", "end", status="ok")


def iteration_done(layout: CampaignLayout, n: int) -> None:
    prune_done(layout, n)
    finetune_done(layout, n)
    eval_done(layout, n)


def reference_done(layout: CampaignLayout, ppl: float = 20.0, interval: list[float] | None = None) -> None:
    """Iteration 0 as the eval step leaves it: iter0/metrics.json written once, with its ppl."""
    event(layout, 0, "eval", "start")
    _merge(layout, 0, iteration=0, reference=True, composition=None, sparsity=0.0, ppl_pruned=None, ppl=ppl,
           ppl_interval=interval or [ppl * 0.9, ppl * 1.1])
    event(layout, 0, "eval", "end", status="ok")
