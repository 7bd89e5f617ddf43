"""Comparing tier maps: transition counts against a direct count, groupings, promotions, refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tierctl.core.diff import (
    TierDiff,
    diff_tier_maps,
    matrix_depth,
    matrix_kind,
    transition_matrix,
)
from tierctl.errors import BadInput


def direct_count(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """The obvious loop: visit every block, add one to M[tier in A][tier in B]."""
    m = [[0, 0, 0] for _ in range(3)]
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            m[int(a[r, c])][int(b[r, c])] += 1
    return m


def pair(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 3, shape, dtype=np.uint8), rng.integers(0, 3, shape, dtype=np.uint8))


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (16, 43), (0, 5), (256, 688)])
def test_transition_matrix_matches_a_direct_count(shape):
    a, b = pair(shape, seed=sum(shape))
    assert transition_matrix(a, b).tolist() == direct_count(a, b)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 12), st.integers(0, 12), st.data())
def test_transition_matrix_matches_a_direct_count_on_any_maps(rows, cols, data):
    a = data.draw(arrays(np.uint8, (rows, cols), elements=st.integers(0, 2)))
    b = data.draw(arrays(np.uint8, (rows, cols), elements=st.integers(0, 2)))
    m = transition_matrix(a, b)
    assert m.dtype == np.int64 and m.shape == (3, 3)
    assert m.tolist() == direct_count(a, b)


NAMES = [f"model.layers.{i}.{part}" for i in (0, 1, 2, 10)
         for part in ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")]


def progressive(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A then B, one campaign: B demotes some blocks of A (DENSE -> SEMI/TOPK, SEMI -> TOPK), never promotes."""
    rng = np.random.default_rng(seed)
    a, b = {}, {}
    for i, name in enumerate(NAMES):
        ta = rng.integers(0, 3, (2 + i % 3, 4), dtype=np.uint8)
        a[name] = ta
        b[name] = np.maximum(ta, rng.integers(0, 3, ta.shape, dtype=np.uint8)).astype(np.uint8)
    return a, b


def test_per_matrix_counts_moved_and_agreement():
    a, b = progressive()
    d = diff_tier_maps(a, b)
    for name in NAMES:
        m = d.matrices[name]
        assert m.counts.tolist() == direct_count(a[name], b[name])
        same = int((a[name] == b[name]).sum())
        assert (m.blocks, m.moved) == (a[name].size, a[name].size - same)
        assert m.agreement == pytest.approx(same / a[name].size)
        assert m.promotions == 0
    assert d.promoted == []
    assert d.total.counts.tolist() == np.sum([direct_count(a[n], b[n]) for n in NAMES], axis=0).tolist()


def test_matrices_come_in_model_order():
    a, b = progressive()
    alphabetical = dict(sorted(a.items()))  # as a safetensors file lists them: layers.10 before layers.2
    assert list(diff_tier_maps(alphabetical, b).matrices) == NAMES  # by layer, then q o gate down


def test_promotions_are_counted_and_the_matrix_named():
    a, b = progressive()
    name = "model.layers.1.mlp.gate_proj"
    a[name][0, :3] = [2, 2, 1]
    b[name][0, :3] = [0, 1, 0]  # top-k -> dense, top-k -> 2:4, 2:4 -> dense
    d = diff_tier_maps(a, b)
    assert d.promoted == [name]
    assert d.matrices[name].promotions == 3
    assert d.total.promotions == 3
    assert d.matrices[name].counts[2, 0] >= 1 and d.matrices[name].counts[2, 1] >= 1


def test_the_same_maps_agree_entirely():
    a, _ = progressive()
    d = diff_tier_maps(a, a)
    assert (d.total.moved, d.total.agreement, d.total.promotions) == (0, 1.0, 0)


def test_kind_and_depth_come_from_the_name():
    assert [matrix_kind(n) for n in ("model.layers.0.self_attn.q_proj", "model.layers.3.mlp.down_proj",
                                     "model.decoder.layers.2.fc1", "model.decoder.layers.2.self_attn.out_proj",
                                     "w2")] == ["q", "down", "fc1", "out", "w2"]
    assert [matrix_depth(n) for n in ("model.layers.12.mlp.up_proj", "transformer.h.3.attn.c_attn", "w2")] \
        == [12, 3, None]


def test_groups_by_kind_and_by_depth_sum_their_matrices():
    a, b = progressive()
    d = diff_tier_maps(a, b)
    kinds = d.by_kind()
    assert list(kinds) == ["q", "o", "gate", "down"]
    for kind, t in kinds.items():
        members = [n for n in NAMES if matrix_kind(n) == kind]
        assert t.counts.tolist() == np.sum([direct_count(a[n], b[n]) for n in members], axis=0).tolist()
    depths = d.by_depth()
    assert list(depths) == [0, 1, 2, 10]
    for depth, t in depths.items():
        members = [n for n in NAMES if f".layers.{depth}." in n]
        assert t.counts.tolist() == np.sum([direct_count(a[n], b[n]) for n in members], axis=0).tolist()


