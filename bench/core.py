"""Speed of the tier algebra on one 4096 x 11008 float32 matrix (a Llama-7B MLP shape), in one run.

Prints two ratios:
1. block_scores vs a per-block Python loop (the prototype's way). The loop runs on a subset of blocks and is
   extrapolated linearly to all blocks (each iteration does the same work, so that is fair).
2. one progressive_step from the seed schedule's iteration-1 tiers to its iteration-2 targets (dense .80,
   top-k .10) vs one elementwise pass `weight.abs() * norm` (the floor: every weight must be read once).
   Target: 5x or less.

Run: .venv/bin/python bench/core.py [--loop-blocks N] [--repeats N] [--device cpu|cuda] [--threads N] [--cpu-time]
On a shared, busy machine `--threads 1 --cpu-time` gives steadier ratios (process CPU time, one thread).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from tierctl.core.tiers import block_scores, composition, progressive_step

OUT, IN, BLOCK, K = 4096, 11008, 16, 10


def timed(fn: Callable[[], object], repeats: int, device: torch.device, clock: Callable[[], float]) -> float:
    """Median time of `repeats` calls after one warm-up call."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        sync()
        times.append(clock() - start)
    return statistics.median(times)


def loop_block_scores(weight: torch.Tensor, norm: torch.Tensor, blocks: list[tuple[int, int]]) -> list[float]:
    """The prototype: one small torch expression per block."""
    b = BLOCK
    return [float((weight[r * b:(r + 1) * b, c * b:(c + 1) * b].abs() * norm[c * b:(c + 1) * b]).sum())
            for r, c in blocks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loop-blocks", type=int, default=3000, help="blocks timed in the Python loop")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time instead of wall time")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.cpu_time else time.perf_counter

    g = torch.Generator().manual_seed(0)
    weight = torch.randn(OUT, IN, generator=g).to(device)
    norm = (torch.rand(IN, generator=g) * 2).to(device)
    start = torch.zeros(OUT // BLOCK, IN // BLOCK, dtype=torch.uint8)
    tiers1, keep1 = progressive_step(weight, norm, start, 0.90, 0.00)  # the seed's iteration 1
    w1 = weight * keep1
    del weight, keep1
    n_blocks = tiers1.numel()

    t_pass = timed(lambda: w1.abs() * norm, args.repeats, device, clock)
    t_step = timed(lambda: progressive_step(w1, norm, tiers1, 0.80, 0.10), args.repeats, device, clock)
    t_scores = timed(lambda: block_scores(w1, norm), args.repeats, device, clock)

    cols = IN // BLOCK
    subset = [(i // cols, i % cols) for i in range(0, n_blocks, max(1, n_blocks // args.loop_blocks))]
    subset = subset[: args.loop_blocks]
    t_loop_subset = timed(lambda: loop_block_scores(w1, norm, subset), 1, device, clock)
    t_loop = t_loop_subset * n_blocks / len(subset)

    tiers2, _ = progressive_step(w1, norm, tiers1, 0.80, 0.10)
    comp = composition(tiers2)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{'process CPU' if args.cpu_time else 'wall'} time; "
          f"weight {OUT}x{IN} float32, block {BLOCK}, k {K}, {n_blocks} blocks")
    print(f"iteration 2 composition: dense {comp['dense']:.4f} semi {comp['semi']:.4f} topk {comp['topk']:.4f}")
    print(f"elementwise pass |W|*norm      {t_pass * 1e3:9.1f} ms  (median of {args.repeats})")
    print(f"block_scores                   {t_scores * 1e3:9.1f} ms  = {t_scores / t_pass:5.2f}x the pass")
    print(f"progressive_step iter 1 -> 2   {t_step * 1e3:9.1f} ms  = {t_step / t_pass:5.2f}x the pass "
          f"(target <= 5x: {'met' if t_step <= 5 * t_pass else 'NOT met'})")
    print(f"per-block Python loop          {t_loop * 1e3:9.1f} ms  (timed on {len(subset)} blocks, "
          f"extrapolated to {n_blocks})")
    print(f"block_scores speed-up over the loop: {t_loop / t_scores:,.0f}x")


if __name__ == "__main__":
    main()
