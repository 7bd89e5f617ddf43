"""Uniform vs OWL allocation on smollm2-135m, one-shot (no fine-tune), perplexity on the same windows.

Rows: progressive one-shot from all DENSE to the seed schedule's last row (dense 0.35, 2:4 0.45,
top-k 0.20) and to a harsher row (0.15 / 0.45 / 0.40); wanda-unstructured at 50% and 70%. Each with
`allocation` uniform and owl (owl_m 5, owl_lambda 0.08, OWL's published setting). Calibration: 16 pydoc
train windows x 256 tokens (seed 0); evaluation: the first 16 pydoc eval windows x 256 tokens; the same
for every row. The outlier ratios are measured once on the unpruned model and shared by the owl rows.
Perplexity is deterministic (machine load changes only the times).

Run: .venv/bin/python bench/allocation.py [--nsamples 16] [--seqlen 256] [--eval-windows 16] [--lam 0.08]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nsamples", type=int, default=16)
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--eval-windows", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--m", type=float, default=5.0)
    p.add_argument("--lam", type=float, default=0.08)
    p.add_argument("--only", choices=("progressive", "wanda"), default=None, help="run one half of the rows")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # on a crowded machine, spinning OpenMP workers waste most of the CPU

    from tierctl.lm.allocation import (
        layer_index,
        layer_weights,
        matrix_blocks,
        outlier_ratios,
        progressive_targets,
        unstructured_sparsities,
    )
    from tierctl.lm.evaluate import perplexity
    from tierctl.lm.models import decoder_layers, load_model, prunable_linears
    from tierctl.lm.prune import prune_baseline, prune_model
    from tierctl.lm.text import calibration_windows, eval_windows, token_stream

    model, tok = load_model("smollm2-135m", device="cpu")
    calib = calibration_windows(token_stream("pydoc", tok, "train"), args.nsamples, args.seqlen, seed=0)
    evalw = eval_windows(token_stream("pydoc", tok, "eval"), args.seqlen, args.eval_windows)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    _, prefix = decoder_layers(model)
    print(f"calibration {args.nsamples} x {args.seqlen}, evaluation {evalw.shape[0]} x {args.seqlen} (pydoc); "
          f"owl_m {args.m}, owl_lambda {args.lam}")

    t0 = time.perf_counter()
    ratios = outlier_ratios(model, calib, args.m, args.batch_size)
    print(f"outlier ratios ({time.perf_counter() - t0:.1f} s): " + " ".join(f"{r:.4f}" for r in ratios), flush=True)
    print(f"dense ppl: {perplexity(model, evalw, args.batch_size):.3f}", flush=True)
    print("| setting | uniform ppl | owl ppl | sparsity (both) | owl layers' range |")
    print("| --- | --- | --- | --- | --- |")

    def progressive(dense: float, topk: float, owl: bool) -> tuple[float, float, str]:
        model.load_state_dict(original)
        targets, spread = None, ""
        if owl:
            alloc = progressive_targets(matrix_blocks(model, None, 16), ratios, dense, topk, args.lam)
            targets = alloc.targets
            ds = [layer["dense"] for layer in alloc.layers]
            spread = f"dense {min(ds):.3f}..{max(ds):.3f}, blocks off {alloc.blocks_off}"
        r = prune_model(model, calib, None, dense, topk, 16, 10, args.batch_size, targets=targets)
        return perplexity(model, evalw, args.batch_size), r.sparsity, spread

    def unstructured(sparsity: float, owl: bool) -> tuple[float, float, str]:
        model.load_state_dict(original)
        per, spread = None, ""
        if owl:
            layers = unstructured_sparsities(layer_weights(model), ratios, sparsity, args.lam)
            per = {n: layers[layer_index(n, prefix)] for n in prunable_linears(model)}
            spread = f"sparsity {min(layers):.3f}..{max(layers):.3f}"
        r = prune_baseline(model, calib, "wanda-unstructured", sparsity, batch_size=args.batch_size, sparsities=per)
        return perplexity(model, evalw, args.batch_size), r.sparsity, spread

    cases = [("progressive 35/45/20 (dense/2:4/top-k)", lambda owl: progressive(0.35, 0.20, owl)),
             ("progressive 15/45/40", lambda owl: progressive(0.15, 0.40, owl)),
             ("wanda-unstructured 50%", lambda owl: unstructured(0.5, owl)),
             ("wanda-unstructured 70%", lambda owl: unstructured(0.7, owl))]
    if args.only is not None:
        cases = [c for c in cases if c[0].startswith(args.only)]
    for name, run in cases:
        t0 = time.perf_counter()
        u_ppl, u_sp, _ = run(False)
        o_ppl, o_sp, spread = run(True)
        print(f"| {name} | {u_ppl:.2f} | {o_ppl:.2f} | {u_sp:.4f} / {o_sp:.4f} | {spread} |"
              f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
