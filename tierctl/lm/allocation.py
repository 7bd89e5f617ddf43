"""Per-layer allocation of a prune's targets: `uniform` (every matrix gets the schedule row) or `owl`.

OWL (Yin et al. 2023, "Outlier Weighed Layerwise sparsity"; their code: lib/prune_all.py of
luuyin/OWL): decoder layers whose Wanda scores hold more outliers are pruned less. Per decoder layer l:

    A_l = |W| * norm[None, :] over every prunable matrix of layer l    (the Wanda score, docs/tiers.md)
    D_l = fraction of the entries of A_l greater than M * mean(A_l)   (the outlier ratio, M = owl_m)
    p_l = lambda * (2 * (D_l - min D) / (max D - min D) - 1)          (in [-lambda, +lambda])

Layer l then keeps `p_l - c` more than the uniform allocation: its DENSE block fraction goes up and
its TOPK fraction goes down by that much (progressive), or its sparsity goes down by that much
(`wanda-unstructured`). One common offset `c` per quantity makes the model-wide amount equal the
uniform allocation's. Each shift is clipped to [-lambda, +lambda] (the range the paper states; the
reference code subtracts the mean of p instead, which can overshoot lambda when D is skewed) and to
what an iteration may do: a block never comes back up, so a layer's DENSE target never exceeds what it
has and its TOPK target never falls below what it has. `c` is found by bisection; the clipped sum is
monotone in `c`.

Progressive targets are whole blocks per matrix: the real-valued targets are rounded down and the
blocks still missing from the model-wide total go to the matrices with the largest remainders, so the
model-wide counts equal the uniform allocation's exactly unless the bounds make that impossible; the
difference (`blocks_off`) is reported. With lambda = 0 every bound collapses onto the uniform count and
the result is the uniform allocation, bit for bit.

Monotone across iterations: the ratios D are measured once, in the first OWL iteration (one extra pass
through the unpruned model, `outlier_ratios`), recorded in metrics.json and reused by every later
iteration, so the profile p is the same in every iteration; the no-promotion bounds above do the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tierctl.lm.calibrate import accumulate_norms, capture_inputs, layer_output, model_device
from tierctl.lm.models import decoder_layers, prunable_linears
from tierctl.lm.offload import CPU, Place, outer_on, place_module

ALLOCATIONS = ("uniform", "owl")
_BISECTIONS = 200  # halvings of the offset bracket: far below float64 resolution


# ---- outlier ratios ----


@torch.no_grad()
def layer_outlier_ratio(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], m: float) -> float:
    """D_l: the fraction of entries of A = |W| * norm (all matrices of one layer together) above m * mean(A).

    `pairs`: (weight [out, in], norm [in]) of every prunable matrix of the layer. Scores in float64, so
    the mean of millions of entries and the comparison are exact enough to be reproduced by a direct count.
    """
    total, count = 0.0, 0
    for w, norm in pairs:
        total += float((w.detach().abs().double() * norm.to(w.device).double()[None, :]).sum())
        count += w.numel()
    threshold = m * total / count
    above = sum(int((w.detach().abs().double() * norm.to(w.device).double()[None, :] > threshold).sum())
                for w, norm in pairs)
    return above / count


def layer_index(name: str, prefix: str) -> int:
    """Decoder layer of a prunable matrix: "model.layers.3.mlp.up_proj" with prefix "model.layers" -> 3."""
    return int(name[len(prefix) + 1:].split(".", 1)[0])


@torch.no_grad()
def outlier_ratios(model: nn.Module, windows: torch.Tensor, m: float, batch_size: int = 4,
                   offload: bool | None = None, layers_on: torch.device | None = None,
                   place: Place = place_module) -> list[float]:
    """D_l of every decoder layer, from one pass of the calibration windows through the unpruned model.

    The cost of OWL's "scores of every layer before pruning any": one forward per decoder layer (the
    prune itself runs two). Nothing is pruned, so the outputs recorded while accumulating the norms are
    the next layer's inputs (no second pass). `layers_on` / `place`: layer-wise placement as in
    prune.sequential_prune.
    """
    layers, prefix = decoder_layers(model)
    linears = prunable_linears(model)
    device = model_device(model) if layers_on is None else torch.device(layers_on)
    placing = outer_on(model, prefix, device, place) if layers_on is not None else nullcontext()
    ratios: list[float] = []
    with placing:
        inputs = capture_inputs(model, layers, windows, batch_size, offload=True if layers_on is not None
                                else offload, device=device)
        for i, layer in enumerate(layers):
            mine = {name: lin for name, lin in linears.items() if name.startswith(f"{prefix}.{i}.")}
            if layers_on is not None:
                place(layer, device)
            outputs: list[torch.Tensor] = []  # [batch, seqlen, hidden] per calibration batch, in order

            def keep_output(module: nn.Module, args: Any, out: Any, outputs: list[torch.Tensor] = outputs) -> None:
                outputs.append(layer_output(out).to(inputs.store_device))

            handle = layer.register_forward_hook(keep_output)
            try:
                norms = accumulate_norms(layer, mine, inputs)
            finally:
                handle.remove()
            inputs.hidden[:] = outputs
            ratios.append(layer_outlier_ratio([(lin.weight, norms[name]) for name, lin in mine.items()], m))
            if layers_on is not None:
                place(layer, CPU)
    return ratios


def shift_profile(ratios: Sequence[float], lam: float) -> list[float]:
    """p_l = lambda * (2 * minmax(D)_l - 1): -lambda for the fewest outliers, +lambda for the most.
    All zeros when every layer has the same ratio (nothing to tell them apart) or lambda is 0."""
    lo, hi = min(ratios), max(ratios)
    if hi <= lo or lam == 0:
        return [0.0] * len(ratios)
    return [lam * (2.0 * (r - lo) / (hi - lo) - 1.0) for r in ratios]


# ---- the balancing offset ----


def balance(base: Sequence[float], profile: Sequence[float], size: Sequence[float], lo: Sequence[float],
            hi: Sequence[float], total: float) -> np.ndarray:
    """x_i = clip(base_i + (profile_i - c) * size_i, lo_i, hi_i) with the offset c that makes sum(x) = total.

    sum(x) is continuous and non-increasing in c, so bisection finds c. When `total` is out of
    [sum(lo), sum(hi)] the closest end is returned (the caller reports the difference).
    """
    b, p, n = (np.asarray(v, dtype=np.float64) for v in (base, profile, size))
    lo_, hi_ = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)

    def x(c: float) -> np.ndarray:
        return np.clip(b + (p - c) * n, lo_, hi_)

    # With |profile| <= 1 and every range within the size: c = -2 puts all at hi, c = +2 all at lo.
    left, right = -2.0 - float(np.abs(p).max(initial=0.0)), 2.0 + float(np.abs(p).max(initial=0.0))
    for _ in range(_BISECTIONS):
        mid = (left + right) / 2
        if x(mid).sum() > total:
            left = mid
        else:
            right = mid
    return x((left + right) / 2)


def whole(x: np.ndarray, hi: Sequence[int], total: int) -> list[int]:
    """Round real targets to integers summing to `total` where possible: floor, then +1 to the largest
    remainders (ties: the lower index), never above `hi`."""
    near = np.round(x)
    fl = np.where(np.abs(x - near) < 1e-9, near, np.floor(x)).astype(np.int64)  # 5.9999999999 -> 6
    frac = x - fl
    room = [i for i in range(len(fl)) if fl[i] < hi[i] and frac[i] > 0]
    room.sort(key=lambda i: (-frac[i], i))
    for i in room[: max(0, total - int(fl.sum()))]:
        fl[i] += 1
    return [int(v) for v in fl]


# ---- progressive: DENSE / TOPK blocks per matrix ----


@dataclass(frozen=True)
class MatrixBlocks:
    """One prunable matrix as the allocation sees it."""

    layer: int  # decoder layer index
    blocks: int  # full blocks
    dense: int  # DENSE blocks before this iteration
    topk: int  # TOPK blocks before this iteration


@dataclass
class Allocation:
    """Per-matrix targets of one iteration, and what the per-layer record shows."""

    targets: dict[str, tuple[float, float]]  # name -> (dense, topk) fractions; count / blocks exactly
    layers: list[dict[str, float]]  # per decoder layer: outlier_ratio, shift, and its targets
    blocks_off: dict[str, int]  # model-wide count minus the uniform allocation's, per tier


def matrix_blocks(model: nn.Module, prev_tiers: dict[str, torch.Tensor] | None, block_size: int) -> dict[
        str, MatrixBlocks]:
    """Every prunable matrix's layer, full blocks and current DENSE / TOPK counts (all DENSE without a map)."""
    _, prefix = decoder_layers(model)
    out = {}
    for name, lin in prunable_linears(model).items():
        n = (lin.weight.shape[0] // block_size) * (lin.weight.shape[1] // block_size)
        t = prev_tiers[name] if prev_tiers is not None else None
        dense, topk = (n, 0) if t is None else (int((t == 0).sum()), int((t == 2).sum()))
        out[name] = MatrixBlocks(layer_index(name, prefix), n, dense, topk)
    return out


def progressive_targets(matrices: dict[str, MatrixBlocks], ratios: Sequence[float], dense: float, topk: float,
                        lam: float) -> Allocation:
    """OWL's per-matrix (dense, topk) targets for a schedule row's cumulative `dense` / `topk`.

    Uniform counts u (docs/tiers.md's rounding, TOPK capped by what is not DENSE) shifted by the layer's
    p_l - c blocks per block, within floor(lambda * n) blocks of u, never promoting.
    """
    from tierctl.lm.prune import reached_counts

    names = list(matrices)
    mats = [matrices[k] for k in names]
    p = shift_profile(ratios, lam)
    prof = [p[mx.layer] for mx in mats]
    n = [mx.blocks for mx in mats]
    r = [math.floor(lam * mx.blocks + 1e-9) for mx in mats]  # at most this many blocks off uniform
    uni = [reached_counts(mx.blocks, dense, topk) for mx in mats]

    # DENSE: outlier-rich layers keep more; never more than the matrix has now.
    u_d = [u[0] for u in uni]
    hi = [min(mx.blocks, u + ri, mx.dense) for mx, u, ri in zip(mats, u_d, r, strict=True)]
    lo = [min(max(0, u - ri), h) for u, ri, h in zip(u_d, r, hi, strict=True)]
    n_dense = whole(balance(u_d, prof, n, lo, hi, sum(u_d)), hi, sum(u_d))

    # TOPK: outlier-rich layers get fewer; never fewer than the matrix has now, never more than its non-DENSE.
    u_t = [u[1] for u in uni]
    hi = [max(min(mx.blocks - d, u + ri), mx.topk) for mx, d, u, ri in zip(mats, n_dense, u_t, r, strict=True)]
    lo = [min(max(0, u - ri, mx.topk), h) for mx, u, ri, h in zip(mats, u_t, r, hi, strict=True)]
    n_topk = whole(balance(u_t, [-v for v in prof], n, lo, hi, sum(u_t)), hi, sum(u_t))

    targets = {k: (d / mx.blocks if mx.blocks else 0.0, t / mx.blocks if mx.blocks else 0.0)
               for k, mx, d, t in zip(names, mats, n_dense, n_topk, strict=True)}
    layers = []
    for i, ratio in enumerate(ratios):
        idx = [j for j, mx in enumerate(mats) if mx.layer == i]
        blocks = sum(n[j] for j in idx)
        layers.append({"layer": i, "outlier_ratio": ratio, "shift": p[i],
                       "dense": sum(n_dense[j] for j in idx) / blocks if blocks else 0.0,
                       "topk": sum(n_topk[j] for j in idx) / blocks if blocks else 0.0})
    off = {"dense": sum(n_dense) - sum(u_d), "topk": sum(n_topk) - sum(u_t)}
    return Allocation(targets, layers, off)


# ---- wanda-unstructured: sparsity per layer ----


def unstructured_sparsities(weights: Sequence[int], ratios: Sequence[float], sparsity: float,
                            lam: float) -> list[float]:
    """OWL's sparsity per decoder layer (`weights`: prunable weights of each layer) for target `sparsity`.

    S_l = S - clip(p_l - c, -lambda, +lambda), kept in [0, 1), with the weight-weighted mean equal to S.
    """
    p = shift_profile(ratios, lam)
    hi = [min(lam, sparsity) * w for w in weights]  # shift (kept more) * weights
    lo = [max(-lam, sparsity - 1.0 + 1e-6) * w for w in weights]
    x = balance([0.0] * len(weights), p, weights, lo, hi, 0.0)
    return [sparsity - float(v) / w if w else sparsity for v, w in zip(x, weights, strict=True)]


def layer_weights(model: nn.Module) -> list[int]:
    """Prunable weights per decoder layer, in layer order."""
    layers, prefix = decoder_layers(model)
    out = [0] * len(layers)
    for name, lin in prunable_linears(model).items():
        out[layer_index(name, prefix)] += lin.weight.numel()
    return out


def check_totals(maps: dict[str, torch.Tensor], dense: float, topk: float, blocks_off: dict[str, int],
                 source: str, row: str) -> None:
    """The history check of an OWL iteration (per-matrix counts differ from the row's by design): the
    model-wide DENSE / TOPK counts must be the row's uniform totals plus the `blocks_off` it recorded."""
    from tierctl.errors import BadInput
    from tierctl.lm.prune import reached_counts

    want = [reached_counts(t.numel(), dense, topk) for t in maps.values()]
    want_dense = sum(w[0] for w in want) + int(blocks_off.get("dense", 0))
    want_topk = sum(w[1] for w in want) + int(blocks_off.get("topk", 0))
    got_dense = sum(int((t == 0).sum()) for t in maps.values())
    got_topk = sum(int((t == 2).sum()) for t in maps.values())
    if (got_dense, got_topk) != (want_dense, want_topk):
        raise BadInput(f"{source}: {got_dense} dense / {got_topk} top-k blocks in all, but {row} (dense {dense:g}, "
                       f"topk {topk:g}, owl allocation) gives {want_dense} / {want_topk}: the schedule changed after "
                       f"that iteration ran (rerun it with --force)")
