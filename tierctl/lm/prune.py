"""One prune step over a model: progressive three-tier (docs/tiers.md) or a one-shot Wanda baseline.

Both run the same sequential, layer-wise loop (Wanda; docs/tiers.md):

    capture the inputs of decoder layer 0 (and every keyword argument the model passes to its layers)
    for each decoder layer i:
        pass 1: run layer i over the calibration batch with hooks -> norm of every prunable Linear's input
        choose the masks of layer i's matrices from |W| * norm, and apply them in place (W *= keep)
        pass 2: run the pruned layer i -> the inputs of layer i + 1

so the statistics of layer i see the outputs of layers 0..i-1 already pruned in this step.

Methods:
- `progressive`: `progressive_step` on every matrix towards the schedule row's cumulative `dense` and
  `topk` fractions, starting from the previous tier map (all DENSE when there is none). Returns the
  new tier maps.
- `wanda-unstructured`: the Wanda paper's mask, each output row separately at ratio `sparsity`.
- `wanda-nm`: n:m along the input dimension over whole matrices (2:4, 4:8).
  Baselines have no tier map: their masks are element-wise, and a tier map would claim block
  structure they don't have. Their result carries the measured sparsity per matrix, no composition.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tierctl.core.events import EventSink
from tierctl.core.keepbits import pack_keep
from tierctl.core.progress import ProgressMeter
from tierctl.core.vocab import TIER_KEYS
from tierctl.lm.calibrate import accumulate_norms, capture_inputs, model_device, run_layer
from tierctl.lm.models import decoder_layers, prunable_linears
from tierctl.lm.offload import CPU, Place, outer_on, place_module

PROGRESSIVE = "progressive"
BASELINES = ("wanda-unstructured", "wanda-nm")
METHODS = (PROGRESSIVE, *BASELINES)


@dataclass
class PruneResult:
    """What a prune step produced. Tensors are on CPU; dicts are ordered layer by layer."""

    method: str
    tiers: dict[str, torch.Tensor]  # name -> uint8 [out // b, in // b]; empty for baselines
    act_norms: dict[str, torch.Tensor]  # name -> float32 [in]
    per_layer: dict[str, dict[str, float]]  # name -> {dense, semi, topk, sparsity} ({sparsity} for baselines)
    composition: dict[str, float] | None  # block-weighted {dense, semi, topk} over all matrices; None for baselines
    sparsity: float  # measured fraction of zero weights over all prunable matrices
    expected_sparsity: float | None  # what the composition implies (partial blocks dense); None for baselines
    zeros: int = 0
    weights: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # calibrate_s (forward passes), prune_s (masks)
    violations: dict[str, int] = field(default_factory=dict)  # name -> count_violations after pruning (all 0)
    keep: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> the applied mask's bits (core/keepbits.py)


# One matrix's mask selection: (name, linear, norm [in] on the device) -> (per_layer entry, tier map | None).
Selector = Callable[[str, nn.Linear, torch.Tensor], tuple[dict[str, float], torch.Tensor | None]]


def _sync(device: torch.device) -> None:
    """Make wall-clock timings honest on CUDA (kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def single_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run mask selection on one intra-op thread on CPU.

    It is dozens of small elementwise ops per matrix (< 1M entries for a 135M model). Measured on
    smollm2-135m on a busy 2-core machine: 3 s on one thread, 39 s wall (10 s CPU, spinning) on two,
    because every op waits for a descheduled worker. The forward passes keep every thread.
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def apply_keep(weight: torch.Tensor, keep: torch.Tensor) -> None:
    """`weight *= keep` in place: the one way a prune zeroes weights. Rebuilding a pruned model from its
    input and iter<N>/keep.safetensors calls it too, so the bits are the prune's.

    A negative weight times 0 is -0.0; `+ 0.0` makes it +0.0 (and leaves every other value as it is),
    so a pruned weight is the same zero the packed form gives back and `load_packed` reproduces an
    iteration's model bit for bit."""
    weight.mul_(keep.to(weight.device)).add_(0.0)


def count_zeros(weight: torch.Tensor) -> int:
    """Exact zeros of a weight (count_nonzero is one kernel, ~3x faster than (w == 0).sum())."""
    return weight.numel() - int(torch.count_nonzero(weight))


@torch.no_grad()
def sequential_prune(model: nn.Module, windows: torch.Tensor, batch_size: int, select: Selector,
                     sink: EventSink | None = None, offload: bool | None = None,
                     layers_on: torch.device | None = None, place: Place = place_module) -> tuple[
                         dict[str, dict[str, float]], dict[str, torch.Tensor], dict[str, torch.Tensor],
                         dict[str, float]]:
    """The layer-wise loop; `select` chooses and applies one matrix's mask in place.

    Returns (per_layer, tiers, act_norms, timings). Emits a `layer` event per matrix once it is
    pruned and a `progress` event (unit "layers") per decoder layer.
    `layers_on`: offload "layers" (lm/offload.py): the model is on CPU; the modules outside the decoder
    layers sit on this device during the step and each decoder layer visits it for its two passes,
    moved by `place`. `offload` (hidden states between layers) is then forced to CPU.
    """
    layers, prefix = decoder_layers(model)
    if layers_on is None:
        return _sequential_prune(model, layers, prefix, windows, batch_size, select, sink, offload,
                                 model_device(model), None)
    device = torch.device(layers_on)
    with outer_on(model, prefix, device, place):
        return _sequential_prune(model, layers, prefix, windows, batch_size, select, sink, True, device, place)


def _sequential_prune(model: nn.Module, layers: nn.ModuleList, prefix: str, windows: torch.Tensor,
                      batch_size: int, select: Selector, sink: EventSink | None, offload: bool | None,
                      device: torch.device, place: Place | None) -> tuple[
                          dict[str, dict[str, float]], dict[str, torch.Tensor], dict[str, torch.Tensor],
                          dict[str, float]]:
    """sequential_prune's loop; with `place`, layer i is on `device` only for its two passes."""
    linears = prunable_linears(model)
    per_layer: dict[str, dict[str, float]] = {}
    tiers: dict[str, torch.Tensor] = {}
    norms: dict[str, torch.Tensor] = {}
    forward_s = select_s = 0.0

    t0 = time.perf_counter()
    inputs = capture_inputs(model, layers, windows, batch_size, offload=offload, device=device)
    _sync(device)
    forward_s += time.perf_counter() - t0
    meter = ProgressMeter(sink, len(layers), "layers", "prune")
    meter.update(0)

    for i, layer in enumerate(layers):
        mine = {name: lin for name, lin in linears.items() if name.startswith(f"{prefix}.{i}.")}
        t0 = time.perf_counter()
        if place is not None:
            place(layer, device)  # [offload layers] only this decoder layer on the device
        layer_norms = accumulate_norms(layer, mine, inputs)  # pass 1, on the unpruned layer i
        _sync(device)
        t1 = time.perf_counter()
        forward_s += t1 - t0
        with single_cpu_thread(device):
            for name, lin in mine.items():
                entry, tier_map = select(name, lin, layer_norms[name])
                per_layer[name] = entry
                norms[name] = layer_norms[name].cpu()
                if tier_map is not None:
                    tiers[name] = tier_map.cpu()
                if sink is not None:
                    sink.layer(name, entry.get("dense"), entry.get("semi"), entry.get("topk"), entry["sparsity"])
        _sync(device)
        t2 = time.perf_counter()
        select_s += t2 - t1
        if i + 1 < len(layers):  # the last layer's outputs feed nothing we prune
            run_layer(layer, inputs)  # pass 2, through the pruned layer i
            _sync(device)
        if place is not None:
            place(layer, CPU)
        forward_s += time.perf_counter() - t2
        meter.update(i + 1)
    del inputs
    return per_layer, tiers, norms, {"calibrate_s": forward_s, "prune_s": select_s}


def _totals(model: nn.Module, per_layer: dict[str, dict[str, float]]) -> tuple[int, int]:
    """(zero weights, weights) over every prunable matrix, from the sparsity recorded per matrix."""
    zeros = weights = 0
    for name, lin in prunable_linears(model).items():
        n = lin.weight.numel()
        zeros += round(per_layer[name]["sparsity"] * n)  # exact: sparsity was zeros / n
        weights += n
    return zeros, weights


# ---- progressive three-tier ----


def block_weighted(comps: list[dict[str, float]]) -> dict[str, float]:
    """{dense, semi, topk} over all full blocks of several matrices (each `composition()` has `blocks`)."""
    blocks = sum(c["blocks"] for c in comps)
    return {t: (sum(c[t] * c["blocks"] for c in comps) / blocks if blocks else 0.0) for t in TIER_KEYS}


def prune_model(model: nn.Module, calib_windows: torch.Tensor, prev_tiers: dict[str, torch.Tensor] | None,
                dense: float, topk: float, block_size: int = 16, k: int = 10, batch_size: int = 4,
                sink: EventSink | None = None, offload: bool | None = None,
                layers_on: torch.device | None = None, place: Place = place_module,
                targets: dict[str, tuple[float, float]] | None = None) -> PruneResult:
    """One progressive iteration on `model` in place, towards cumulative targets `dense` and `topk`.

    `prev_tiers`: the tier map of every prunable matrix from the previous iteration (None: all DENSE).
    `calib_windows`: LongTensor [nsamples, seqlen], run in batches of `batch_size` windows.
    `layers_on` / `place`: layer-wise placement of a model held on CPU (see sequential_prune).
    `targets`: per-matrix (dense, topk) replacing the row's (a non-uniform allocation, lm/allocation.py).
    """
    from tierctl.core.tiers import composition, count_violations, expected_sparsity, progressive_step

    linears = prunable_linears(model)
    if prev_tiers is not None:
        check_tier_maps(prev_tiers, linears, block_size)
    comps: list[dict[str, float]] = []
    violations: dict[str, int] = {}
    keeps: dict[str, torch.Tensor] = {}
    expected_zeros = 0.0

    def select(name: str, lin: nn.Linear, norm: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
        nonlocal expected_zeros
        w = lin.weight  # [out, in]; carries the masks of earlier iterations
        shape = (w.shape[0] // block_size, w.shape[1] // block_size)
        prev = prev_tiers[name].to(w.device) if prev_tiers is not None else \
            torch.zeros(shape, dtype=torch.uint8, device=w.device)
        d, t = targets[name] if targets is not None else (dense, topk)
        new, keep = progressive_step(w, norm, prev, d, t, block_size=block_size, k=k)
        apply_keep(w, keep)  # keep: bool [out, in]
        keeps[name] = pack_keep(keep)
        violations[name] = count_violations(w, new, block_size, k)  # checked while the weight is hot
        comp = composition(new)
        comps.append(comp)
        full = comp["blocks"] * block_size * block_size  # partial blocks stay dense
        expected_zeros += expected_sparsity(comp, block_size, k) * full
        return {**{t: float(comp[t]) for t in TIER_KEYS}, "sparsity": count_zeros(w) / w.numel()}, new

    per_layer, tiers, norms, timings = sequential_prune(model, calib_windows, batch_size, select, sink, offload,
                                                        layers_on, place)
    zeros, weights = _totals(model, per_layer)
    return PruneResult(PROGRESSIVE, tiers, norms, per_layer, block_weighted(comps), zeros / weights,
                       expected_zeros / weights, zeros, weights, timings, violations, keeps)


def check_tier_maps(maps: dict[str, torch.Tensor], linears: dict[str, nn.Linear], block_size: int) -> None:
    """The previous tier maps must cover exactly the model's prunable matrices, with matching shapes."""
    from tierctl.errors import BadInput

    missing = [n for n in linears if n not in maps]
    extra = [n for n in maps if n not in linears]
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which is not a prunable matrix of the model"
        raise BadInput(f"previous tier map {what}")
    for name, lin in linears.items():
        want = (lin.weight.shape[0] // block_size, lin.weight.shape[1] // block_size)
        if tuple(maps[name].shape) != want:
            raise BadInput(f"previous tier map of {name} is {list(maps[name].shape)}, expected {list(want)} "
                           f"for a {list(lin.weight.shape)} weight with block_size {block_size}")


def reached_counts(blocks: int, dense: float, topk: float) -> tuple[int, int]:
    """(DENSE, TOPK) block counts a matrix of `blocks` full blocks has after an iteration targeting
    `dense` / `topk` from a history that followed the schedule (docs/tiers.md's rounded targets;
    phase 2 can demote only what is SEMI, so TOPK is capped by blocks - DENSE)."""
    from tierctl.core.tiers import target_counts

    n_dense, n_topk = target_counts(dense, topk, blocks)
    return n_dense, min(n_topk, blocks - n_dense)


def check_history(maps: dict[str, torch.Tensor], dense: float, topk: float, source: str, row: str) -> None:
    """Refuse a previous tier map whose counts are not what `row`'s targets give (the schedule was
    edited after that iteration ran, or the map comes from elsewhere), naming the first such matrix."""
    from tierctl.errors import BadInput

    for name, t in maps.items():
        blocks = t.numel()
        want_dense, want_topk = reached_counts(blocks, dense, topk)
        got_dense, got_topk = int((t == 0).sum()), int((t == 2).sum())
        if (got_dense, got_topk) != (want_dense, want_topk):
            raise BadInput(f"{source}: {name} has {got_dense} dense / {got_topk} top-k of {blocks} blocks, but "
                           f"{row} (dense {dense:g}, topk {topk:g}) gives {want_dense} / {want_topk}: the schedule "
                           f"changed after that iteration ran (rerun it with --force)")


# ---- one-shot Wanda baselines ----


def prune_baseline(model: nn.Module, calib_windows: torch.Tensor, method: str, sparsity: float = 0.5,
                   n: int = 2, m: int = 4, batch_size: int = 4, sink: EventSink | None = None,
                   offload: bool | None = None, layers_on: torch.device | None = None,
                   place: Place = place_module, sparsities: dict[str, float] | None = None) -> PruneResult:
    """Wanda one-shot on `model` in place: `wanda-unstructured` (per output row at `sparsity`) or
    `wanda-nm` (keep n of every m consecutive inputs), with the same calibration as progressive.
    `sparsities`: per-matrix ratios of wanda-unstructured replacing `sparsity` (lm/allocation.py)."""
    from tierctl.core.wanda import wanda_nm_mask, wanda_unstructured_mask

    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r} (known: {', '.join(BASELINES)})")
    keeps: dict[str, torch.Tensor] = {}

    def select(name: str, lin: nn.Linear, norm: torch.Tensor) -> tuple[dict[str, float], None]:
        w = lin.weight  # [out, in]
        scores = w.detach().abs().float() * norm[None, :].float()  # S = |W| * norm, [out, in]
        ratio = sparsities[name] if sparsities is not None else sparsity
        # The reference code's selection, ties included (core/wanda.py), not the tier algebra's rule.
        keep = wanda_unstructured_mask(scores, ratio) if method == "wanda-unstructured" else \
            wanda_nm_mask(scores, n, m)
        apply_keep(w, keep)
        keeps[name] = pack_keep(keep)
        return {"sparsity": count_zeros(w) / w.numel()}, None

    per_layer, _, norms, timings = sequential_prune(model, calib_windows, batch_size, select, sink, offload,
                                                    layers_on, place)
    zeros, weights = _totals(model, per_layer)
    return PruneResult(method, {}, norms, per_layer, None, zeros / weights, None, zeros, weights, timings,
                       keep=keeps)


def baseline_settings(method: str, sparsity: float, n: int, m: int) -> dict[str, Any]:
    """The settings a baseline ran with, as metrics.json records them."""
    if method == "wanda-unstructured":
        return {"method": method, "sparsity": sparsity, "per": "output row"}
    return {"method": method, "n": n, "m": m, "per": "groups of m consecutive inputs"}
