"""The fine-tune step: masked fine-tune of iter<N>/model, then the sparsity ledger.

`python -m tierctl.steps finetune --campaign DIR --iter N`, alone or under torchrun (DDP, or FSDP2
with [run] strategy = "fsdp2"). Reads iter<N>/model (the pruned model, dense or packed: [run] store)
and iter<N>/tiers.safetensors, derives the keep masks from them (never stored), and trains for the
schedule row's epochs on the training split of [data] calib, resuming from iter<N>/finetune_ckpt when a
kill left one. The fine-tuned model is written dense or packed as [run] store says.

Done <=> iter<N>/model/finetune.json exists. The fine-tuned model and its finetune.json (the ledger)
are written in one atomic directory swap, and only after the ledger check passed on the weights as
saved: every pruned entry is zero and every SEMI / TOPK block keeps its pattern. A violation fails
the step naming the matrix and leaves the pruned model in place. Then the ledger is merged into
metrics.json (mask_violations, finetune, timings.finetune_s) and the checkpoint removed. A second
run of a done iteration only merges the ledger again. Epochs 0 writes only finetune.json.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from tierctl.core.atomic import atomic_dir, atomic_write_json, remove_path
from tierctl.core.metrics import read_metrics, update_metrics
from tierctl.core.vocab import TIER_KEYS
from tierctl.errors import BadInput, StepFailed
from tierctl.steps.common import StepContext, packing, require_model, run_step

STEP = "finetune"
LEDGER = "finetune.json"


def merge_ledger(ctx: StepContext, ledger: dict[str, Any]) -> None:
    update_metrics(ctx.layout.metrics(ctx.iteration), mask_violations=ledger["mask_violations"], finetune=ledger,
                   timings={"finetune_s": ledger["seconds"]})


def input_identity(model_dir: Path, tiers_path: Path | None) -> dict[str, Any]:
    """What a resume checkpoint must have been made from: the tier maps (hashed, they are small)
    and the pruned model's weight files (by name and size; hashing gigabytes costs minutes)."""
    files = sorted((p.name, p.stat().st_size) for p in model_dir.glob("*.safetensors"))
    tiers_hash = hashlib.sha256(tiers_path.read_bytes()).hexdigest() if tiers_path is not None else None
    return {"tiers_sha256": tiers_hash, "model_files": files}


