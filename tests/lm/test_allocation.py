"""lm/allocation: OWL's outlier ratios and per-layer targets (progressive and wanda-unstructured)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tierctl.campaign.config import from_dict
from tierctl.errors import BadInput
from tierctl.lm.allocation import (
    MatrixBlocks,
    layer_weights,
    matrix_blocks,
    outlier_ratios,
    progressive_targets,
    shift_profile,
    unstructured_sparsities,
)
from tierctl.lm.models import load_model, prunable_linears
from tierctl.lm.prune import prune_baseline, prune_model, reached_counts

B, K, LAM = 16, 10, 0.08
# (dense, topk) of the seed schedule's five rows.
ROWS = [(0.90, 0.00), (0.80, 0.10), (0.65, 0.15), (0.50, 0.20), (0.35, 0.20)]
# Full blocks of the matrices of one decoder layer (a Llama-like mix of shapes).
LAYER_BLOCKS = [16, 8, 8, 16, 48, 48, 48]


def windows(n: int = 6, seqlen: int = 32, seed: int = 3) -> torch.Tensor:
    return torch.randint(1, 512, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def counts(t: torch.Tensor) -> tuple[int, int]:
    return int((t == 0).sum()), int((t == 2).sum())


def uniform_totals(blocks: list[int], dense: float, topk: float) -> tuple[int, int]:
    """The uniform allocation's model-wide DENSE / TOPK counts: docs/tiers.md's rounding per matrix."""
    per = [reached_counts(n, dense, topk) for n in blocks]
    return sum(p[0] for p in per), sum(p[1] for p in per)


# ---- the outlier ratio ----


def direct_ratios(model: torch.nn.Module, ids: torch.Tensor, m: float) -> list[float]:
    """D_l counted directly: hooks on the unpruned model's Linears, one whole forward pass."""
    linears = prunable_linears(model)
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in linears}
    hooks = [lin.register_forward_hook(lambda mod, a, o, n=n: seen[n].append(a[0].double()))
             for n, lin in linears.items()]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in hooks:
        h.remove()
    scores: dict[int, list[torch.Tensor]] = {}
    for name, lin in linears.items():
        norm = torch.cat([x.reshape(-1, x.shape[-1]) for x in seen[name]]).square().sum(0).sqrt()
        scores.setdefault(int(name.split(".")[2]), []).append((lin.weight.double().abs() * norm).flatten())
    out = []
    for i in sorted(scores):
        a = torch.cat(scores[i])  # every score of layer i
        out.append(int((a > m * a.mean()).sum()) / a.numel())
    return out


@pytest.fixture(scope="module")
def unpruned() -> torch.nn.Module:
    """tiny-llama as loaded; the tests that share it never prune it (one checks exactly that)."""
    return load_model("tiny-llama", device="cpu")[0]


@pytest.mark.parametrize("m", [2.0, 5.0])
def test_outlier_ratio_of_every_layer_matches_a_direct_count(unpruned: torch.nn.Module, m: float):
    model = unpruned
    got = outlier_ratios(model, windows(), m, batch_size=4)
    want = direct_ratios(model, windows(), m)
    assert len(got) == model.config.num_hidden_layers
    weights = layer_weights(model)
    for g, w, n in zip(got, want, weights, strict=True):
        assert 0 < g < 1
        assert abs(g - w) <= 1 / n  # at most one entry on the other side of the threshold (float rounding)


def test_the_ratios_pass_prunes_nothing(unpruned: torch.nn.Module):
    model = unpruned
    before = {n: lin.weight.clone() for n, lin in prunable_linears(model).items()}
    outlier_ratios(model, windows(), 5.0)
    for name, lin in prunable_linears(model).items():
        assert torch.equal(lin.weight, before[name]), name


def test_shift_profile_spans_minus_to_plus_lambda_in_proportion_to_the_ratio():
    assert shift_profile([0.01, 0.03, 0.02], 0.08) == pytest.approx([-0.08, 0.08, 0.0])
    assert shift_profile([0.02, 0.02], 0.08) == [0.0, 0.0]
    assert shift_profile([0.01, 0.03], 0.0) == [0.0, 0.0]


# ---- progressive targets, at the algorithm level ----


