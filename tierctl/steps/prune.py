"""The prune step: `python -m tierctl.steps prune --campaign DIR --iter N [--device D]`.

Inputs: the base model of campaign.toml (iteration 1) or iter<N-1>/model; the tier maps of
iter<N-1>/tiers.safetensors (iteration 1: all DENSE); schedule row N's cumulative `dense` / `topk`;
calibration windows drawn from [data] calib (nsamples x seqlen, seed). The windows are the same in
every iteration (same source, seed and tokenizer): the schedule, not the data, changes between them.

Outputs, in this order (the step is done <=> metrics.json exists, so it comes last):
    iter<N>/tiers.safetensors      tier maps (progressive only: baselines have no tier map)
    iter<N>/act_norms.safetensors  float32 norm per prunable matrix, same keys
    iter<N>/keep.safetensors       the masks applied, 1 bit per weight, the input's name and the pruned
                                   model's sha256 (every method; the control's masks keep everything)
    iter<N>/model/                 the pruned model (atomic directory swap), dense or packed ([run] store)
    then ppl_pruned on the eval windows (the eval step's protocol), then iter<N>/metrics.json.

Wanda baselines ([prune] method wanda-unstructured | wanda-nm) write no tier map (their masks are
element-wise); metrics.json then has "method", "baseline" (its settings), "composition": null and
per_layer entries with "sparsity" only. A baseline iteration N > 1 re-applies the same one-shot mask
to iter<N-1>/model: the weights it pruned before score 0 and are chosen again, so the mask stays.

The control ([prune] method "none") prunes nothing: it writes the input model as iter<N>/model, no tier
map and no act_norms, and measures ppl_pruned (the input model's ppl), so its fine-tune is the only
change: the same machinery, schedule epochs and [finetune] budget as the campaign it controls.

[model] offload "layers" (or "auto" on CUDA when the parameters exceed ~70% of free device memory)
keeps the model on CPU and moves one decoder layer at a time to the device, for the prune and for
ppl_pruned (tierctl/lm/offload.py); metrics.json records "offload": "layers" | "never".

Refuses (BadInput, exit 2) before loading anything heavy when the previous tier map does not match
schedule row N-1 (the schedule was edited after that iteration ran), names a different block size,
or is missing.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import Any

from tierctl.core.atomic import atomic_write_safetensors, remove_path
from tierctl.core.metrics import Metrics, read_metrics, write_metrics
from tierctl.errors import BadInput, StepFailed
from tierctl.steps.common import StepContext, input_model_spec, measure_ppl, packing, run_step

STEP = "prune"
CONTROL = "none"  # [prune] method of the fine-tune-only control


def previous_tiers(ctx: StepContext) -> dict[str, Any] | None:
    """iter<N-1>'s tier maps, checked against campaign.toml and schedule row N-1; None for iteration 1."""
    from tierctl.core.tiermap_io import load_tiers
    from tierctl.lm.prune import check_history

    n, layout, t = ctx.iteration, ctx.layout, ctx.config.tiers
    if n == 1:
        return None
    path = layout.tiers(n - 1)
    if not path.is_file():
        raise BadInput(f"{path}: missing: iteration {n - 1} has no tier map (not run yet, or run by a Wanda "
                       f"baseline, which has none); progressive iteration {n} needs it")
    maps, meta = load_tiers(path)
    for key, want in (("block_size", t.block_size), ("topk_per_block", t.topk_per_block)):
        if key in meta and int(meta[key]) != want:
            raise BadInput(f"{path}: {key} {meta[key]} differs from [tiers] {key} {want} in {layout.config}")
    prev_row = ctx.schedule.row(n - 1)
    recorded = owl_record(ctx, n - 1)
    if recorded is not None:  # per-matrix counts differ from the row's by design: check the totals
        from tierctl.lm.allocation import check_totals

        check_totals(maps, prev_row.dense, prev_row.topk, recorded.get("blocks_off", {}), f"{path}",
                     f"{layout.schedule} row {n - 1}")
    else:
        check_history(maps, prev_row.dense, prev_row.topk, f"{path}", f"{layout.schedule} row {n - 1}")
    return maps


