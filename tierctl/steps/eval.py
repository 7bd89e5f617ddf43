"""The eval step: perplexity (with its interval) and zero-shot tasks of iter<N>/model, into iter<N>/metrics.json.

Runs after the fine-tune of iteration N (iter<N>/model/finetune.json exists, also when the
fine-tune was skipped with 0 epochs), so `ppl` always means "after fine-tune". Events: start,
progress per batch of windows, metric ppl, (metric zeroshot_acc), end.

Iteration 0 is the reference: `--iter 0` measures the campaign's starting model ([model] name) on the
same evaluation windows and [eval] tasks as every iteration, before anything is pruned, and writes
iter0/metrics.json in one go (`"reference": true`, ppl, ppl_interval, eval, zeroshot, sparsity, timings).
It is done <=> that file holds a ppl; nothing else is written for it (the model is the campaign's own).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tierctl.core.atomic import remove_path
from tierctl.core.metrics import Metrics, read_metrics, update_metrics, write_metrics
from tierctl.errors import BadInput
from tierctl.steps.common import StepContext, measure_ppl, measure_zero_shot, require_model, run_step

STEP = "eval"


def load(ctx: StepContext, spec: str) -> tuple[Any, Any, Any, float]:
    """(model, tokenizer, layers_on, seconds), placed as the prune step places it ([model] offload)."""
    from tierctl.lm.offload import load_placed

    cfg = ctx.config
    t0 = time.perf_counter()
    model, tokenizer, layers_on = load_placed(spec, ctx.device, cfg.model.dtype, cfg.model.trust_remote_code,
                                              cfg.model.offload)
    load_s = time.perf_counter() - t0
    where = f"cpu, one decoder layer at a time on {layers_on}" if layers_on is not None else \
        f"{next(model.parameters()).device}"
    ctx.sink.log(f"loaded {spec} on {where} in {load_s:.1f}s")
    return model, tokenizer, layers_on, load_s


def reference(ctx: StepContext) -> None:
    """Iteration 0: the starting model, measured once, on exactly what the iterations are measured on."""
    from tierctl.lm.models import prunable_linears
    from tierctl.lm.prune import count_zeros

    layout, cfg = ctx.layout, ctx.config
    remove_path(layout.metrics(0))  # a redo is not done while it runs
    t_step = time.perf_counter()
    model, tokenizer, layers_on, load_s = load(ctx, cfg.model.name)
    linears = prunable_linears(model)
    zeros = sum(count_zeros(lin.weight) for lin in linears.values())
    weights = sum(lin.weight.numel() for lin in linears.values())
    result = measure_ppl(ctx, model, tokenizer, "ppl", layers_on=layers_on)
    t0 = time.perf_counter()
    zeroshot = measure_zero_shot(ctx, model, tokenizer, layers_on)
    zeroshot_s = time.perf_counter() - t0
    metrics = Metrics(
        iteration=0,
        reference=True,
        model=cfg.model.name,
        method=None,
        composition=None,
        sparsity=zeros / weights if weights else 0.0,
        ppl_pruned=None,
        ppl_pruned_interval=None,
        ppl=result.ppl,
        ppl_interval=result.interval,
        eval=result.info,
        zeroshot=zeroshot,
        dtype=cfg.model.dtype,
        offload="layers" if layers_on is not None else "never",
        timings={"eval_load_s": round(load_s, 3), "eval_s": round(result.seconds, 3),
                 "step_s": round(time.perf_counter() - t_step, 3),
                 **({"zeroshot_s": round(zeroshot_s, 3)} if zeroshot is not None else {})},
    )
    write_metrics(layout.metrics(0), metrics)
    lo_hi = f" [{result.interval[0]:.3f}, {result.interval[1]:.3f}]" if result.interval else ""
    ctx.sink.log(f"reference ppl {result.ppl:.3f}{lo_hi}")


def body(ctx: StepContext) -> None:
    n = ctx.iteration
    if n == 0:
        reference(ctx)
        return
    model_dir = require_model(ctx)
    if not ctx.layout.metrics(n).is_file():
        raise BadInput(f"{ctx.layout.metrics(n)}: missing: the prune step of iteration {n} has not finished")
    if not (model_dir / "finetune.json").is_file():
        raise BadInput(f"{model_dir / 'finetune.json'}: missing: the fine-tune step of iteration {n} has not finished")
    read_metrics(ctx.layout.metrics(n))  # refuse a corrupt metrics.json before spending time on the model

    # Same placement rule as the prune step ([model] offload), so a model the prune could stream
    # layer by layer is evaluated the same way.
    model, tokenizer, layers_on, load_s = load(ctx, str(model_dir))
    result = measure_ppl(ctx, model, tokenizer, "ppl", layers_on=layers_on)
    t0 = time.perf_counter()
    zeroshot = measure_zero_shot(ctx, model, tokenizer, layers_on)
    timings = {"eval_s": round(result.seconds, 3), "eval_load_s": round(load_s, 3)}
    if zeroshot is not None:
        timings["zeroshot_s"] = round(time.perf_counter() - t0, 3)
    # zeroshot first, ppl last in the same write: the step is done <=> ppl is set, with everything else.
    update_metrics(ctx.layout.metrics(n), zeroshot=zeroshot, ppl=result.ppl, ppl_interval=result.interval,
                   eval=result.info, timings=timings)


def main(argv: list[str]) -> int:
    return run_step(STEP, body, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
