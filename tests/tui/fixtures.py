"""A campaign on disk with fixed contents, for dashboard tests and snapshots (numpy + json only).

`demo_campaign(base)` writes `base/demo`: the seed schedule, the reference (iteration 0) measured,
iteration 1 complete (pruned,
fine-tuned, evaluated) and iteration 2 pruned with its fine-tune interrupted halfway (a start and
loss reports, no end: what a killed run leaves). Every file is what the steps write (docs/campaign.md
and docs/events.md), with fixed timestamps and numbers, so screens drawn from it are the same on every
run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.schedule import parse_schedule

KINDS = (("self_attn.q_proj", (4, 4)), ("self_attn.k_proj", (2, 4)), ("self_attn.v_proj", (2, 4)),
         ("self_attn.o_proj", (4, 4)), ("mlp.gate_proj", (8, 4)), ("mlp.up_proj", (8, 4)), ("mlp.down_proj", (4, 8)))
LAYERS = 2
T0 = 1_700_000_000.0
S_SEMI, S_TOPK = 0.5, 1 - 10 / 256


def matrix_names() -> list[str]:
    return [f"model.layers.{i}.{kind}" for i in range(LAYERS) for kind, _ in KINDS]


def tier_maps(semi: float, topk: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Maps with the schedule's fractions; one fixed block order per matrix, so tiers only move down."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(LAYERS):
        for kind, (r, c) in KINDS:
            n = r * c
            order = rng.permutation(n)
            n_topk, n_mid = round(topk * n), round((semi + topk) * n)
            flat = np.zeros(n, dtype=np.uint8)
            flat[order[n_topk:n_mid]] = 1
            flat[order[:n_topk]] = 2
            out[f"model.layers.{i}.{kind}"] = flat.reshape(r, c)
    return out


def comp_of(m: np.ndarray) -> dict[str, float]:
    d = {k: float(np.mean(m == t)) for t, k in enumerate(("dense", "semi", "topk"))}
    d["sparsity"] = d["semi"] * S_SEMI + d["topk"] * S_TOPK
    return d


class Events:
    """Writes events.jsonl lines with a clock that advances 0.5 s per event."""

    def __init__(self, path: Path, iteration: int, t0: float) -> None:
        self.path, self.iteration, self.t = path, iteration, t0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def __call__(self, step: str, event: str, **data: object) -> None:
        self.t += 0.5
        self.f.write(json.dumps({"t": self.t, "iter": self.iteration, "step": step, "event": event, **data}) + "\n")

    def close(self) -> None:
        self.f.close()


def write_prune(layout: CampaignLayout, n: int, ev: Events, maps: dict[str, np.ndarray], ppl_pruned: float,
                row: dict) -> None:
    ev("prune", "start")
    ev("prune", "log", level="info", msg=f"calibrating on 4 windows of 64 tokens (iteration {n})")
    for i in range(LAYERS):
        for kind, _ in KINDS:
            name = f"model.layers.{i}.{kind}"
            c = comp_of(maps[name])
            ev("prune", "layer", name=name, dense=c["dense"], semi=c["semi"], topk=c["topk"], sparsity=c["sparsity"])
        ev("prune", "progress", done=i + 1, total=LAYERS, unit="layers")
    ev("prune", "metric", name="ppl_pruned", value=ppl_pruned)
    ev("prune", "end", status="ok")
    save_file(maps, str(layout.tiers(n)), metadata={"block_size": "16", "topk_per_block": "10", "iteration": str(n)})
    per_layer = {name: comp_of(m) for name, m in maps.items()}
    flat = np.concatenate([m.ravel() for m in maps.values()])
    comp = comp_of(flat)
    metrics = {"iteration": n, "composition": {k: comp[k] for k in ("dense", "semi", "topk")},
               "sparsity": comp["sparsity"], "per_layer": per_layer, "ppl_pruned": ppl_pruned, "ppl": None,
               "mask_violations": None, "timings": {"prune_s": 3.0}, "schedule_row": row}
    layout.metrics(n).write_text(json.dumps(metrics, indent=1), encoding="utf-8")


def write_finetune(ev: Events, steps: int, total: int, first_loss: float) -> None:
    ev("finetune", "start")
    for s in range(steps):
        # a decaying, slightly wavy loss: deterministic, and shaped like a real one
        ev("finetune", "metric", name="loss", value=round(first_loss * (0.6 + 0.4 * math.exp(-s / 6))
                                                          + 0.05 * math.sin(s), 4), opt_step=s + 1)
        ev("finetune", "progress", done=s + 1, total=total, unit="steps")
    ev("finetune", "log", level="info", msg=f"step {steps}/{total}")


def write_reference(layout: CampaignLayout, ppl: float, interval: list[float]) -> None:
    """Iteration 0 as the eval step leaves it: its events and iter0/metrics.json."""
    ev = Events(layout.events(0), 0, T0 + 500)
    ev("eval", "start")
    ev("eval", "progress", done=4, total=4, unit="windows")
    ev("eval", "metric", name="ppl", value=ppl)
    ev("eval", "end", status="ok")
    ev.close()
    metrics = {"iteration": 0, "reference": True, "composition": None, "sparsity": 0.0, "ppl_pruned": None,
               "ppl": ppl, "ppl_interval": interval, "timings": {"eval_s": 2.0}}
    layout.metrics(0).write_text(json.dumps(metrics, indent=1), encoding="utf-8")


def demo_campaign(base: Path, name: str = "demo") -> CampaignLayout:
    layout = make_campaign(base, name=name)
    schedule = parse_schedule(layout.schedule.read_text())
    write_reference(layout, 30.25, [28.5, 32.1])
    ppl = {1: (48.25, 41.5), 2: (63.75, None)}
    for n in (1, 2):
        r = schedule.row(n)
        row = {k: getattr(r, k) for k in ("dense", "mid_2_4", "topk", "dense_to_2_4", "mid_2_4_to_topk", "epochs")}
        ev = Events(layout.events(n), n, T0 + 1000 * n)
        write_prune(layout, n, ev, tier_maps(r.mid_2_4, r.topk), ppl[n][0], row)
        if n == 1:
            write_finetune(ev, 16, 16, 4.2)
            ev("finetune", "end", status="ok")
            model = layout.model(1)
            model.mkdir(parents=True, exist_ok=True)
            ledger = {"epochs": 2, "steps": 16, "final_loss": 2.6, "mask_violations": 0}
            (model / "finetune.json").write_text(json.dumps(ledger))
            ev("eval", "start")
            ev("eval", "progress", done=4, total=4, unit="windows")
            ev("eval", "metric", name="ppl", value=ppl[1][1])
            ev("eval", "end", status="ok")
            metrics = json.loads(layout.metrics(1).read_text())
            metrics.update(ppl=ppl[1][1], ppl_interval=[39.2, 43.9], mask_violations=0, finetune=ledger)
            layout.metrics(1).write_text(json.dumps(metrics, indent=1), encoding="utf-8")
        else:
            write_finetune(ev, 24, 40, 3.1)  # killed here: no end event
        ev.close()
    return layout


def recorded_stream(iteration: int, total: int = 100_000, t0: float = T0 + 50_000) -> list[str]:
    """`total` event lines of one whole iteration at a high rate, as a fast step would write them:
    a prune of 30 layers x 7 matrices, a fine-tune reporting loss and progress every step (the bulk),
    an eval. The last events are the fine-tune's end, the eval's and its ppl."""
    out: list[str] = []
    t = t0

    def ev(step: str, event: str, **data: object) -> None:
        nonlocal t
        t += 0.001
        out.append(json.dumps({"t": round(t, 3), "iter": iteration, "step": step, "event": event, **data}))

    ev("prune", "start")
    for layer in range(30):
        for kind, _ in KINDS:
            ev("prune", "layer", name=f"model.layers.{layer}.{kind}", dense=0.5, semi=0.3, topk=0.2,
               sparsity=0.3 * S_SEMI + 0.2 * S_TOPK)
        ev("prune", "progress", done=layer + 1, total=30, unit="layers")
    ev("prune", "metric", name="ppl_pruned", value=90.0)
    ev("prune", "end", status="ok")
    ev("finetune", "start")
    tail = 6  # finetune end, eval start, progress, metric, end... counted below
    steps = (total - len(out) - tail) // 2
    for s in range(steps):
        ev("finetune", "metric", name="loss", value=round(4.0 - 2.0 * s / steps, 6))
        ev("finetune", "progress", done=s + 1, total=steps, unit="steps")
    while len(out) < total - tail + 1:
        ev("finetune", "log", level="info", msg="checkpoint written")
    ev("finetune", "end", status="ok")
    ev("eval", "start")
    ev("eval", "progress", done=4, total=4, unit="windows")
    ev("eval", "metric", name="ppl", value=70.5)
    ev("eval", "end", status="ok")
    assert len(out) == total, len(out)
    return out