def owl_record(ctx: StepContext, n: int) -> dict[str, Any] | None:
    """metrics.json "allocation" of iteration n when it ran with allocation "owl"; None otherwise."""
    if n < 1:
        return None
    metrics = read_metrics(ctx.layout.metrics(n))
    record = metrics.allocation if metrics is not None else None
    return record if isinstance(record, dict) and record.get("method") == "owl" else None


def allocate(ctx: StepContext, model: Any, windows: Any, prev: dict[str, Any] | None,
             layers_on: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """OWL's per-matrix targets for this iteration, and the "allocation" record for metrics.json.

    The outlier ratios are measured once, by one extra pass through the model in the first OWL iteration,
    and reused from iter<N-1>/metrics.json afterwards (same owl_m and layer count), so every iteration
    shifts the layers by the same profile and no block is asked to come back up (lm/allocation.py).
    Returns ({"targets": ...} for progressive or {"sparsities": ...} for wanda-unstructured, record).
    """
    from tierctl.lm.allocation import (
        layer_index,
        layer_weights,
        matrix_blocks,
        outlier_ratios,
        progressive_targets,
        unstructured_sparsities,
    )
    from tierctl.lm.models import decoder_layers, prunable_linears
    from tierctl.lm.prune import PROGRESSIVE

    n, cfg = ctx.iteration, ctx.config
    p, d = cfg.prune, cfg.data
    layers, prefix = decoder_layers(model)
    before = owl_record(ctx, n - 1)
    t0 = time.perf_counter()
    if before is not None and before.get("m") == p.owl_m and len(before.get("layers", [])) == len(layers):
        ratios = [float(layer["outlier_ratio"]) for layer in before["layers"]]
        measured = int(before.get("ratios_from", n - 1))
        ctx.sink.log(f"owl: outlier ratios of iteration {measured} reused")
    else:
        ratios = outlier_ratios(model, windows, p.owl_m, d.batch_size, layers_on=layers_on)
        measured = n
        ctx.sink.log(f"owl: outlier ratios measured in {time.perf_counter() - t0:.1f}s (one pass, nothing pruned)")
    record: dict[str, Any] = {"method": "owl", "m": p.owl_m, "lambda": p.owl_lambda, "ratios_from": measured,
                              "ratios_s": round(time.perf_counter() - t0, 3)}
    if p.method == PROGRESSIVE:
        alloc = progressive_targets(matrix_blocks(model, prev, cfg.tiers.block_size), ratios, ctx.row.dense,
                                    ctx.row.topk, p.owl_lambda)
        dense = [layer["dense"] for layer in alloc.layers]
        ctx.sink.log(f"owl: dense {min(dense):.3f}..{max(dense):.3f} per layer (row {ctx.row.dense:g}); model-wide "
                     f"blocks off the uniform allocation: {alloc.blocks_off}")
        return {"targets": alloc.targets}, {**record, "layers": alloc.layers, "blocks_off": alloc.blocks_off}
    per_layer = unstructured_sparsities(layer_weights(model), ratios, p.sparsity, p.owl_lambda)
    sparsities = {name: per_layer[layer_index(name, prefix)] for name in prunable_linears(model)}
    rows = [{"layer": i, "outlier_ratio": r, "sparsity": s} for i, (r, s) in enumerate(zip(ratios, per_layer,
                                                                                        strict=True))]
    return {"sparsities": sparsities}, {**record, "layers": rows}


def check_full_block(linears: dict[str, Any], b: int, config_path: Any) -> None:
    """BadInput unless some matrix holds a full b x b block (else nothing can be pruned: 0/0/0)."""
    if not any(lin.out_features >= b and lin.in_features >= b for lin in linears.values()):
        raise BadInput(f"{config_path}: [tiers] block_size {b} leaves no full block in any matrix of the model")


def save_act_norms(path: Any, norms: dict[str, Any], metadata: dict[str, str]) -> None:
    atomic_write_safetensors(path, {k: v.float().contiguous() for k, v in norms.items()}, metadata)


def prune_violations(result: Any) -> int:
    """Tier-pattern violations of the pruned weights (must be 0); StepFailed names the first matrix."""
    for name, v in result.violations.items():
        if v:
            raise StepFailed(f"{name}: {v} groups or blocks break the pattern of their tier after pruning")
    return sum(result.violations.values())


def unpruned(model: Any) -> Any:
    """The control's PruneResult: nothing pruned, the base model's own zeros counted (usually none)."""
    import torch

    from tierctl.core.keepbits import pack_keep
    from tierctl.lm.models import prunable_linears
    from tierctl.lm.prune import PruneResult, count_zeros

    linears = prunable_linears(model)
    per_layer = {name: {"sparsity": count_zeros(lin.weight) / lin.weight.numel()} for name, lin in linears.items()}
    zeros = sum(count_zeros(lin.weight) for lin in linears.values())
    weights = sum(lin.weight.numel() for lin in linears.values())
    keep = {name: pack_keep(torch.ones(lin.weight.shape, dtype=torch.bool)) for name, lin in linears.items()}
    return PruneResult(CONTROL, {}, {}, per_layer, None, zeros / weights, None, zeros, weights,
                       {"calibrate_s": 0.0, "prune_s": 0.0}, keep=keep)


def keep_model(ctx: StepContext, model: Any, tokenizer: Any, result: Any, spec: str) -> None:
    """iter<N>/keep.safetensors (the applied masks, the input, the pruned model's sha256), then
    iter<N>/model, dense or packed ([run] store). The fine-tune replaces iter<N>/model; the keep file and
    the input model rebuild the pruned one for `--step finetune --force` (tierctl/steps/restore.py)."""
    from tierctl.lm.keep_file import model_sha256, write_keep
    from tierctl.lm.models import prunable_linears
    from tierctl.lm.prune import PROGRESSIVE
    from tierctl.lm.store import store_model

    layout, n = ctx.layout, ctx.iteration
    shapes = {name: list(lin.weight.shape) for name, lin in prunable_linears(model).items()}
    write_keep(layout.keep(n), result.keep, shapes, iteration=n, method=result.method,
               input_model=input_label(ctx, spec), dtype=ctx.config.model.dtype, sha256=model_sha256(model))
    store_model(model, tokenizer, layout.model(n), packing(ctx, result.tiers if result.method == PROGRESSIVE
                                                           else None))


def input_label(ctx: StepContext, spec: str) -> str:
    """How the keep file names the input: `iter<N-1>/model` (relative, so a fork's copy still reads right)
    or the [model] name of iteration 1."""
    return spec if ctx.iteration == 1 else f"{ctx.layout.model(ctx.iteration - 1).relative_to(ctx.layout.root)}"


def body(ctx: StepContext) -> None:
    from tierctl.core.tiermap_io import save_tiers
    from tierctl.lm.evaluate import max_positions
    from tierctl.lm.models import prunable_linears
    from tierctl.lm.offload import load_placed
    from tierctl.lm.prune import PROGRESSIVE, baseline_settings, prune_baseline, prune_model
    from tierctl.lm.text import calibration_windows, eval_windows, token_stream

    n, cfg, sink, layout, row = ctx.iteration, ctx.config, ctx.sink, ctx.layout, ctx.row
    method, b, k, d = cfg.prune.method, cfg.tiers.block_size, cfg.tiers.topk_per_block, cfg.data
    spec = input_model_spec(ctx)
    prev = previous_tiers(ctx) if method == PROGRESSIVE else None
    t_step = time.perf_counter()

    t0 = time.perf_counter()
    model, tokenizer, layers_on = load_placed(spec, ctx.device, cfg.model.dtype, cfg.model.trust_remote_code,
                                              cfg.model.offload)
    load_s = time.perf_counter() - t0
    device = layers_on if layers_on is not None else next(model.parameters()).device
    where = f"cpu, one decoder layer at a time on {device}" if layers_on is not None else f"{device}"
    sink.log(f"loaded {spec} on {where} ({cfg.model.dtype}) in {load_s:.1f}s")
    limit = max_positions(model)
    if limit is not None and d.seqlen > limit:
        raise BadInput(f"{layout.config}: [data] seqlen {d.seqlen} exceeds the model's max_position_embeddings {limit}")
    windows = calibration_windows(token_stream(d.calib, tokenizer, "train"), d.nsamples, d.seqlen, d.seed,
                                  what=f"train split of {d.calib}")
    # What needs the model is refused here, before anything is written: the iteration stays as it was.
    eval_windows(token_stream(d.eval, tokenizer, "eval"), d.seqlen, d.eval_windows,
                 what=f"evaluation split of {d.eval}")
    if method == PROGRESSIVE:
        check_full_block(prunable_linears(model), b, layout.config)
    # A rerun replaces the iteration: it is not done while its outputs are being rewritten.
    remove_path(layout.metrics(n))
    remove_path(layout.keep(n))  # an earlier run's masks: they no longer match what is rewritten

    baseline = None if method in (PROGRESSIVE, CONTROL) else \
        baseline_settings(method, cfg.prune.sparsity, cfg.prune.n, cfg.prune.m)
    per_matrix, allocation = ({}, {"method": "uniform"}) if cfg.prune.allocation == "uniform" or method == CONTROL \
        else allocate(ctx, model, windows, prev, layers_on)
    if method == CONTROL:
        sink.log("none: the fine-tune-only control, nothing pruned")
        result = unpruned(model)
    elif method == PROGRESSIVE:
        sink.log(f"progressive: dense {row.dense:g}, topk {row.topk:g} of the blocks of every matrix "
                 f"(from {'iter' + str(n - 1) + ' tiers' if prev else 'all dense'}; {allocation['method']})")
        result = prune_model(model, windows, prev, row.dense, row.topk, b, k, d.batch_size, sink=sink,
                             layers_on=layers_on, **per_matrix)
    else:
        sink.log(f"{method}: one-shot Wanda baseline {baseline} ({allocation['method']})")
        result = prune_baseline(model, windows, method, cfg.prune.sparsity, cfg.prune.n, cfg.prune.m,
                                d.batch_size, sink=sink, layers_on=layers_on, **per_matrix)
    violations = prune_violations(result)

    t0 = time.perf_counter()
    if method == PROGRESSIVE:
        save_tiers(layout.tiers(n), result.tiers, b, k, n)
    else:
        remove_path(layout.tiers(n))  # left by an earlier progressive run of this iteration
    calib = {"source": d.calib, "nsamples": d.nsamples, "seqlen": d.seqlen, "seed": d.seed,
             "batch_size": d.batch_size, "tokens": int(windows.numel())}
    if method == CONTROL:  # no statistics were collected: nothing was scored
        remove_path(layout.act_norms(n))
    else:
        save_act_norms(layout.act_norms(n), result.act_norms,
                       {"iteration": str(n), "method": method, **{key: str(v) for key, v in calib.items()}})
    keep_model(ctx, model, tokenizer, result, spec)
    save_s = time.perf_counter() - t0

    ev = measure_ppl(ctx, model, tokenizer, "ppl_pruned", layers_on=layers_on)
    metrics = Metrics(
        iteration=n,
        method=method,
        schedule_row=asdict(row),
        composition=result.composition,
        sparsity=result.sparsity,
        expected_sparsity=result.expected_sparsity,
        per_layer=result.per_layer,
        ppl_pruned=ev.ppl,
        ppl_pruned_interval=ev.interval,
        ppl=None,
        ppl_interval=None,
        mask_violations=None,
        prune_violations=violations if method == PROGRESSIVE else None,
        tiers={"block_size": b, "topk_per_block": k} if method == PROGRESSIVE else None,
        baseline=baseline,
        allocation=allocation,
        calibration=calib,
        eval=ev.info,
        device=str(device),
        offload="layers" if layers_on is not None else "never",
        dtype=cfg.model.dtype,
        timings={"load_s": round(load_s, 3), "calibrate_s": round(result.timings["calibrate_s"], 3),
                 "prune_s": round(result.timings["prune_s"], 3), "save_s": round(save_s, 3),
                 "ppl_pruned_s": round(ev.seconds, 3), "step_s": round(time.perf_counter() - t_step, 3)},
    )
    write_metrics(layout.metrics(n), metrics)
    sink.log(f"pruned to sparsity {result.sparsity:.4f}; ppl_pruned {ev.ppl:.3f}")


def main(argv: list[str]) -> int:
    return run_step(STEP, body, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
