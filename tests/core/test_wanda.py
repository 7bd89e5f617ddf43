"""The Wanda baselines select exactly what locuslab/wanda's `prune_wanda` selects, ties included."""

from __future__ import annotations

import pytest
import torch

from tierctl.core.tiers import unstructured_mask
from tierctl.core.wanda import wanda_nm_mask, wanda_unstructured_mask


def tied_scores(out: int, inp: int, seed: int) -> torch.Tensor:
    """Scores with many exact ties (integers 0..3), where the tie rule decides most of the mask."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (out, inp), generator=g).float()


def reference_unstructured(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """Wanda's rule, one row at a time: a stable ascending sort (Python's sort is stable), the first
    int(in * ratio) pruned."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    for r, row in enumerate(scores.tolist()):
        order = sorted(range(len(row)), key=lambda j: row[j])
        for j in order[: int(len(row) * ratio)]:
            keep[r, j] = False
    return keep


def reference_nm(scores: torch.Tensor, prune_n: int, prune_m: int) -> torch.Tensor:
    """Wanda's n:m loop: one topk(largest=False) per group of prune_m columns, prune_n entries pruned."""
    mask = torch.zeros_like(scores, dtype=torch.bool)  # True = pruned, as in the reference
    for ii in range(scores.shape[1]):
        if ii % prune_m == 0:
            tmp = scores[:, ii:(ii + prune_m)].float()
            mask.scatter_(1, ii + torch.topk(tmp, prune_n, dim=1, largest=False)[1], True)
    return ~mask


@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("seed", [0, 1])
def test_unstructured_mask_equals_the_reference_loop_with_ties(ratio: float, seed: int) -> None:
    scores = tied_scores(24, 40, seed)
    assert torch.equal(wanda_unstructured_mask(scores, ratio), reference_unstructured(scores, ratio))


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8), (1, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_nm_mask_equals_the_reference_loop_with_ties(n: int, m: int, seed: int) -> None:
    scores = tied_scores(24, 64, seed)
    assert torch.equal(wanda_nm_mask(scores, n, m), reference_nm(scores, m - n, m))


def test_an_exact_tie_prunes_the_lower_index_unlike_the_tier_algebra() -> None:
    scores = torch.tensor([[5.0, 1.0, 1.0, 7.0]])
    assert wanda_unstructured_mask(scores, 0.25).tolist() == [[True, False, True, True]]
    assert unstructured_mask(scores, 0.25).tolist() == [[True, True, False, True]]  # docs/tiers.md's rule


def test_a_trailing_partial_group_keeps_n_of_its_columns() -> None:
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 9.0, 8.0, 7.0]])  # one group of 4, then 3 columns
    assert wanda_nm_mask(scores, 2, 4).tolist() == [[True, True, False, False, True, True, False]]
