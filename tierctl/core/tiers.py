"""Tier algebra (docs/tiers.md): block scores, 2:4 and top-k masks, one progressive step.

Tier-map files are read and written by tierctl.core.tiermap_io.

Pure torch and vectorised: the only Python loops run over the log2(b) levels of a summation tree, the two
phases, and the few position pairs inside a group of 4. Works on the weight's device (CPU or CUDA).

Determinism is part of the contract (two correct implementations give the same tier map bit for bit), and a
float sum depends on its order, so every number that decides a tier is defined exactly:

- Weight score `S = |W| * norm` in the *score dtype*: float32 for float32 / bfloat16 / float16 weights and
  norms (Wanda's metric; one IEEE rounding per entry), float64 when the weight or the norm is float64.
- Block score: the sum of `S` over the block in float64, in a fixed order. The block's `b` rows are folded in
  halves (row `i` + row `i + b/2`, elementwise, repeated until one row is left; an odd count carries its last
  row to the end), then the `b` column sums left are folded the same way. Every step is one IEEE float64
  addition, so CPU and CUDA agree; where the exact sum is representable (integer or dyadic weights, a modest
  dynamic range of fp32 terms) any summation order gives the same number.
- Ranking blocks: ascending `(block score, row-major block index)`. Inside a 2:4 group or a top-k block:
  descending `S`, then ascending index (row-major inside the block) — equal `S` keeps the lower index.
- Target counts: `round(fraction * n)` with Python's `round` on float64, i.e. banker's rounding
  (`round(2.5) == 2`, `round(3.5) == 4`); docs/tiers.md names that function, so we keep it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from tierctl.core.vocab import DENSE, SEMI, TIER_KEYS, TOPK

# ---- checks ----


def _full_blocks(weight: torch.Tensor, block_size: int) -> tuple[int, int]:
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [out, in], got shape {list(weight.shape)}")
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    return weight.shape[0] // block_size, weight.shape[1] // block_size


def _check_tiers(weight: torch.Tensor, tiers: torch.Tensor, block_size: int) -> tuple[int, int]:
    R, C = _full_blocks(weight, block_size)
    if tiers.dtype != torch.uint8 or tuple(tiers.shape) != (R, C):
        raise ValueError(f"tier map must be uint8 [{R}, {C}] for a {list(weight.shape)} weight and block size "
                         f"{block_size}, got {tiers.dtype} {list(tiers.shape)}")
    if tiers.numel() and int(tiers.max()) > TOPK:
        raise ValueError(f"tier map holds tier {int(tiers.max())}; tiers are 0 dense, 1 2:4, 2 top-k")
    return R, C


def _check_groups(block_size: int, k: int) -> None:
    if block_size < 4 or block_size % 4:
        raise ValueError(f"block_size must be a positive multiple of 4 (2:4 groups), got {block_size}")
    if not 0 <= k <= block_size * block_size:
        raise ValueError(f"k must be in 0..{block_size * block_size}, got {k}")


def _check_norm(weight: torch.Tensor, norm: torch.Tensor) -> None:
    if norm.dim() != 1 or norm.shape[0] != weight.shape[1]:
        raise ValueError(f"norm must be 1-D of length {weight.shape[1]} (input features), got {list(norm.shape)}")
    if not bool(torch.isfinite(norm).all()) or bool((norm < 0).any()):
        raise ValueError("norm must be finite and >= 0 (an L2 norm of activations)")


# ---- scores ----


def _score_dtype(weight: torch.Tensor, norm: torch.Tensor) -> torch.dtype:
    return torch.promote_types(torch.promote_types(weight.dtype, norm.dtype), torch.float32)


def _weight_scores(weight: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """S = |W| * norm, broadcast over the last dim, in the score dtype (one rounding per entry)."""
    dtype = _score_dtype(weight, norm)
    s = weight.abs()  # a fresh tensor, so the multiply can run in place
    if s.dtype != dtype:
        s = s.to(dtype)
    return s.mul_(norm.to(dtype))


def _fold(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over `dim` in float64 by folding in halves (element i + element i + L//2; an odd L carries its last).

    The fixed tree makes the result independent of kernels and devices: each level is one elementwise add.
    The first level writes a fresh float64 buffer (x is never written); later levels fold it in place.
    """
    length = x.shape[dim]
    if length == 1:
        return x.squeeze(dim).to(torch.float64)
    half, odd = divmod(length, 2)
    shape = list(x.shape)
    shape[dim] = half + odd
    y = torch.empty(shape, dtype=torch.float64, device=x.device)
    first = y.narrow(dim, 0, half)
    first.copy_(x.narrow(dim, 0, half))  # widening float32 -> float64 is exact
    first += x.narrow(dim, half, half)  # so this is one float64 addition per element
    while True:
        if odd:  # the odd one out moves to the end of the shorter sequence
            y.narrow(dim, half, 1).copy_(x.narrow(dim, 2 * half, 1))
        y = y.narrow(dim, 0, half + odd)
        if y.shape[dim] == 1:
            return y.squeeze(dim)
        x = y
        half, odd = divmod(y.shape[dim], 2)
        y.narrow(dim, 0, half).add_(y.narrow(dim, half, half))