def test_unknown_kinds_and_names_without_a_layer_keep_their_own_group():
    m = np.zeros((1, 2), np.uint8)
    up = "model.layers.0.mlp.up_proj"
    d = diff_tier_maps({"lm.fc1": m, up: m}, {"lm.fc1": m + 1, up: m})
    assert list(d.by_kind()) == ["up", "fc1"]
    assert list(d.by_depth()) == [0, None]
    assert d.to_json()["by_depth"]["none"]["moved"] == 2


def test_layer_glob_keeps_matching_matrices_only():
    a, b = progressive()
    d = diff_tier_maps(a, b, layer="*.mlp.*")
    assert list(d.matrices) == [n for n in NAMES if ".mlp." in n]
    assert list(diff_tier_maps(a, b, layer="model.layers.1?.*").matrices) == [n for n in NAMES if ".10." in n]
    with pytest.raises(BadInput, match=r"^--layer \*v_proj: matches no matrix \(names look like model\.layers\.0\."):
        diff_tier_maps(a, b, layer="*v_proj")


def test_json_is_the_spec_shape():
    a, b = progressive()
    d = diff_tier_maps(a, b, meta_a={"block_size": 16, "iteration": 1}, meta_b={"block_size": 16, "iteration": 2},
                       label_a="camp@1", label_b="camp@2")
    doc = json.loads(json.dumps(d.to_json()))
    assert set(doc["layers"]) == set(NAMES)
    for name in NAMES:
        assert doc["layers"][name]["transitions"] == direct_count(a[name], b[name])
    assert doc["total"]["transitions"] == d.total.counts.tolist()
    assert doc["a"] == {"label": "camp@1", "block_size": 16, "iteration": 1}
    assert doc["promoted"] == []


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    a, b = progressive()
    d = diff_tier_maps({k: torch.from_numpy(v) for k, v in a.items()}, b)
    assert d.matrices == diff_tier_maps(a, b).matrices


def test_different_sets_of_matrices_are_refused_naming_one():
    a, b = progressive()
    del b["model.layers.2.mlp.down_proj"]
    with pytest.raises(BadInput) as info:
        diff_tier_maps(a, b, label_a="x@1", label_b="y@3")
    assert str(info.value) == ("y@3 has no matrix model.layers.2.mlp.down_proj that x@1 has (16 vs 15 matrices: "
                               "not the same model?)")
    b["model.layers.2.mlp.down_proj"] = a["model.layers.2.mlp.down_proj"]
    b["extra.w"] = np.zeros((1, 1), np.uint8)
    with pytest.raises(BadInput, match=r"^A has no matrix extra\.w that B has \(16 vs 17 matrices"):
        diff_tier_maps(a, b)


def test_different_shapes_are_refused_naming_the_matrix_and_both_shapes():
    a, b = progressive()
    b["model.layers.1.self_attn.o_proj"] = np.zeros((3, 2), np.uint8)
    with pytest.raises(BadInput) as info:
        diff_tier_maps(a, b)
    assert str(info.value) == ("model.layers.1.self_attn.o_proj: tier maps differ in shape: "
                               f"A is {a['model.layers.1.self_attn.o_proj'].shape[0]}x4 blocks, B is 3x2")


def test_different_block_sizes_are_refused():
    a, b = progressive()
    with pytest.raises(BadInput) as info:
        diff_tier_maps(a, b, meta_a={"block_size": "16"}, meta_b={"block_size": "32"})
    assert str(info.value) == "block sizes differ: A has 16x16 blocks, B has 32x32"


@pytest.mark.parametrize(("bad", "message"), [
    (np.full((2, 2), 3, np.uint8), "B: m holds tier 3, expected 0 (dense), 1 (2:4) or 2 (top-k)"),
    (np.zeros((2, 2, 1), np.uint8), "B: m has 3 dimensions, expected a 2-D tier map"),
    (np.zeros((2, 2), np.float32), "B: m is float32, expected integer tiers (uint8)"),
])
def test_maps_that_are_not_tier_maps_are_refused(bad, message):
    with pytest.raises(BadInput) as info:
        diff_tier_maps({"m": np.zeros((2, 2), np.uint8)}, {"m": bad})
    assert str(info.value) == message


def test_an_empty_side_is_refused():
    with pytest.raises(BadInput, match="^B: holds no tier maps$"):
        diff_tier_maps({"m": np.zeros((1, 1), np.uint8)}, {})


def test_diff_and_schedule_import_without_torch():
    code = ("import sys, tierctl.core.diff, tierctl.core.schedule, tierctl.render.schedule; "
            "print(sorted(m for m in ('torch', 'pandas', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tierdiff_is_plain_data():
    d = TierDiff({})
    assert d.total.blocks == 0 and d.total.agreement == 1.0 and d.to_json()["layers"] == {}
