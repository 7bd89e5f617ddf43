"""What masking costs during fine-tuning: tokens/s of masked vs unmasked training (target: <= 10%).

smollm2-135m, pruned once (half the blocks DENSE, a quarter SEMI, a quarter TOPK), trained with the
same data (pydoc train windows, seqlen 256, batch 2) by the same `finetune()` with its masks and
with none. After one warm-up round, rounds alternate masked / unmasked (and which goes first) so a
shared machine's load hits both alike; the first step of each round (optimizer state allocation)
is not timed. Also times the masking alone (grads *= keep, weights *= keep) per optimizer step,
which a loaded machine disturbs far less than whole training steps.
Run: .venv/bin/python bench/finetune.py [--device auto|cpu|cuda] [--steps 4] [--rounds 2] [--model M]
On a CPU a step of 512 tokens takes seconds (about 30 s on 2 busy cores): use a GPU, or --steps 2
--rounds 1 on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

TARGET = 0.10


def prune(model, block: int = 16, k: int = 10) -> dict:
    import torch

    from tierctl.core.tiers import progressive_step
    from tierctl.lm.models import prunable_linears

    g = torch.Generator().manual_seed(0)
    tiers = {}
    with torch.no_grad():
        for name, lin in prunable_linears(model).items():
            w = lin.weight
            norm = (torch.rand(w.shape[1], generator=g) + 0.5).to(w.device)
            start = torch.zeros(w.shape[0] // block, w.shape[1] // block, dtype=torch.uint8, device=w.device)
            new, keep = progressive_step(w, norm, start, 0.5, 0.25, block_size=block, k=k)
            w.mul_(keep.to(w.dtype))
            tiers[name] = new
    return tiers


def timed_round(model, windows, keep, steps: int, batch: int, seqlen: int) -> float:
    """Tokens/s of one finetune() call over `steps` optimizer steps, its first step not timed."""
    import torch

    from tierctl.lm.finetune import FinetuneSettings, finetune

    cuda = next(model.parameters()).device.type == "cuda"
    marks: list[float] = []

    def on_step(done: int) -> None:
        if cuda:
            torch.cuda.synchronize()
        marks.append(time.perf_counter())

    settings = FinetuneSettings(epochs=1, lr=1e-5, batch_size=batch, seqlen=seqlen, tokens_per_epoch=0,
                                warmup_ratio=0.0, log_every=10**9)
    finetune(model, windows[: (steps + 1) * batch], keep, settings, on_step=on_step)
    return steps * batch * seqlen / (marks[-1] - marks[0])


def time_masking(model, keep, repeats: int = 5) -> float:
    """Seconds per optimizer step spent masking (grads and weights), grads filled as after backward."""
    import torch

    from tierctl.lm.finetune import Masker

    masker = Masker(model, keep)
    for p in masker.params:
        p.grad = torch.ones_like(p)
    cuda = masker.params[0].device.type == "cuda"
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        masker.mask_grads()
        masker.mask_weights()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    for p in masker.params:
        p.grad = None
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=8, help="timed optimizer steps per round")
    ap.add_argument("--rounds", type=int, default=4, help="masked/unmasked round pairs")  # 2 x 4 steps: +-10%
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()

    from tierctl.lm.finetune import build_masks, train_windows
    from tierctl.lm.models import load_model
    from tierctl.lm.text import token_stream

    t = time.perf_counter()
    model, tok = load_model(args.model, device=args.device, dtype="float32")
    device = next(model.parameters()).device
    tiers = prune(model)
    keep = build_masks(model, tiers, 16)
    windows = train_windows(token_stream("pydoc", tok, "train"), args.seqlen)
    pruned = sum(int((~m).sum()) for m in keep.values()) / sum(m.numel() for m in keep.values())
    print(f"{args.model} on {device}: {len(keep)} masked matrices, {pruned:.1%} of their entries pruned; "
          f"batch {args.batch} x seqlen {args.seqlen}; setup {time.perf_counter() - t:.1f} s")

    timed_round(model, windows, keep, 1, args.batch, args.seqlen)  # warm-up: allocator, kernels, autograd
    masked, unmasked = [], []
    for r in range(args.rounds):
        # Alternate which goes first, so a drift in machine load does not favour one side.
        for use in ((keep, {}) if r % 2 == 0 else ({}, keep)):
            tps = timed_round(model, windows, use, args.steps, args.batch, args.seqlen)
            (masked if use else unmasked).append(tps)
        print(f"round {r + 1}: masked {masked[-1]:.0f} tok/s, unmasked {unmasked[-1]:.0f} tok/s")
    m, u = statistics.median(masked), statistics.median(unmasked)
    mask_s = time_masking(model, keep)
    step_s = args.batch * args.seqlen / u
    cost = 1 - m / u
    print(f"masked {m:.0f} tok/s, unmasked {u:.0f} tok/s: ratio masked/unmasked {m / u:.3f} "
          f"(cost {cost:+.1%}, target <= {TARGET:.0%}: {'ok' if cost <= TARGET else 'MISSED'})")
    print(f"masking alone: {mask_s * 1e3:.1f} ms per optimizer step = {mask_s / step_s:.1%} of an unmasked step")


if __name__ == "__main__":
    main()
