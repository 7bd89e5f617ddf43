"""The one-shot Wanda baselines' masks, selected exactly as the reference code selects them.

The reference is locuslab/wanda, `lib/prune.py`, `prune_wanda`, with `W_metric = |W| * sqrt(stat)`:

- unstructured: per output row, `torch.sort(W_metric, dim=-1, stable=True)` and the first
  `int(in * sparsity_ratio)` indices are pruned. A stable ascending sort puts equal scores in index
  order, so an exact tie prunes the *lower* index first.
- n:m: for every group of m consecutive input columns, `torch.topk(group, m - n, dim=1, largest=False)`
  picks the entries pruned. torch documents no order among equal values for topk; the reference
  inherits whatever the kernel does (on the CPU build of torch 2.13 it is neither "lower" nor
  "higher index first"), so the baseline calls the very same operation on the same groups and agrees
  with the reference on the same torch build and device, ties included.

The tier algebra (core/tiers.py) keeps its own rule (equal scores keep the lower index, docs/tiers.md):
these functions serve only the `wanda-unstructured` and `wanda-nm` baselines. Torch only.
"""

from __future__ import annotations

import torch


def _check(scores: torch.Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be 2-D [out, in], got shape {list(scores.shape)}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite (the weight or the norm holds inf or nan)")


@torch.no_grad()
def wanda_unstructured_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep mask (bool, like scores [out, in]): each row prunes its `int(in * ratio)` lowest scores.

    Stable ascending sort, as the reference: equal scores prune the lower column index first.
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    _check(scores)
    pruned = int(scores.shape[1] * float(ratio))
    keep = torch.ones_like(scores, dtype=torch.bool)
    if pruned:
        order = torch.sort(scores, dim=-1, stable=True).indices  # [out, in], ascending, ties by index
        keep.scatter_(1, order[:, :pruned], False)
    return keep


@torch.no_grad()
def wanda_nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep mask: in every group of `m` consecutive input columns, keep n (prune the m - n lowest).

    The pruned entries of a group are `torch.topk(group.float(), m - n, largest=False)`, the reference's
    call, run on all groups of the matrix at once ([out, groups, m]: topk works on each last-dim slice
    alone). A trailing partial group of r < m columns (the reference cannot run one) prunes r - min(n, r).
    """
    if not 1 <= n <= m:
        raise ValueError(f"need 1 <= n <= m, got n={n} m={m}")
    _check(scores)
    out, length = scores.shape
    full = length - length % m
    keep = torch.ones_like(scores, dtype=torch.bool)
    groups = scores[:, :full].float().reshape(out, full // m, m)  # [out, groups, m]
    if m - n and full:
        low = torch.topk(groups, m - n, dim=-1, largest=False).indices  # [out, groups, m - n]
        head = torch.ones_like(groups, dtype=torch.bool).scatter_(-1, low, False)
        keep[:, :full] = head.reshape(out, full)
    rest = length - full
    if rest > n:
        low = torch.topk(scores[:, full:].float(), rest - n, dim=-1, largest=False).indices
        keep[:, full:].scatter_(-1, low, False)
    return keep