def dense_map(shape: Any, block: int) -> Any:
    import torch

    return torch.zeros(shape[0] // block, shape[1] // block, dtype=torch.uint8)


def ledger_of(weights: dict[str, Any], tiers: dict[str, Any], keep: dict[str, Any], block: int, k: int,
              **fields: Any) -> dict[str, Any]:
    """The ledger of finetune.json; raises StepFailed naming the first matrix that breaks its masks."""
    from tierctl.core.tiers import composition
    from tierctl.lm.finetune import mask_violations

    bad = mask_violations(weights, tiers, keep, block, k)
    for name, v in bad.items():
        if v["revived"] or v["tier"]:
            raise StepFailed(f"mask violation in {name}: {v['revived']} pruned entries are non-zero, "
                             f"{v['tier']} tier-pattern violations after fine-tune")
    zeros = sum(int((weights[n] == 0).sum()) for n in keep)
    total = sum(weights[n].numel() for n in keep)
    comps = [composition(tiers[n]) for n in keep]
    blocks = sum(c["blocks"] for c in comps)
    comp = {t: sum(c[t] * c["blocks"] for c in comps) / blocks if blocks else 0.0 for t in TIER_KEYS}
    return {**fields, "mask_violations": sum(v["revived"] for v in bad.values()),
            "tier_violations": sum(v["tier"] for v in bad.values()),
            "composition": comp, "sparsity": zeros / total if total else 0.0}


def saved_weights(model_dir: Path, names: list[str]) -> dict[str, Any]:
    """The prunable weights as written to disk, dense or packed (so the ledger checks the files, not memory)."""
    from tierctl.lm.store import stored_tensors

    want = {f"{n}.weight": n for n in names}
    out = {want[key]: t.float() for key, t in stored_tensors(model_dir).items() if key in want}
    missing = [n for n in names if n not in out]
    if missing:
        raise StepFailed(f"{model_dir}: saved model lacks {missing[0]}.weight")
    return out


def settings_for(finetune: Any, row: Any) -> Any:
    """FinetuneSettings of one iteration: [finetune] of campaign.toml, the row's epochs, and the row's
    `lr` / `tokens_per_epoch` where its cells are not blank (schedule knobs)."""
    import dataclasses

    from tierctl.core.schedule_knobs import effective
    from tierctl.lm.finetune import FinetuneSettings

    return dataclasses.replace(FinetuneSettings.from_config(finetune, row.epochs), **effective(row, finetune))


def body(ctx: StepContext) -> None:
    from tierctl.core.tiermap_io import load_tiers
    from tierctl.lm.finetune import build_masks, finetune, train_windows
    from tierctl.lm.finetune_dist import close, gather_state_dict, init_dist
    from tierctl.lm.models import load_model, resolve_device, torch_dtype
    from tierctl.lm.store import write_model
    from tierctl.lm.text import token_stream

    n, cfg, sink, layout = ctx.iteration, ctx.config, ctx.sink, ctx.layout
    model_dir = require_model(ctx)
    if not layout.metrics(n).is_file():
        raise BadInput(f"{layout.metrics(n)}: missing: the prune step of iteration {n} has not finished")
    metrics = read_metrics(layout.metrics(n))  # a corrupt metrics.json fails now
    method = (metrics.method if metrics is not None else None) or "progressive"
    ckpt_dir = layout.finetune_checkpoint(n)
    if (model_dir / LEDGER).is_file():
        ledger = json.loads((model_dir / LEDGER).read_text(encoding="utf-8"))
        if ctx.is_main:
            merge_ledger(ctx, ledger)
            remove_path(ckpt_dir)
        sink.log(f"iteration {n} is already fine-tuned ({model_dir / LEDGER}); ledger merged into metrics.json")
        return

    baseline = method != "progressive"
    if baseline:  # one-shot Wanda baselines and the control have element-wise masks and no tier map
        tiers, block, k = None, cfg.tiers.block_size, cfg.tiers.topk_per_block
    else:
        tiers, meta = load_tiers(layout.tiers(n))
        block, k = int(meta["block_size"]), int(meta["topk_per_block"])
    settings = settings_for(cfg.finetune, ctx.row)
    d = init_dist(resolve_device(ctx.device), cfg.run.strategy)
    try:
        t0 = time.perf_counter()
        # Master weights in float32 whatever the campaign's dtype; FSDP2 shards from the CPU copy.
        load_on = "cpu" if d.strategy == "fsdp2" else str(d.device)
        model, tokenizer = load_model(str(model_dir), device=load_on, dtype="float32",
                                      trust_remote_code=cfg.model.trust_remote_code)
        if tiers is None:
            # The mask is the pruned model's zeros; all-DENSE maps carry no block pattern to check.
            # The control (method "none") pruned nothing and holds nothing: a weight that happens to be
            # zero in the base model is free to move, as in a plain fine-tune.
            linears = _linears(model)
            keep = {name: (lin.weight.detach().cpu() != 0) | (method == "none") for name, lin in linears.items()}
            tiers = {name: dense_map(lin.weight.shape, block) for name, lin in linears.items()}
        else:
            keep = build_masks(model, tiers, block)
        sink.log(f"loaded {model_dir} in {time.perf_counter() - t0:.1f}s ({d.world} process(es), {d.strategy}, "
                 f"{d.device})")
        if settings.epochs == 0:
            if ctx.is_main:
                weights = {name: lin.weight.detach().float().cpu() for name, lin in _linears(model).items()}
                ledger = ledger_of(weights, tiers, keep, block, k, epochs=0, skipped=True, steps=0, tokens=0,
                                   final_loss=None, tokens_per_s=0.0, seconds=0.0)
                atomic_write_json(model_dir / LEDGER, ledger)
                merge_ledger(ctx, ledger)
            return

        windows = train_windows(token_stream(cfg.data.calib, tokenizer, "train"), settings.seqlen)
        result = finetune(model, windows, keep, settings, dist=d, checkpoint=ckpt_dir,
                          identity=input_identity(model_dir, None if baseline else layout.tiers(n)),
                          sink=sink)
        state = gather_state_dict(model, d, torch_dtype(cfg.model.dtype))  # collective under FSDP2
        if not ctx.is_main:
            return
        positive_zeros(state)
        fields = {"epochs": settings.epochs, "steps": result.steps, "tokens": result.tokens,
                  "final_loss": result.final_loss, "tokens_per_s": round(result.tokens_per_s, 1),
                  "seconds": round(result.seconds, 3), "resumed_from": result.resumed_from,
                  "processes": d.world, "strategy": d.strategy, "lr": settings.lr,
                  "tokens_per_epoch": settings.tokens_per_epoch,
                  "global_batch": settings.batch_size * settings.grad_accum * d.world, "seqlen": settings.seqlen}
        with atomic_dir(model_dir) as tmp:  # one swap: the fine-tuned model and its ledger appear together
            model.config.dtype = torch_dtype(cfg.model.dtype)
            write_model(model, tokenizer, tmp, packing(ctx, None if baseline else tiers), state_dict=state)
            ledger = ledger_of(saved_weights(tmp, list(keep)), tiers, keep, block, k, **fields)
            atomic_write_json(tmp / LEDGER, ledger)
        del state
        merge_ledger(ctx, ledger)
        remove_path(ckpt_dir)
        sink.log(f"fine-tuned {result.steps} steps, {result.tokens} tokens, final loss {result.final_loss:.4f}")
    finally:
        close(d)


def positive_zeros(state: dict[str, Any]) -> None:
    """Every -0.0 of the floating tensors made +0.0, in place (x + 0.0 changes nothing else).

    The masks are held by multiplication after every optimizer step, which leaves -0.0 where a weight
    was negative; saved as +0.0, the fine-tuned model is bit for bit what its packed form gives back.
    """
    import torch

    floats = [t for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if floats:
        with torch.no_grad():  # the state may hold the model's own parameters
            torch._foreach_add_(floats, 0.0)


def _linears(model: Any) -> dict[str, Any]:
    from tierctl.lm.models import prunable_linears

    return prunable_linears(model)


def main(argv: list[str]) -> int:
    return run_step(STEP, body, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
