"""Tier-map files, mask violations, composition and sparsity, the Wanda baseline masks, input checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tierctl.core.atomic import TMP_PREFIX
from tierctl.core.tiermap_io import load_tiers, save_tiers
from tierctl.core.tiers import (
    DENSE,
    SEMI,
    TOPK,
    block_scores,
    composition,
    count_violations,
    expected_sparsity,
    keep_mask,
    measured_sparsity,
    nm_mask,
    progressive_step,
    semi_mask,
    topk_mask,
    unstructured_mask,
)
from tierctl.errors import BadInput

Q, O = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.o_proj"


# ---- save / load ----


def test_round_trip_keeps_maps_names_and_metadata(tmp_path: Path) -> None:
    maps = {Q: torch.tensor([[0, 1], [2, 0]], dtype=torch.uint8), O: torch.full((3, 1), 2, dtype=torch.uint8)}
    path = tmp_path / "iter3" / "tiers.safetensors"
    save_tiers(path, maps, block_size=16, k=10, iteration=3)
    loaded, meta = load_tiers(path)
    assert sorted(loaded) == sorted(maps)
    assert all(torch.equal(loaded[n], maps[n]) and loaded[n].dtype == torch.uint8 for n in maps)
    assert meta == {"block_size": 16, "topk_per_block": 10, "iteration": 3}
    assert [p.name for p in path.parent.iterdir()] == ["tiers.safetensors"]  # no temporary left behind


def test_saving_again_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tiers.safetensors"
    save_tiers(path, {Q: torch.zeros(2, 2, dtype=torch.uint8)}, 16, 10, 1)
    save_tiers(path, {O: torch.ones(1, 1, dtype=torch.uint8)}, 8, 4, 2)
    maps, meta = load_tiers(path)
    assert list(maps) == [O] and meta == {"block_size": 8, "topk_per_block": 4, "iteration": 2}
    assert not list(tmp_path.glob(TMP_PREFIX + "*"))


def test_a_non_contiguous_map_on_any_device_is_saved_as_is(tmp_path: Path) -> None:
    t = torch.tensor([[0, 1, 2], [2, 1, 0]], dtype=torch.uint8).t()
    save_tiers(tmp_path / "t.safetensors", {Q: t}, 16, 10, 1)
    assert torch.equal(load_tiers(tmp_path / "t.safetensors")[0][Q], t)


@pytest.mark.parametrize("bad", [torch.zeros(2, 2), torch.zeros(2, 2, 2, dtype=torch.uint8)])
def test_save_refuses_maps_that_are_not_2d_uint8(tmp_path: Path, bad: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        save_tiers(tmp_path / "t.safetensors", {Q: bad}, 16, 10, 1)
    assert not list(tmp_path.iterdir())


def write_raw(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> Path:
    save_file(tensors, str(path), metadata=meta)
    return path


GOOD_META = {"block_size": "16", "topk_per_block": "10", "iteration": "1"}


@pytest.mark.parametrize(
    ("tensors", "meta", "why"),
    [
        ({Q: torch.zeros(2, 2)}, GOOD_META, "expected 2-D uint8"),
        ({Q: torch.zeros(2, 2, 2, dtype=torch.uint8)}, GOOD_META, "expected 2-D uint8"),
        ({Q: torch.full((2, 2), 3, dtype=torch.uint8)}, GOOD_META, "holds tier 3"),
        ({Q: torch.zeros(2, 2, dtype=torch.uint8)}, {"block_size": "16"}, "metadata lacks topk_per_block, iteration"),
        ({Q: torch.zeros(2, 2, dtype=torch.uint8)}, {**GOOD_META, "iteration": "two"}, "iteration='two'"),
    ],
)
def test_load_refuses_bad_contents_naming_the_file(tmp_path: Path, tensors: dict, meta: dict, why: str) -> None:
    path = write_raw(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(BadInput) as err:
        load_tiers(path)
    assert str(path) in str(err.value) and why in str(err.value)


def test_load_refuses_a_missing_or_garbage_file_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="missing.safetensors"):
        load_tiers(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01 definitely not safetensors")
    with pytest.raises(BadInput, match="junk.safetensors"):
        load_tiers(junk)


# ---- violations ----


def pruned(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(32, 48, generator=g)
    tiers, keep = progressive_step(w, torch.rand(48, generator=g) + 0.1, torch.zeros(2, 3, dtype=torch.uint8),
                                   2 / 6, 2 / 6, block_size=16, k=10)
    return tiers, w * keep


def test_a_freshly_pruned_weight_has_no_violations() -> None:
    tiers, w = pruned()
    assert sorted(tiers.flatten().tolist()) == [DENSE, DENSE, SEMI, SEMI, TOPK, TOPK]
    assert count_violations(w, tiers) == 0


def test_a_revived_weight_in_a_full_2_4_group_is_one_violation() -> None:
    tiers, w = pruned()
    r, c = (tiers == SEMI).nonzero()[0].tolist()
    group = w[r * 16, c * 16: c * 16 + 4]
    assert int((group != 0).sum()) == 2
    group[(group == 0).nonzero()[0]] = 0.5  # revive one pruned entry: 3 non-zeros in 4
    assert count_violations(w, tiers) == 1


def test_a_revived_weight_in_a_topk_block_is_one_violation() -> None:
    tiers, w = pruned()
    r, c = (tiers == TOPK).nonzero()[0].tolist()
    block = w[r * 16:(r + 1) * 16, c * 16:(c + 1) * 16]
    assert int((block != 0).sum()) == 10
    i, j = (block == 0).nonzero()[0].tolist()
    block[i, j] = -1.0  # revive one pruned entry: k + 1 non-zeros
    assert count_violations(w, tiers) == 1


def test_dense_and_partial_blocks_never_violate() -> None:
    w = torch.ones(20, 20)  # one full block of 16, partial rows and columns around it
    assert count_violations(w, torch.zeros(1, 1, dtype=torch.uint8)) == 0
    assert count_violations(w, torch.full((1, 1), SEMI, dtype=torch.uint8)) == 16 * 4  # every group holds 4


# ---- keep mask, composition, sparsity ----


def test_keep_mask_is_whole_for_dense_and_partial_blocks_and_non_zeros_elsewhere() -> None:
    w = torch.zeros(6, 9)  # 1 x 2 full blocks of 4, two partial rows, one partial column
    w[0, 0] = w[5, 6] = 1.0
    keep = keep_mask(w, torch.tensor([[SEMI, DENSE]], dtype=torch.uint8), block_size=4)
    expected = torch.zeros(6, 9, dtype=torch.bool)
    expected[0, 0] = True
    expected[:4, 4:8] = True  # the DENSE block, zeros included
    expected[4:, :] = True  # partial rows
    expected[:, 8:] = True  # partial column
    assert torch.equal(keep, expected)


def test_composition_counts_full_blocks() -> None:
    t = torch.tensor([[0, 0, 1, 2], [1, 1, 2, 0]], dtype=torch.uint8)
    assert composition(t) == {"dense": 3 / 8, "semi": 3 / 8, "topk": 2 / 8, "blocks": 8}
    assert composition(torch.zeros(0, 3, dtype=torch.uint8)) == {"dense": 0.0, "semi": 0.0, "topk": 0.0, "blocks": 0}


def test_expected_sparsity_of_the_seed_schedule() -> None:
    rows = [(0.9, 0.1, 0.0), (0.8, 0.1, 0.1), (0.65, 0.2, 0.15), (0.5, 0.3, 0.2), (0.35, 0.45, 0.2)]
    got = [expected_sparsity(r, 16, 10) for r in rows]
    assert [round(s, 3) for s in got] == [0.05, 0.146, 0.244, 0.342, 0.417]
    assert expected_sparsity({"dense": 0.8, "semi": 0.1, "topk": 0.1}) == got[1]
    assert expected_sparsity({"dense": 0.8, "mid_2_4": 0.1, "topk": 0.1}) == got[1]
    assert expected_sparsity((0, 0, 1), 4, 2) == 1 - 2 / 16


def test_measured_sparsity_counts_exact_zeros() -> None:
    assert measured_sparsity(torch.tensor([[0.0, 1e-30], [-0.0, 2.0]])) == 0.5
    assert measured_sparsity(torch.zeros(0, 4)) == 0.0


# ---- the one-shot Wanda baselines ----


def ref_keep_largest(row: list[float], n: int) -> list[bool]:
    chosen = set(sorted(range(len(row)), key=lambda j: (-row[j], j))[:n])
    return [j in chosen for j in range(len(row))]


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.3, 0.77, 1.0])
def test_unstructured_mask_prunes_int_of_each_row(ratio: float) -> None:
    g = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 4, (6, 23), generator=g).float()  # ties everywhere
    keep = unstructured_mask(scores, ratio)
    expected = [ref_keep_largest(row, 23 - int(23 * ratio)) for row in scores.tolist()]
    assert keep.tolist() == expected
    assert (keep.sum(1) == 23 - int(23 * ratio)).all()


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (4, 8), (3, 8), (2, 3), (0, 4), (4, 4)])
def test_nm_mask_keeps_n_of_every_m_input_columns(n: int, m: int) -> None:
    g = torch.Generator().manual_seed(n * 10 + m)
    scores = torch.randint(0, 3, (5, 26), generator=g).float()  # 26 = groups of m plus a partial one
    keep = nm_mask(scores, n, m)
    expected = []
    for row in scores.tolist():
        out: list[bool] = []
        for g0 in range(0, 26, m):
            out += ref_keep_largest(row[g0:g0 + m], n)
        expected.append(out)
    assert keep.tolist() == expected


def test_semi_and_topk_masks() -> None:
    s = torch.tensor([[1.0, 3.0, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0]])
    assert semi_mask(s).tolist() == [[False, True, True, False, True, True, False, False]]
    assert topk_mask(s, 3).tolist() == [[False, True, True, True, False, False, False, False]]
    big = torch.arange(300.0).flip(0).view(1, 300) % 7  # long rows take the topk path: ties at the cut
    assert topk_mask(big, 50).tolist() == [ref_keep_largest(big[0].tolist(), 50)]


# ---- what the functions refuse ----


def test_bad_inputs_are_refused_with_a_reason() -> None:
    w, norm, t = torch.randn(32, 32), torch.rand(32), torch.zeros(2, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="multiple of 4"):
        progressive_step(w, norm, torch.zeros(3, 3, dtype=torch.uint8), 0.5, 0.2, block_size=10)
    with pytest.raises(ValueError, match=r"uint8 \[2, 2\]"):
        progressive_step(w, norm, torch.zeros(2, 3, dtype=torch.uint8), 0.5, 0.2)
    with pytest.raises(ValueError, match="length 32"):
        progressive_step(w, torch.rand(31), t, 0.5, 0.2)
    with pytest.raises(ValueError, match="finite and >= 0"):
        block_scores(w, -norm)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        progressive_step(w, norm, t, 1.2, 0.0)
    with pytest.raises(ValueError, match="k must be"):
        progressive_step(w, norm, t, 0.5, 0.2, k=257)
    bad = w.clone()
    bad[3, 3] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        progressive_step(bad, norm, t, 0.5, 0.2)


def test_a_weight_smaller_than_a_block_is_all_partial() -> None:
    w = torch.randn(7, 30)
    tiers, keep = progressive_step(w, torch.rand(30), torch.zeros(0, 1, dtype=torch.uint8), 0.0, 1.0)
    assert tiers.shape == (0, 1) and bool(keep.all())