def run_rows(ratios: list[float], lam: float, rows: list[tuple[float, float]] = ROWS) -> list[Any]:
    """Five iterations of targets, each starting from the counts the previous one reached."""
    cur = {f"l{i}.m{j}": MatrixBlocks(i, n, n, 0) for i in range(len(ratios)) for j, n in enumerate(LAYER_BLOCKS)}
    out = []
    for dense, topk in rows:
        alloc = progressive_targets(cur, ratios, dense, topk, lam)
        out.append((dense, topk, dict(cur), alloc))
        cur = {k: MatrixBlocks(mx.layer, mx.blocks, round(alloc.targets[k][0] * mx.blocks),
                               round(alloc.targets[k][1] * mx.blocks)) for k, mx in cur.items()}
    return out


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 0.05), min_size=2, max_size=12), st.sampled_from([0.02, 0.08, 0.2]))
def test_targets_keep_model_wide_counts_stay_within_lambda_and_never_promote(ratios: list[float], lam: float):
    for dense, topk, before, alloc in run_rows(ratios, lam):
        names = list(before)
        got = {k: (round(alloc.targets[k][0] * before[k].blocks), round(alloc.targets[k][1] * before[k].blocks))
               for k in names}
        # model-wide counts: exactly the uniform allocation's
        assert alloc.blocks_off == {"dense": 0, "topk": 0}
        assert (sum(g[0] for g in got.values()), sum(g[1] for g in got.values())) == \
            uniform_totals([before[k].blocks for k in names], dense, topk)
        for k in names:
            mx, (d, t) = before[k], got[k]
            u_d, u_t = reached_counts(mx.blocks, dense, topk)
            assert abs(d - u_d) <= math.floor(lam * mx.blocks + 1e-9) and abs(t - u_t) <= math.floor(
                lam * mx.blocks + 1e-9), k  # within lambda of the uniform count
            assert d <= mx.dense and t >= mx.topk and d + t <= mx.blocks, k  # tiers only go down
        for layer in alloc.layers:
            blocks = [before[k].blocks for k in names if before[k].layer == layer["layer"]]
            u = uniform_totals(blocks, dense, topk)
            assert abs(layer["dense"] - u[0] / sum(blocks)) <= lam + 1e-12
            assert abs(layer["topk"] - u[1] / sum(blocks)) <= lam + 1e-12


def test_the_layer_with_the_most_outliers_keeps_the_most_dense_and_the_fewest_topk_blocks():
    ratios = [0.01, 0.04, 0.02, 0.03]
    dense, topk, _, alloc = run_rows(ratios, LAM)[3]  # row 4: 0.50 / 0.20
    by_dense = sorted(alloc.layers, key=lambda layer: layer["dense"])
    assert [layer["layer"] for layer in by_dense] == [0, 2, 3, 1]
    assert alloc.layers[1]["dense"] > dense > alloc.layers[0]["dense"]
    assert alloc.layers[1]["topk"] < topk < alloc.layers[0]["topk"]


def test_lambda_zero_gives_the_uniform_counts():
    for dense, topk, before, alloc in run_rows([0.01, 0.04, 0.02], 0.0):
        for k, mx in before.items():
            got = (round(alloc.targets[k][0] * mx.blocks), round(alloc.targets[k][1] * mx.blocks))
            assert got == reached_counts(mx.blocks, dense, topk), k


# ---- on a model: five progressive iterations, and the one-shot baseline ----


@pytest.fixture(scope="module")
def owl_chain() -> tuple[list[float], list[Any], list[Any]]:
    """tiny-llama through the five seed-schedule rows with OWL (ratios measured once, before iteration 1)."""
    model, _ = load_model("tiny-llama", device="cpu")
    ratios = outlier_ratios(model, windows(), 5.0)
    prev, results, allocs = None, [], []
    for dense, topk in ROWS:
        alloc = progressive_targets(matrix_blocks(model, prev, B), ratios, dense, topk, LAM)
        r = prune_model(model, windows(), prev, dense, topk, B, K, targets=alloc.targets)
        results.append(r)
        allocs.append(alloc)
        prev = r.tiers
    return ratios, results, allocs