@torch.no_grad()
def block_scores(weight: torch.Tensor, norm: torch.Tensor, block_size: int = 16) -> torch.Tensor:
    """Float64 `[out // b, in // b]`: the sum of `|W| * norm` over each full block (fixed order, module doc)."""
    R, C = _full_blocks(weight, block_size)
    _check_norm(weight, norm)
    norm = norm.to(weight.device)
    b = block_size
    s = _weight_scores(weight[: R * b, : C * b], norm[: C * b])  # [R*b, C*b]
    rows = _fold(s.view(R, b, C * b), 1)  # [R, C*b]: per block, the sum of its rows
    return _fold(rows.view(R, C, b), 2).contiguous()  # [R, C]


def _block_sums(s: torch.Tensor) -> torch.Tensor:
    """Block scores of gathered blocks `[n, b, b]` (the same tree as block_scores, so bit-identical)."""
    return _fold(_fold(s, 1), 1)


# ---- keep masks: the n largest along the last dim, ties to the lower index ----


def _keep_top(x: torch.Tensor, n: int) -> torch.Tensor:
    """Bool like x: the n largest entries along the last dim; equal values keep the lower index."""
    length = x.shape[-1]
    if n >= length:
        return torch.ones_like(x, dtype=torch.bool)
    if n <= 0:
        return torch.zeros_like(x, dtype=torch.bool)
    if length <= 8:  # small groups (2:4, n:m): a rank by pairwise comparisons beats topk's per-row cost
        return _keep_top_small(x, n)
    if n <= length // 2:  # the n-th largest value: the least of the n largest ...
        v = x.topk(n, dim=-1, sorted=False).values.amin(-1, keepdim=True)
    else:  # ... or the greatest of the length - n + 1 smallest (topk beats kthvalue on CPU either way)
        v = x.topk(length - n + 1, dim=-1, largest=False, sorted=False).values.amax(-1, keepdim=True)
    keep = (x >= v).reshape(-1, length)
    crowded = (keep.sum(-1) > n).nonzero().squeeze(1)  # rows where entries equal to v cross the cut
    if crowded.numel():
        xc, vc = x.reshape(-1, length)[crowded], v.reshape(-1, 1)[crowded]
        above, at = xc > vc, xc == vc
        room = n - above.sum(-1, keepdim=True)  # how many entries equal to v still fit, lowest index first
        keep[crowded] = above | (at & (at.cumsum(-1, dtype=torch.int32) <= room))
    return keep.view(x.shape)


def _keep_top_small(x: torch.Tensor, n: int) -> torch.Tensor:
    """Rank each position of a short last dim: position j beats i if x_j > x_i, or x_j == x_i and j < i.

    Loops over the m(m-1)/2 position pairs of one group (6 for 2:4); every op runs on all groups at once,
    on contiguous columns.
    """
    m = x.shape[-1]
    cols = x.movedim(-1, 0).contiguous()  # [m, ...]
    wins = torch.zeros(cols.shape, dtype=torch.uint8, device=x.device)
    for i in range(m):
        for j in range(i + 1, m):
            wins[i] += cols[i] >= cols[j]  # a tie goes to the lower position
            wins[j] += cols[j] > cols[i]
    return (wins >= m - n).movedim(0, -1)  # rank = m - 1 - wins < n


def _check_scores(scores: torch.Tensor) -> None:
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite (the weight or the norm holds inf or nan)")


@torch.no_grad()
def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M keep mask: in every group of `m` consecutive entries along the last dim keep the `n` largest.

    Groups start at column 0; a trailing partial group of r < m entries keeps min(n, r). Ties keep the lower
    index. For a weight's scores `[out, in]` the groups run over input columns, as sparse tensor cores need.
    """
    if not 0 <= n <= m or m < 1:
        raise ValueError(f"need 0 <= n <= m and m >= 1, got n={n} m={m}")
    _check_scores(scores)
    length = scores.shape[-1]
    full = length - length % m
    head = _keep_top(scores[..., :full].unflatten(-1, (full // m, m)), n).flatten(-2)
    if full == length:
        return head
    return torch.cat([head, _keep_top(scores[..., full:], n)], dim=-1)


def semi_mask(scores: torch.Tensor) -> torch.Tensor:
    """2:4 keep mask along the last dim (the SEMI pattern of docs/tiers.md)."""
    return nm_mask(scores, 2, 4)


@torch.no_grad()
def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the `k` largest entries along the last dim (ties keep the lower index); flatten a block first."""
    _check_scores(scores)
    return _keep_top(scores, k)


