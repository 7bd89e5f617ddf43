"""progressive_step agrees bit for bit with a slow, obviously correct reading of docs/tiers.md.

The reference below is written from docs/tiers.md and the documented summation order of tierctl.core.tiers alone:
Python floats, explicit loops, `sorted` with `(score, index)` keys. It shares no code with the module.
"""

from __future__ import annotations

import struct

import pytest
import torch

from tierctl.core.tiers import DENSE, SEMI, TOPK, block_scores, keep_mask, progressive_step

SEED_SCHEDULE = [(0.90, 0.00), (0.80, 0.10), (0.65, 0.15), (0.50, 0.20), (0.35, 0.20)]  # (dense, topk)


# ---- the reference ----


def to_f32(x: float) -> float:
    """Round a Python float to the nearest float32 (what one float32 multiply produces from exact operands)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def fold(values: list[float]) -> float:
    """Sum by halves: v[i] + v[i + h], h = len // 2, the odd one out carried to the end; repeat."""
    while len(values) > 1:
        h = len(values) // 2
        nxt = [values[i] + values[i + h] for i in range(h)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


def fold_rows(rows: list[list[float]]) -> list[float]:
    """The same tree applied to whole rows, elementwise."""
    while len(rows) > 1:
        h = len(rows) // 2
        nxt = [[a + b for a, b in zip(rows[i], rows[i + h], strict=True)] for i in range(h)]
        if len(rows) % 2:
            nxt.append(rows[-1])
        rows = nxt
    return rows[0]


class Reference:
    """One progressive iteration on lists of Python floats."""

    def __init__(self, weight: torch.Tensor, norm: torch.Tensor, b: int, k: int) -> None:
        self.w = [[float(x) for x in row] for row in weight.tolist()]
        self.norm = [float(x) for x in norm.tolist()]
        # float32 scores unless the weight or the norm is float64 (module doc)
        self.f32 = torch.float64 not in (weight.dtype, norm.dtype)
        self.b, self.k = b, k
        self.R, self.C = len(self.w) // b, len(self.w[0]) // b if self.w else 0

    def s(self, i: int, j: int) -> float:
        p = abs(self.w[i][j]) * self.norm[j]
        return to_f32(p) if self.f32 else p

    def cells(self, idx: int) -> list[tuple[int, int]]:
        r, c, b = idx // self.C, idx % self.C, self.b
        return [(r * b + i, c * b + j) for i in range(b) for j in range(b)]  # row-major inside the block

    def score(self, idx: int) -> float:
        r, c, b = idx // self.C, idx % self.C, self.b
        rows = [[self.s(r * b + i, c * b + j) for j in range(b)] for i in range(b)]
        return fold(fold_rows(rows))

    def two_of_four(self, idx: int) -> None:
        r, c, b = idx // self.C, idx % self.C, self.b
        for i in range(r * b, r * b + b):
            for g in range(c * b, c * b + b, 4):
                ranked = sorted(range(g, g + 4), key=lambda j, i=i: (-self.s(i, j), j))
                for j in ranked[2:]:
                    self.w[i][j] = 0.0

    def top_k(self, idx: int) -> None:
        cells = self.cells(idx)
        ranked = sorted(range(len(cells)), key=lambda n: (-self.s(*cells[n]), n))
        for n in ranked[self.k:]:
            i, j = cells[n]
            self.w[i][j] = 0.0

    def step(self, tiers: list[int], dense: float, topk: float) -> tuple[list[int], list[list[bool]]]:
        tiers = list(tiers)
        n = self.R * self.C
        n_dense, n_topk = round(dense * n), round(topk * n)
        dense_blocks = [i for i in range(n) if tiers[i] == DENSE]
        demote = max(0, len(dense_blocks) - n_dense)
        for idx in sorted(dense_blocks, key=lambda i: (self.score(i), i))[:demote]:
            tiers[idx] = SEMI
            self.two_of_four(idx)
        semi_blocks = [i for i in range(n) if tiers[i] == SEMI]  # rescored on the current (2:4) weights
        demote = min(len(semi_blocks), max(0, n_topk - tiers.count(TOPK)))
        for idx in sorted(semi_blocks, key=lambda i: (self.score(i), i))[:demote]:
            tiers[idx] = TOPK
            self.top_k(idx)
        keep = [[True] * len(row) for row in self.w]
        for idx in range(n):
            if tiers[idx] != DENSE:
                for i, j in self.cells(idx):
                    keep[i][j] = self.w[i][j] != 0.0
        return tiers, keep


def reference_step(weight: torch.Tensor, norm: torch.Tensor, tiers: torch.Tensor, dense: float, topk: float,
                   b: int = 16, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    ref = Reference(weight, norm, b, k)
    new, keep = ref.step(tiers.reshape(-1).tolist(), dense, topk)
    return torch.tensor(new, dtype=torch.uint8).view(tiers.shape), torch.tensor(keep, dtype=torch.bool)


def assert_same_as_reference(weight: torch.Tensor, norm: torch.Tensor, tiers: torch.Tensor, dense: float,
                             topk: float, b: int = 16, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    new, keep = progressive_step(weight, norm, tiers, dense, topk, block_size=b, k=k)
    ref_new, ref_keep = reference_step(weight, norm, tiers, dense, topk, b, k)
    assert torch.equal(new, ref_new)
    assert torch.equal(keep, ref_keep)
    return new, keep


def all_dense(weight: torch.Tensor, b: int) -> torch.Tensor:
    return torch.zeros(weight.shape[0] // b, weight.shape[1] // b, dtype=torch.uint8)


# ---- the cases ----


def random_case(seed: int, kind: str, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = int(torch.randint(b, 4 * b + b // 2, (1,), generator=g))
    inp = int(torch.randint(b, 5 * b + 3, (1,), generator=g))
    if kind == "normal":
        w = torch.randn(out, inp, generator=g)
        norm = torch.rand(inp, generator=g) * 3
    elif kind == "integers":  # many equal scores, inside groups and between blocks
        w = torch.randint(-2, 3, (out, inp), generator=g).float()
        norm = torch.randint(0, 3, (inp,), generator=g).float()
    else:  # "dead": a third of the input features never fire
        w = torch.randn(out, inp, generator=g)
        norm = torch.rand(inp, generator=g) * (torch.rand(inp, generator=g) > 0.33)
    return w, norm


@pytest.mark.parametrize("kind", ["normal", "integers", "dead"])
@pytest.mark.parametrize("b,k", [(16, 10), (8, 3), (4, 1), (12, 7)])
@pytest.mark.parametrize("seed", range(3))
def test_two_iterations_match_the_reference(seed: int, b: int, k: int, kind: str) -> None:
    w, norm = random_case(seed * 7 + b, kind, b)
    dense1 = [0.9, 0.7, 0.55][seed]
    tiers, keep = assert_same_as_reference(w, norm, all_dense(w, b), dense1, 0.0, b, k)
    w = w * keep
    assert_same_as_reference(w, norm, tiers, dense1 - 0.25, 0.15 + 0.1 * seed, b, k)


def test_five_chained_iterations_of_the_seed_schedule() -> None:
    """Each iteration gets the 'fine-tuned' weights of the last (survivors rescaled) and fresh norms."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(8 * 8 + 5, 10 * 8 + 6, generator=g)  # 8 x 10 full blocks of 8, plus partial ones
    tiers = all_dense(w, 8)
    for dense, topk in SEED_SCHEDULE:
        norm = torch.rand(w.shape[1], generator=g) * (torch.rand(w.shape[1], generator=g) > 0.1)
        tiers, keep = assert_same_as_reference(w, norm, tiers, dense, topk, b=8, k=5)
        w = w * keep * (1 + 0.3 * torch.randn(w.shape, generator=g))  # masks hold through the fine-tune
    assert tiers.tolist() != all_dense(w, 8).tolist()
    counts = torch.bincount(tiers.flatten().long(), minlength=3).tolist()
    assert counts == [round(0.35 * 80), 80 - round(0.35 * 80) - round(0.2 * 80), round(0.2 * 80)]


@pytest.mark.parametrize("dense,topk", [(0.5, 0.0), (0.7, 0.1), (0.3, 0.5), (0.1, 0.1), (0.0, 1.0), (1.0, 0.0)])
@pytest.mark.parametrize("blocks", [(1, 5), (3, 3), (1, 7)])
def test_fractions_that_need_rounding(blocks: tuple[int, int], dense: float, topk: float) -> None:
    g = torch.Generator().manual_seed(blocks[0] * 10 + blocks[1])
    w = torch.randn(blocks[0] * 4, blocks[1] * 4 + 1, generator=g)
    norm = torch.rand(w.shape[1], generator=g)
    tiers, _ = assert_same_as_reference(w, norm, all_dense(w, 4), dense, topk, b=4, k=2)
    n = blocks[0] * blocks[1]
    assert int((tiers == DENSE).sum()) == round(dense * n)


def test_exact_halves_round_to_even() -> None:
    """5 blocks at 50% dense: round(2.5) == 2 keeps 2 dense; 7 blocks: round(3.5) == 4."""
    for cols, kept in ((5, 2), (7, 4)):
        w = torch.ones(4, 4 * cols)
        tiers, _ = progressive_step(w, torch.ones(4 * cols), all_dense(w, 4), 0.5, 0.0, block_size=4, k=2)
        assert int((tiers == DENSE).sum()) == kept


def test_equal_scores_demote_lower_block_index_and_keep_lower_entries() -> None:
    """A constant weight ties everything: row-major order decides blocks, then entries."""
    w = torch.ones(8, 12)
    tiers, keep = progressive_step(w, torch.ones(12), all_dense(w, 4), 4 / 6, 1 / 6, block_size=4, k=3)
    # phase 1 demotes blocks 0 and 1; on 2:4 weights both score 8 (< 16), block 0 goes on to top-k
    assert tiers.tolist() == [[TOPK, SEMI, DENSE], [DENSE, DENSE, DENSE]]
    semi = keep[0:4, 4:8].tolist()
    assert all(row == [True, True, False, False] for row in semi)  # equal S keeps the lower column
    top = keep[0:4, 0:4]
    assert top.flatten().nonzero().flatten().tolist() == [0, 1, 4]  # the first 3 survivors, row-major
    assert bool(keep[4:, :].all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_other_weight_dtypes_match_the_reference(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(3)
    w = torch.randn(40, 36, generator=g).to(dtype)
    norm = torch.rand(36, generator=g)
    tiers, keep = assert_same_as_reference(w, norm, all_dense(w, 8), 0.5, 0.25, b=8, k=6)
    assert keep.dtype == torch.bool and keep.shape == w.shape


def test_float64_norm_scores_in_float64() -> None:
    g = torch.Generator().manual_seed(4)
    w = torch.randn(24, 40, generator=g)
    assert_same_as_reference(w, torch.rand(40, generator=g, dtype=torch.float64), all_dense(w, 8), 0.4, 0.2, 8, 6)


def test_bf16_block_scores_are_float32_scores_summed_in_float64() -> None:
    g = torch.Generator().manual_seed(6)
    w = torch.randn(32, 48, generator=g).to(torch.bfloat16)
    norm = torch.rand(48, generator=g)
    scores = block_scores(w, norm)
    assert scores.dtype == torch.float64 and scores.shape == (2, 3)
    assert torch.equal(scores, block_scores(w.float(), norm))  # bf16 -> fp32 is exact; S rounds once in fp32
    ref = Reference(w, norm, 16, 10)
    assert scores.flatten().tolist() == [ref.score(i) for i in range(6)]


def test_block_scores_follow_the_documented_order() -> None:
    """2^53 + 1 rounds back to 2^53 (ties to even): the fold (x0 + x2) + (x1 + x3) of one row shows the order."""
    big = float(2**53)
    w = torch.zeros(4, 4)
    w[0] = torch.tensor([big, 1.0, 1.0, 0.0])  # (2^53 + 1) + (1 + 0) -> 2^53 + 1 -> 2^53
    assert block_scores(w, torch.ones(4), block_size=4).item() == big
    w[0] = torch.tensor([big, 1.0, 0.0, 1.0])  # (2^53 + 0) + (1 + 1) -> 2^53 + 2, exact
    assert block_scores(w, torch.ones(4), block_size=4).item() == big + 2
    w = torch.zeros(4, 4)
    w[:, 0] = torch.tensor([big, 1.0, 1.0, 0.0])  # rows fold the same way first
    assert block_scores(w, torch.ones(4), block_size=4).item() == big


def test_partial_blocks_are_not_scored_and_stay_whole() -> None:
    g = torch.Generator().manual_seed(8)
    w = torch.randn(21, 19, generator=g)  # 2 x 2 full blocks of 8, 5 trailing rows and 3 trailing columns
    assert block_scores(w, torch.rand(19, generator=g), block_size=8).shape == (2, 2)
    tiers, keep = assert_same_as_reference(w, torch.rand(19, generator=g), all_dense(w, 8), 0.0, 1.0, 8, 1)
    assert tiers.tolist() == [[TOPK, TOPK], [TOPK, TOPK]]
    assert bool(keep[16:, :].all()) and bool(keep[:, 16:].all())
    assert int(keep[:16, :16].sum()) == 4


def test_keep_is_the_fine_tune_mask_of_the_pruned_weight() -> None:
    g = torch.Generator().manual_seed(9)
    w = torch.randn(36, 50, generator=g)
    w[w.abs() < 0.3] = 0  # natural zeros inside dense blocks stay in the mask
    tiers, keep = progressive_step(w, torch.rand(50, generator=g), all_dense(w, 8), 0.5, 0.3, 8, 4)
    assert torch.equal(keep, keep_mask(w * keep, tiers, 8))
    dense = keep[:8, :8] if tiers[0, 0] == DENSE else None
    assert dense is None or bool(dense.all())


def test_a_transposed_weight_gives_the_same_result_as_a_contiguous_one() -> None:
    g = torch.Generator().manual_seed(10)
    w = torch.randn(40, 34, generator=g).t()  # [34, 40] with column-major strides
    norm = torch.rand(40, generator=g)
    tiers, keep = assert_same_as_reference(w, norm, all_dense(w, 8), 0.5, 0.2, 8, 5)
    again, keep_c = progressive_step(w.contiguous(), norm, all_dense(w, 8), 0.5, 0.2, 8, 5)
    assert torch.equal(tiers, again) and torch.equal(keep, keep_c)


def test_when_rounded_targets_overlap_phase_2_takes_every_semi_block() -> None:
    """3 blocks at dense .5 / top-k .5: round(1.5) == 2 dense and 2 top-k cannot both hold; dense wins."""
    g = torch.Generator().manual_seed(11)
    w = torch.randn(4, 12, generator=g)
    tiers, _ = assert_same_as_reference(w, torch.rand(12, generator=g), all_dense(w, 4), 0.5, 0.5, 4, 2)
    assert sorted(tiers.flatten().tolist()) == [DENSE, DENSE, TOPK]