def test_five_owl_iterations_reach_the_targets_with_the_uniform_totals(owl_chain):
    _, results, allocs = owl_chain
    for (dense, topk), r, alloc in zip(ROWS, results, allocs, strict=True):
        blocks = [t.numel() for t in r.tiers.values()]
        got = [counts(t) for t in r.tiers.values()]
        assert (sum(g[0] for g in got), sum(g[1] for g in got)) == uniform_totals(blocks, dense, topk)
        for name, t in r.tiers.items():
            assert counts(t) == (round(alloc.targets[name][0] * t.numel()), round(alloc.targets[name][1] * t.numel()))
        assert set(r.violations.values()) == {0}


def test_five_owl_iterations_only_demote(owl_chain):
    _, results, _ = owl_chain
    for a, b in zip(results, results[1:], strict=False):
        for name in a.tiers:
            assert bool((b.tiers[name] >= a.tiers[name]).all()), name


def test_owl_with_lambda_zero_prunes_exactly_like_uniform():
    owl, _ = load_model("tiny-llama", device="cpu")
    uni, _ = load_model("tiny-llama", device="cpu")
    ratios = outlier_ratios(owl, windows(), 5.0)
    prev_o = prev_u = None
    for dense, topk in ROWS[:3]:
        alloc = progressive_targets(matrix_blocks(owl, prev_o, B), ratios, dense, topk, 0.0)
        ro = prune_model(owl, windows(), prev_o, dense, topk, B, K, targets=alloc.targets)
        ru = prune_model(uni, windows(), prev_u, dense, topk, B, K)
        prev_o, prev_u = ro.tiers, ru.tiers
        for name in ru.tiers:
            assert torch.equal(ro.tiers[name], ru.tiers[name]), name
    for (name, a), b in zip(prunable_linears(owl).items(), prunable_linears(uni).values(), strict=True):
        assert torch.equal(a.weight, b.weight), name


def test_owl_unstructured_keeps_the_mean_sparsity_and_each_layer_within_lambda():
    model, _ = load_model("tiny-llama", device="cpu")
    ratios = [0.01, 0.03]
    weights = layer_weights(model)
    per = unstructured_sparsities(weights, ratios, 0.7, LAM)
    assert per == pytest.approx([0.7 + LAM, 0.7 - LAM])
    assert sum(s * w for s, w in zip(per, weights, strict=True)) / sum(weights) == pytest.approx(0.7)
    assert unstructured_sparsities(weights, ratios, 0.7, 0.0) == [0.7, 0.7]
    sparsities = {n: per[int(n.split(".")[2])] for n in prunable_linears(model)}
    r = prune_baseline(model, windows(), "wanda-unstructured", 0.7, sparsities=sparsities)
    for name, lin in prunable_linears(model).items():
        cols = lin.weight.shape[1]
        assert r.per_layer[name]["sparsity"] == int(cols * sparsities[name]) / cols, name


def test_unstructured_shifts_are_clipped_to_lambda_and_rebalanced():
    # One outlier-rich layer among four: OWL's mean-subtraction would move it by 1.5 lambda.
    per = unstructured_sparsities([100, 100, 100, 100], [0.0, 0.0, 0.0, 0.04], 0.5, 0.1)
    assert max(abs(s - 0.5) for s in per) <= 0.1 + 1e-12
    assert sum(per) / 4 == pytest.approx(0.5)
    assert per[3] == pytest.approx(0.4)


# ---- campaign.toml ----


@pytest.mark.parametrize(("prune", "message"), [
    ({"allocation": "owls"}, "[prune] allocation must be one of uniform, owl, got 'owls'"),
    ({"allocation": "owl", "method": "wanda-nm"}, "[prune] allocation owl applies to progressive"),
    ({"owl_m": 0}, "[prune] owl_m must be in 1e-09..1e+06, got 0.0"),
    ({"owl_lambda": 0.6}, "[prune] owl_lambda must be in [0, 0.5], got 0.6"),
    ({"owl_lambda": -0.1}, "[prune] owl_lambda must be in [0, 0.5], got -0.1"),
])
def test_bad_allocation_settings_are_refused_naming_the_key(prune: dict[str, Any], message: str):
    with pytest.raises(BadInput, match=None) as e:
        from_dict({"prune": prune})
    assert message in str(e.value)


def test_allocation_defaults_to_uniform_with_owls_published_settings():
    p = from_dict({}).prune
    assert (p.allocation, p.owl_m, p.owl_lambda) == ("uniform", 5.0, 0.08)
