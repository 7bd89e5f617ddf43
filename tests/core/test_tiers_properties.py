"""Properties of progressive_step that hold for every input (hypothesis): docs/tiers.md."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tierctl.core.tiers import DENSE, TOPK, count_violations, keep_mask, progressive_step

PROPERTY = settings(max_examples=40, deadline=None)


@dataclass
class Case:
    weight: torch.Tensor
    norm: torch.Tensor
    b: int
    k: int
    first: tuple[float, float]  # (dense, topk) of an iteration that produces the starting tiers
    second: tuple[float, float]  # the targets of the step under test (anything, promotions included)


fraction = st.integers(0, 20).map(lambda i: i / 20)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    b = draw(st.sampled_from([4, 8, 16]))
    rows = draw(st.integers(0, 4)) * b + draw(st.sampled_from([0, 0, 1, b - 1]))
    cols = draw(st.integers(0, 5)) * b + draw(st.sampled_from([0, 0, 3, b - 1]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    kind = draw(st.sampled_from(["normal", "integers", "constant"]))
    if kind == "normal":
        weight = torch.randn(rows, cols, generator=g)
    elif kind == "integers":
        weight = torch.randint(-2, 3, (rows, cols), generator=g).float()
    else:
        weight = torch.full((rows, cols), 0.5)
    norm = torch.rand(cols, generator=g) * (torch.rand(cols, generator=g) > 0.2)  # some dead features
    d1 = draw(fraction)
    t1 = draw(fraction.filter(lambda t: t <= 1 - d1))
    d2, t2 = draw(fraction), draw(fraction)
    return Case(weight, norm, b, draw(st.integers(0, b * b)), (d1, t1), (d2, t2))


def start(case: Case) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiers and weights after a first iteration from all-dense (so the weight obeys its tier map)."""
    zero = torch.zeros(case.weight.shape[0] // case.b, case.weight.shape[1] // case.b, dtype=torch.uint8)
    tiers, keep = progressive_step(case.weight, case.norm, zero, *case.first, block_size=case.b, k=case.k)
    return tiers, case.weight * keep


def counts(tiers: torch.Tensor) -> tuple[int, int]:
    return int((tiers == DENSE).sum()), int((tiers == TOPK).sum())


@PROPERTY
@given(cases())
def test_tiers_are_never_promoted(case: Case) -> None:
    tiers, weight = start(case)
    new, _ = progressive_step(weight, case.norm, tiers, *case.second, block_size=case.b, k=case.k)
    assert bool((new >= tiers).all())


@PROPERTY
@given(cases())
def test_counts_match_the_rounded_targets(case: Case) -> None:
    tiers, weight = start(case)
    new, _ = progressive_step(weight, case.norm, tiers, *case.second, block_size=case.b, k=case.k)
    n = tiers.numel()
    want_dense, want_topk = round(case.second[0] * n), round(case.second[1] * n)
    had_dense, had_topk = counts(tiers)
    dense, topk = counts(new)
    assert dense == min(had_dense, want_dense)  # a target above the current count demotes nothing
    assert topk == max(had_topk, min(want_topk, n - dense))  # phase 2 can only take what is SEMI
    if want_dense <= had_dense and want_topk >= had_topk and want_dense + want_topk <= n:
        assert (dense, topk) == (want_dense, want_topk)


@PROPERTY
@given(cases())
def test_every_semi_group_and_topk_block_obeys_its_limit(case: Case) -> None:
    tiers, weight = start(case)
    new, keep = progressive_step(weight, case.norm, tiers, *case.second, block_size=case.b, k=case.k)
    pruned = weight * keep
    assert count_violations(pruned, new, case.b, case.k) == 0
    b, R, C = case.b, *new.shape
    nz = (pruned[: R * b, : C * b] != 0).view(R, b, C, b)
    semi_groups = nz.view(R, b, C, b // 4, 4).sum(-1).permute(0, 2, 1, 3)[new == 1]  # [semi blocks, b, b/4]
    assert bool((semi_groups <= 2).all())
    assert bool((nz.sum((1, 3))[new == TOPK] <= case.k).all())


@PROPERTY
@given(cases())
def test_keep_is_the_fine_tune_mask_of_the_pruned_weight(case: Case) -> None:
    tiers, weight = start(case)
    new, keep = progressive_step(weight, case.norm, tiers, *case.second, block_size=case.b, k=case.k)
    assert torch.equal(keep, keep_mask(weight * keep, new, case.b))
    assert not bool((keep & ~keep_mask(weight, tiers, case.b)).any())  # nothing pruned before is revived


@PROPERTY
@given(cases(), st.integers(0, 1000))
def test_a_step_whose_targets_do_not_move_changes_nothing(case: Case, seed: int) -> None:
    tiers, weight = start(case)
    g = torch.Generator().manual_seed(seed)
    tuned = weight * (1 + torch.rand(weight.shape, generator=g))  # a fine-tune moves values, never zeros
    new, keep = progressive_step(tuned, case.norm, tiers, *case.first, block_size=case.b, k=case.k)
    assert torch.equal(new, tiers)
    assert torch.equal(tuned * keep, tuned)
    assert torch.equal(keep, keep_mask(tuned, tiers, case.b))


@settings(max_examples=15, deadline=None)
@given(cases())
def test_the_inputs_are_left_untouched(case: Case) -> None:
    tiers, weight = start(case)
    w_before, t_before, n_before = weight.clone(), tiers.clone(), case.norm.clone()
    progressive_step(weight, case.norm, tiers, *case.second, block_size=case.b, k=case.k)
    assert torch.equal(weight, w_before) and torch.equal(tiers, t_before) and torch.equal(case.norm, n_before)
