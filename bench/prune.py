"""Prune step speed and memory on smollm2-135m (issue 3, section 6), ratios measured in one run.

- time: one progressive iteration (`prune_model`: capture, two passes per decoder layer, masks) on
  16 windows of 512 pydoc tokens, model loading excluded, as a ratio to two plain forward passes of
  the same calibration windows through the same model in the same batches (Wanda's floor: one pass
  for statistics, one for the pruned outputs). Target: <= 1.3x.
- OWL (`[prune] allocation = "owl"`): the extra pass that measures the outlier ratios, as a ratio to
  the prune (paid once per campaign, in its first OWL iteration).
- memory: peak RSS of this process during the prune (the loaded model included; the peak is reset
  after the plain passes, whose [batch, 512, 49152] logits the prune never makes) against fp32 model
  size + 2 x the calibration activations [16, 512, hidden] + 1 GiB.

Run: .venv/bin/python bench/prune.py [--batch-size 4] [--nsamples 16] [--seqlen 512] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

TIME_TARGET = 1.3
GIB = 1024**3


def peak_rss_bytes() -> int:
    """VmHWM of this process (peak resident set), from /proc; falls back to getrusage."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is the prune's, not an earlier pass's."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--nsamples", type=int, default=16)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    import torch

    from tierctl.lm.models import load_model
    from tierctl.lm.prune import prune_model
    from tierctl.lm.text import calibration_windows, token_stream

    t0 = time.perf_counter()
    model, tok = load_model("smollm2-135m", device=args.device)
    load_s = time.perf_counter() - t0
    print(f"load_model(smollm2-135m): {load_s:.1f} s (excluded); torch threads {torch.get_num_threads()}")
    device = next(model.parameters()).device
    windows = calibration_windows(token_stream("pydoc", tok, "train"), args.nsamples, args.seqlen, seed=0)
    hidden = model.config.hidden_size
    with torch.no_grad():  # warm-up (kernel selection, allocator) without the lm_head's logits
        model.model(input_ids=windows[:1].to(device), use_cache=False)

    def two_plain_passes() -> tuple[float, float]:
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            for _ in range(2):
                for s in range(0, windows.shape[0], args.batch_size):
                    model(input_ids=windows[s:s + args.batch_size].to(device), use_cache=False)
        sync(device)
        return time.perf_counter() - t0, time.process_time() - c0

    # Plain passes before and after the prune (same cost: pruning zeroes weights, the matmuls stay dense),
    # so a change in the machine's load during the run biases neither side.
    before = two_plain_passes()
    reset = reset_peak_rss()
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    result = prune_model(model, windows, None, 0.90, 0.00, 16, 10, args.batch_size)  # schedule row 1
    sync(device)
    prune_s, prune_cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = peak_rss_bytes()
    after = two_plain_passes()
    # OWL's extra pass (allocation = "owl", first OWL iteration only): the outlier ratios of every layer
    # before pruning any. Same cost on the pruned model (dense matmuls), so it runs after the peak is read.
    from tierctl.lm.allocation import outlier_ratios

    sync(device)
    t0 = time.perf_counter()
    outlier_ratios(model, windows, 5.0, args.batch_size)
    sync(device)
    owl_s = time.perf_counter() - t0
    floor_s, floor_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2

    params = sum(p.numel() for p in model.parameters())
    model_bytes = params * 4
    acts = args.nsamples * args.seqlen * hidden * 4
    budget = model_bytes + 2 * acts + GIB
    t = result.timings
    print(f"windows {args.nsamples} x {args.seqlen} in batches of {args.batch_size} on {device}")
    print(f"prune_model: {prune_s:.2f} s (forward passes {t['calibrate_s']:.2f} s, masks {t['prune_s']:.2f} s, "
          f"other {prune_s - t['calibrate_s'] - t['prune_s']:.2f} s); sparsity {result.sparsity:.4f}")
    print(f"two plain forward passes: {floor_s:.2f} s (mean of {before[0]:.2f} s before and {after[0]:.2f} s after)")
    ratio = prune_s / floor_s
    print(f"time ratio: {ratio:.2f}x (target <= {TIME_TARGET}x: {'ok' if ratio <= TIME_TARGET else 'MISSED'})")
    print(f"owl outlier-ratio pass: {owl_s:.2f} s = {owl_s / prune_s:.2f}x the prune "
          f"({owl_s / floor_s:.2f}x two plain passes); first OWL iteration only")
    # CPU time of this process (all threads), for reference: on a busy machine, idle OpenMP workers spin.
    print(f"cpu-time ratio: {prune_cpu / floor_cpu:.2f}x (prune {prune_cpu:.1f} s, two passes {floor_cpu:.1f} s)")
    note = "" if reset else " (peak not resettable here: includes the plain passes before)"
    print(f"peak RSS {peak / GIB:.2f} GiB{note}; budget {budget / GIB:.2f} GiB = fp32 model {model_bytes / GIB:.2f} "
          f"+ 2 x activations {acts / GIB:.3f} + 1")
    print(f"memory ratio: {peak / budget:.2f}x of budget ({'ok' if peak <= budget else 'MISSED'})")


if __name__ == "__main__":
    main()
