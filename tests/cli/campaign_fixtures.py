"""Synthetic campaign outputs for diff / show / report tests: real files, written with numpy only.

A campaign directory made by tests.helpers.make_campaign (campaign.toml, schedule.csv), then per
iteration what the steps leave behind: tiers.safetensors (metadata as strings, docs/campaign.md), metrics.json,
and model/finetune.json once "fine-tuned". Tier maps follow the schedule's cumulative fractions and
only ever move down, like a real progressive campaign: each matrix has a fixed random order of blocks;
the first `topk` share of it is TOPK, the next `mid_2_4` share SEMI, the rest DENSE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.schedule import parse_schedule, tier_sparsities

# [out // 16, in // 16] of a two-layer Llama-like model: q, k, down per layer.
SHAPES = {
    f"model.layers.{layer}.{kind}": shape
    for layer in range(2)
    for kind, shape in (("self_attn.q_proj", (4, 4)), ("self_attn.k_proj", (2, 4)), ("mlp.down_proj", (4, 8)))
}


def progressive_maps(shapes: dict[str, tuple[int, int]], semi: float, topk: float, seed: int = 0
                     ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    maps = {}
    for name, (r, c) in shapes.items():
        n = r * c
        order = rng.permutation(n)  # same order at every iteration for a given seed
        n_topk, n_semi = round(topk * n), round((semi + topk) * n) - round(topk * n)
        flat = np.zeros(n, dtype=np.uint8)
        flat[order[:n_topk]] = 2
        flat[order[n_topk:n_topk + n_semi]] = 1
        maps[name] = flat.reshape(r, c)
    return maps


def write_tier_file(path: Path, maps: dict[str, np.ndarray], block_size: int = 16, k: int = 10,
                    iteration: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"block_size": str(block_size), "topk_per_block": str(k), "iteration": str(iteration)}
    save_file(maps, str(path), metadata=meta)
    return path


def composition(maps: dict[str, np.ndarray]) -> dict[str, float]:
    flat = np.concatenate([m.ravel() for m in maps.values()])
    return {k: float(np.mean(flat == t)) for t, k in enumerate(("dense", "semi", "topk"))}


def write_campaign(tmp_path: Path, name: str = "camp", iterations: int = 2, finished: int | None = None,
                   ppl: tuple[float, ...] = (40.0, 55.0, 80.0, 120.0, 200.0), seed: int = 0,
                   with_tiers: bool = True) -> CampaignLayout:
    """A campaign whose first `iterations` iterations are pruned, the first `finished` of them also
    fine-tuned and evaluated (all of them by default). ppl after fine-tune is 0.8 x ppl after prune."""
    layout = make_campaign(tmp_path, name=name)
    schedule = parse_schedule(layout.schedule.read_text())
    finished = iterations if finished is None else finished
    s_dense, s_semi, s_topk = tier_sparsities(16, 10)
    for n in range(1, iterations + 1):
        row = schedule.row(n)
        maps = progressive_maps(SHAPES, row.mid_2_4, row.topk, seed)
        if with_tiers:
            write_tier_file(layout.tiers(n), maps, iteration=n)
        layout.iter_dir(n).mkdir(parents=True, exist_ok=True)
        per_layer = {}
        for mname, m in maps.items():
            comp = composition({mname: m})
            per_layer[mname] = {**comp, "sparsity": comp["semi"] * s_semi + comp["topk"] * s_topk}
        comp = composition(maps)
        metrics = {
            "iteration": n, "composition": comp, "sparsity": comp["semi"] * s_semi + comp["topk"] * s_topk,
            "per_layer": per_layer, "ppl_pruned": ppl[n - 1], "ppl": None, "mask_violations": None,
            "timings": {"prune_s": 1.5 * n, "step_s": 4.0 * n},
            "eval": {"source": "pydoc", "seqlen": 64, "windows": 4, "tokens": 256, "protocol": "wanda"},
            "schedule_row": {k: getattr(row, k) for k in
                             ("dense", "mid_2_4", "topk", "dense_to_2_4", "mid_2_4_to_topk", "epochs")},
        }
        if n <= finished:
            ledger = {"epochs": row.epochs, "steps": 8, "tokens": 2048, "final_loss": 3.25, "mask_violations": 0}
            (layout.model(n)).mkdir(parents=True, exist_ok=True)
            (layout.model(n) / "finetune.json").write_text(json.dumps(ledger))
            metrics.update(ppl=round(0.8 * ppl[n - 1], 3), mask_violations=0, finetune=ledger)
            metrics["timings"].update(finetune_s=10.0 * n, eval_s=2.0)
        layout.metrics(n).write_text(json.dumps(metrics))
    return layout
