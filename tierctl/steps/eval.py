"""The eval step: perplexity of iter<N>/model, written into iter<N>/metrics.json as `ppl`.

Runs after the fine-tune of iteration N (iter<N>/model/finetune.json exists, also when the
fine-tune was skipped with 0 epochs), so `ppl` always means "after fine-tune". Events: start,
progress per batch of windows, metric ppl, end.
"""

from __future__ import annotations

import sys
import time

from tierctl.errors import BadInput
from tierctl.steps.common import StepContext, measure_ppl, read_metrics, require_model, run_step, update_metrics

STEP = "eval"


def body(ctx: StepContext) -> None:
    from tierctl.lm.offload import load_placed

    n, cfg, sink = ctx.iteration, ctx.config, ctx.sink
    model_dir = require_model(ctx)
    if not ctx.layout.metrics(n).is_file():
        raise BadInput(f"{ctx.layout.metrics(n)}: missing: the prune step of iteration {n} has not finished")
    if not (model_dir / "finetune.json").is_file():
        raise BadInput(f"{model_dir / 'finetune.json'}: missing: the fine-tune step of iteration {n} has not finished")
    read_metrics(ctx.layout, n)  # refuse a corrupt metrics.json before spending time on the model

    t0 = time.perf_counter()
    # Same placement rule as the prune step ([model] offload), so a model the prune could stream
    # layer by layer is evaluated the same way.
    model, tokenizer, layers_on = load_placed(str(model_dir), ctx.device, cfg.model.dtype,
                                              cfg.model.trust_remote_code, cfg.model.offload)
    load_s = time.perf_counter() - t0
    where = f"cpu, one decoder layer at a time on {layers_on}" if layers_on is not None else \
        f"{next(model.parameters()).device}"
    sink.log(f"loaded {model_dir} on {where} in {load_s:.1f}s")

    result = measure_ppl(ctx, model, tokenizer, "ppl", layers_on=layers_on)
    update_metrics(ctx.layout, n, ppl=result.ppl, ppl_interval=result.interval, eval=result.info,
                   timings={"eval_s": round(result.seconds, 3), "eval_load_s": round(load_s, 3)})


def main(argv: list[str]) -> int:
    return run_step(STEP, body, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