@torch.no_grad()
def unstructured_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Wanda's unstructured baseline: each output row (last dim) prunes its `int(in * ratio)` lowest scores.

    `int` truncates, as in the Wanda reference code (`int(W_metric.shape[1] * sparsity_ratio)`). Ties keep
    the lower index, the same rule as the tiers.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    _check_scores(scores)
    length = scores.shape[-1]
    return _keep_top(scores, length - int(length * float(ratio)))


# ---- one progressive iteration (docs/tiers.md) ----


def target_counts(dense: float, topk: float, n: int) -> tuple[int, int]:
    """`(round(dense * n), round(topk * n))`: Python round on float64, banker's rounding on exact halves."""
    for name, f in (("dense", dense), ("topk", topk)):
        if not 0.0 <= float(f) <= 1.0:
            raise ValueError(f"{name} must be a fraction in [0, 1], got {f}")
    return round(float(dense) * n), round(float(topk) * n)


def _block_view(x: torch.Tensor, R: int, C: int, b: int) -> torch.Tensor:
    """`[R, b, C, b]` view of the full-block part of a 2-D tensor (a view: writes reach `x`)."""
    return x[: R * b, : C * b].view(R, b, C, b)


def _gather(x: torch.Tensor, idx: torch.Tensor, R: int, C: int, b: int) -> torch.Tensor:
    """The blocks at flat row-major indices `idx` as `[len(idx), b, b]` (a copy)."""
    return _block_view(x, R, C, b)[idx // C, :, idx % C, :]


def _lowest(scores: torch.Tensor, candidates: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` candidates (ascending flat indices) with the lowest score; ties demote the lower index."""
    mine = scores[candidates]
    _check_scores(mine)
    return candidates[_keep_top(-mine, count)]


@torch.no_grad()
def progressive_step(weight: torch.Tensor, norm: torch.Tensor, tiers: torch.Tensor, dense: float, topk: float,
                     block_size: int = 16, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Demote blocks DENSE -> SEMI -> TOPK to reach the cumulative targets; return `(new_tiers, keep)`.

    `weight` carries the earlier masks (SEMI and TOPK blocks already obey their pattern); `tiers` is the
    previous map. `keep` is the fine-tune mask after the step (module `keep_mask` of the pruned weight):
    the caller does `weight * keep`. Only blocks that change tier are gathered and masked; the one pass over
    the whole weight is the block scoring (skipped when phase 1 demotes nothing).
    """
    b = block_size
    _check_groups(b, k)
    R, C = _check_tiers(weight, tiers, b)
    _check_norm(weight, norm)
    dev = weight.device
    norm = norm.to(dev)
    t = tiers.reshape(-1).to(dev)  # flat row-major block index -> tier
    n = R * C
    n_dense, n_topk = target_counts(dense, topk, n)
    cur_dense, cur_topk = int((t == DENSE).sum()), int((t == TOPK).sum())
    d1 = max(0, cur_dense - n_dense)
    # Rounding can make n_dense + n_topk exceed n: phase 2 then takes every SEMI block there is.
    d2 = min(max(0, n_topk - cur_topk), n - (cur_dense - d1) - cur_topk)
    new_t = t.clone()
    norm_blocks = norm[: C * b].view(C, b)

    def scores_of(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = _gather(weight, idx, R, C, b)  # [len, b, b]
        return w, _weight_scores(w, norm_blocks[idx % C].unsqueeze(1))

    scores = torch.empty(n, dtype=torch.float64, device=dev)
    if d1:
        scores = block_scores(weight, norm, b).reshape(-1)
    elif d2:
        semi = (t == SEMI).nonzero().squeeze(1)
        scores[semi] = _block_sums(scores_of(semi)[1])

    changed: list[tuple[torch.Tensor, torch.Tensor]] = []  # (flat indices, their keep blocks [len, b, b])
    d1_idx = s1 = alive1 = None
    if d1:  # phase 1: the lowest DENSE blocks become 2:4, then are re-scored on their 2:4 weights
        d1_idx = _lowest(scores, (t == DENSE).nonzero().squeeze(1), d1)
        w1, s1 = scores_of(d1_idx)
        keep24 = _keep_top(s1.view(d1, b, b // 4, 4), 2).reshape(d1, b, b)
        s1.masked_fill_(~keep24, 0)
        alive1 = keep24 & (w1 != 0)
        scores[d1_idx] = _block_sums(s1)
        new_t[d1_idx] = SEMI
        changed.append((d1_idx, alive1))
    if d2:  # phase 2: all SEMI blocks (old and new) compete; the lowest keep their k best entries
        d2_idx = _lowest(scores, (new_t == SEMI).nonzero().squeeze(1), d2)
        old_idx = d2_idx
        sources = []  # (indices, S on the current weights, non-zero mask): SEMI since phase 1, and older
        if d1_idx is not None:
            pos = torch.searchsorted(d1_idx, d2_idx).clamp_(max=d1 - 1)
            fresh = d1_idx[pos] == d2_idx  # demoted twice in this step
            sources.append((d2_idx[fresh], s1[pos[fresh]], alive1[pos[fresh]]))
            old_idx = d2_idx[~fresh]
        if old_idx.numel():
            w_old, s_old = scores_of(old_idx)
            sources.append((old_idx, s_old, w_old != 0))
        for idx, s, alive in sources:
            changed.append((idx, alive & _keep_top(s.reshape(-1, b * b), k).view(s.shape)))
        new_t[d2_idx] = TOPK

    keep = keep_mask(weight, new_t.view(R, C), b)
    blocks = _block_view(keep, R, C, b)
    for idx, alive in changed:  # phase 2 writes last: a block demoted twice ends with its top-k mask
        blocks[idx // C, :, idx % C, :] = alive
    return new_t.view(R, C).to(tiers.device), keep


@torch.no_grad()
def keep_mask(weight: torch.Tensor, tiers: torch.Tensor, block_size: int = 16) -> torch.Tensor:
    """Bool like `weight`: every entry of DENSE and partial blocks, the non-zero entries of SEMI and TOPK ones.

    The fine-tune mask: a pruned weight is zero, so it stays out and is never revived.
    """
    R, C = _check_tiers(weight, tiers, block_size)
    b = block_size
    keep = weight != 0
    dense_cols = (tiers.to(weight.device) == DENSE).repeat_interleave(b, dim=1)  # [R, C*b]
    keep[: R * b, : C * b].view(R, b, C * b).logical_or_(dense_cols.unsqueeze(1))  # long contiguous rows
    keep[R * block_size:, :] = True
    keep[:, C * block_size:] = True
    return keep


# ---- composition, sparsity, violations ----


def composition(tiers: torch.Tensor) -> dict[str, float | int]:
    """Block fractions of one tier map: `{"dense", "semi", "topk"}` over its `blocks` full blocks."""
    counts = torch.bincount(tiers.reshape(-1).to(torch.int64), minlength=3).tolist()
    if len(counts) > 3:
        raise ValueError(f"tier map holds tier {len(counts) - 1}; tiers are 0 dense, 1 2:4, 2 top-k")
    n = tiers.numel()
    out: dict[str, float | int] = {name: (c / n if n else 0.0) for name, c in zip(TIER_KEYS, counts, strict=True)}
    out["blocks"] = n
    return out


def expected_sparsity(comp_or_fractions: Mapping[str, float] | Sequence[float], block_size: int = 16,
                      k: int = 10) -> float:
    """Weight sparsity implied by block fractions: SEMI 1/2, TOPK 1 - k/b^2 (full blocks only).

    Takes a `composition(...)` dict (keys `semi`/`topk`, or the schedule's `mid_2_4`) or `(dense, semi, topk)`.
    """
    if isinstance(comp_or_fractions, Mapping):
        semi = comp_or_fractions["semi"] if "semi" in comp_or_fractions else comp_or_fractions["mid_2_4"]
        top = comp_or_fractions["topk"]
    else:
        _, semi, top = comp_or_fractions
    return float(semi) * 0.5 + float(top) * (1.0 - k / (block_size * block_size))


def measured_sparsity(weight: torch.Tensor) -> float:
    """Fraction of entries that are exactly zero."""
    return float((weight == 0).sum()) / weight.numel() if weight.numel() else 0.0


@torch.no_grad()
def count_violations(weight: torch.Tensor, tiers: torch.Tensor, block_size: int = 16, k: int = 10) -> int:
    """SEMI groups (a row x 4 aligned input columns) with more than 2 non-zeros, plus TOPK blocks with more than k."""
    _check_groups(block_size, k)
    R, C = _check_tiers(weight, tiers, block_size)
    b = block_size
    nz = _block_view(weight != 0, R, C, b)  # [R, b, C, b]
    t = tiers.to(weight.device)
    per_group = nz.view(R, b, C, b // 4, 4).sum(-1, dtype=torch.int32)  # [R, b, C, b/4]
    semi_bad = ((per_group > 2) & (t == SEMI).view(R, 1, C, 1)).sum()
    topk_bad = ((nz.sum((1, 3), dtype=torch.int32) > k) & (t == TOPK)).sum()
    return int(semi_bad + topk_bad)
