"""lm/prune: progressive iterations and Wanda baselines over whole tiny models, layer by layer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tierctl.core.events import EventSink, read_events
from tierctl.core.tiers import count_violations
from tierctl.errors import BadInput
from tierctl.lm.calibrate import accumulate_norms, capture_inputs
from tierctl.lm.models import decoder_layers, load_model, prunable_linears
from tierctl.lm.prune import check_history, prune_baseline, prune_model

B, K = 16, 10
# (dense, topk) of the seed schedule's first three rows.
ROWS = [(0.90, 0.00), (0.80, 0.10), (0.65, 0.15)]


def windows(n: int = 6, seqlen: int = 32, seed: int = 3) -> torch.Tensor:
    return torch.randint(1, 512, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def counts(t: torch.Tensor) -> tuple[int, int, int]:
    return int((t == 0).sum()), int((t == 1).sum()), int((t == 2).sum())


def expected_counts(blocks: int, dense: float, topk: float) -> tuple[int, int, int]:
    """docs/tiers.md written out: Python round of the cumulative fractions."""
    d, t = round(dense * blocks), round(topk * blocks)
    return d, blocks - d - t, t


def chain(preset: str, rows: list[tuple[float, float]], batch_size: int = 4) -> tuple[Any, list[Any]]:
    model, _ = load_model(preset, device="cpu")
    results, prev = [], None
    for dense, topk in rows:
        r = prune_model(model, windows(), prev, dense, topk, B, K, batch_size)
        results.append(r)
        prev = r.tiers
    return model, results


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-opt", "tiny-qwen2"])
def test_three_chained_iterations_give_the_schedules_exact_composition_per_matrix(preset: str):
    model, results = chain(preset, ROWS)
    linears = prunable_linears(model)
    for (dense, topk), r in zip(ROWS, results, strict=True):
        assert list(r.tiers) == list(linears)
        for name, t in r.tiers.items():
            assert t.dtype == torch.uint8 and t.device.type == "cpu"
            assert counts(t) == expected_counts(t.numel(), dense, topk), name
    for name, lin in linears.items():
        assert count_violations(lin.weight, results[-1].tiers[name], B, K) == 0, name
    assert results[-1].violations == {name: 0 for name in linears}


def test_a_bfloat16_model_is_pruned_to_the_same_composition():
    model, _ = load_model("tiny-llama", device="cpu", dtype="bfloat16")
    r = prune_model(model, windows(), None, 0.80, 0.10, B, K, 4)
    for name, lin in prunable_linears(model).items():
        assert lin.weight.dtype == torch.bfloat16
        assert counts(r.tiers[name]) == expected_counts(r.tiers[name].numel(), 0.80, 0.10), name
        assert count_violations(lin.weight, r.tiers[name], B, K) == 0, name
        assert r.act_norms[name].dtype == torch.float32


def test_tier_maps_only_go_down_and_pruned_weights_stay_zero():
    model, _ = load_model("tiny-llama", device="cpu")
    prev, zeros_before = None, {n: torch.zeros_like(lin.weight, dtype=torch.bool)
                                for n, lin in prunable_linears(model).items()}
    for dense, topk in ROWS:
        r = prune_model(model, windows(), prev, dense, topk, B, K, 4)
        for name, lin in prunable_linears(model).items():
            if prev is not None:
                assert bool((r.tiers[name] >= prev[name]).all()), name
            zero = lin.weight == 0
            assert bool(zero[zeros_before[name]].all()), name  # no pruned weight comes back
            zeros_before[name] = zero
        prev = r.tiers


def test_partial_blocks_of_opt_stay_dense():
    model, _ = chain("tiny-opt", ROWS)
    fc1 = prunable_linears(model)["model.decoder.layers.0.fc1"].weight  # [200, 48]: rows 192..199 are partial
    assert not bool((fc1[192:] == 0).any())
    fc2 = prunable_linears(model)["model.decoder.layers.1.fc2"].weight  # [48, 200]: columns 192..199 are partial
    assert not bool((fc2[:, 192:] == 0).any())


def test_result_totals_are_measured_over_all_prunable_weights():
    model, results = chain("tiny-llama", ROWS[:2])
    r = results[-1]
    lins = prunable_linears(model).values()
    zeros = sum(int((lin.weight == 0).sum()) for lin in lins)
    total = sum(lin.weight.numel() for lin in lins)
    assert (r.zeros, r.weights) == (zeros, total) and r.sparsity == zeros / total
    blocks = {n: t.numel() for n, t in r.tiers.items()}
    for tier, code in (("dense", 0), ("semi", 1), ("topk", 2)):
        want = sum(int((t == code).sum()) for t in r.tiers.values()) / sum(blocks.values())
        assert r.composition[tier] == pytest.approx(want)
    # tiny-llama has full blocks only: 2:4 blocks are half zero, top-k blocks keep at most 10 of 256.
    assert r.expected_sparsity == pytest.approx(r.composition["semi"] * 0.5 + r.composition["topk"] * (1 - K / B**2))
    assert r.sparsity >= r.expected_sparsity - 1e-9
    for name, entry in r.per_layer.items():
        w = prunable_linears(model)[name].weight
        assert entry["sparsity"] == pytest.approx(float((w == 0).float().mean()))
        assert set(entry) == {"dense", "semi", "topk", "sparsity"}


def test_act_norms_are_float32_cpu_vectors_of_every_matrix():
    model, results = chain("tiny-llama", ROWS[:1])
    for name, lin in prunable_linears(model).items():
        v = results[0].act_norms[name]
        assert v.dtype == torch.float32 and v.shape == (lin.in_features,) and v.device.type == "cpu"
        assert bool((v > 0).all())


def _direct_norms(model: torch.nn.Module, ids: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    mods = dict(model.named_modules())
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [mods[n].register_forward_hook(lambda m, a, o, n=n: seen[n].append(a[0].double())) for n in names]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in hooks:
        h.remove()
    return {n: torch.cat([x.reshape(-1, x.shape[-1]) for x in seen[n]]).square().sum(0).sqrt() for n in names}


def test_statistics_of_layer_1_come_from_the_outputs_of_the_pruned_layer_0():
    pruned, results = chain("tiny-llama", ROWS[:1])
    norms = results[0].act_norms
    fresh, _ = load_model("tiny-llama", device="cpu")
    layer1 = [n for n in norms if n.startswith("model.layers.1.")]
    unpruned = _direct_norms(fresh, windows(), layer1)
    # The same model with only layer 0 pruned: its layer-1 inputs are what the sequential prune saw.
    for name, lin in prunable_linears(fresh).items():
        if name.startswith("model.layers.0."):
            lin.weight.data.copy_(prunable_linears(pruned)[name].weight)
    half = _direct_norms(fresh, windows(), layer1)
    for name in layer1:
        torch.testing.assert_close(norms[name].double(), half[name], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(norms[name].double(), unpruned[name], rtol=1e-3), name


def test_statistics_of_layer_0_are_those_of_the_unpruned_model():
    _, results = chain("tiny-llama", ROWS[:1])
    fresh, _ = load_model("tiny-llama", device="cpu")
    layers, _ = decoder_layers(fresh)
    mine = {n: lin for n, lin in prunable_linears(fresh).items() if n.startswith("model.layers.0.")}
    want = accumulate_norms(layers[0], mine, capture_inputs(fresh, layers, windows(), 4))
    for name in mine:
        torch.testing.assert_close(results[0].act_norms[name], want[name])


def test_batch_size_one_and_many_give_the_same_tier_maps():
    _, one = chain("tiny-llama", ROWS, batch_size=1)
    _, many = chain("tiny-llama", ROWS, batch_size=4)
    for a, b in zip(one, many, strict=True):
        assert all(torch.equal(a.tiers[n], b.tiers[n]) for n in a.tiers)


def test_layer_and_progress_events(tmp_path: Path):
    model, _ = load_model("tiny-llama", device="cpu")
    sink = EventSink(1, "prune", tmp_path / "events.jsonl", stream=None)
    r = prune_model(model, windows(), None, 0.9, 0.0, B, K, 4, sink=sink)
    events = read_events(tmp_path / "events.jsonl")
    layer_events = [e for e in events if e.event == "layer"]
    assert [e.get("name") for e in layer_events] == list(prunable_linears(model))
    for e in layer_events:
        assert {k: e.get(k) for k in ("dense", "semi", "topk", "sparsity")} == r.per_layer[e.get("name")]
    progress = [(e.get("done"), e.get("total"), e.get("unit")) for e in events if e.event == "progress"]
    assert progress == [(0, 2, "layers"), (1, 2, "layers"), (2, 2, "layers")]
    json.dumps(r.per_layer)  # what metrics.json stores


def test_previous_tier_maps_must_cover_the_models_matrices():
    model, _ = load_model("tiny-llama", device="cpu")
    _, results = chain("tiny-llama", ROWS[:1])
    prev = dict(results[0].tiers)
    prev.pop("model.layers.1.mlp.down_proj")
    with pytest.raises(BadInput, match="lacks model.layers.1.mlp.down_proj"):
        prune_model(model, windows(), prev, 0.8, 0.1, B, K, 4)
    prev = dict(results[0].tiers)
    prev["model.layers.0.self_attn.q_proj"] = torch.zeros(2, 2, dtype=torch.uint8)
    with pytest.raises(BadInput, match=r"q_proj is \[2, 2\], expected \[4, 4\]"):
        prune_model(model, windows(), prev, 0.8, 0.1, B, K, 4)


def test_history_check_names_the_matrix_that_does_not_match_the_previous_row():
    _, results = chain("tiny-llama", ROWS[:2])
    check_history(results[1].tiers, 0.80, 0.10, "iter2/tiers.safetensors", "row 2")  # consistent: no error
    with pytest.raises(BadInput, match=r"iter2/tiers.safetensors: model.layers.0.self_attn.q_proj has 13 dense"):
        check_history(results[1].tiers, 0.70, 0.10, "iter2/tiers.safetensors", "row 2")


# ---- baselines ----


def test_wanda_unstructured_prunes_exactly_the_ratio_of_every_output_row():
    model, _ = load_model("tiny-opt", device="cpu")
    r = prune_baseline(model, windows(), "wanda-unstructured", sparsity=0.6, batch_size=4)
    for name, lin in prunable_linears(model).items():
        per_row = (lin.weight == 0).sum(dim=1)  # [out]
        assert per_row.tolist() == [int(0.6 * lin.in_features)] * lin.out_features, name
    assert r.tiers == {} and r.composition is None and r.expected_sparsity is None
    assert set(next(iter(r.per_layer.values()))) == {"sparsity"}


@pytest.mark.parametrize(("n", "m"), [(2, 4), (4, 8)])
def test_wanda_nm_keeps_n_of_every_m_consecutive_inputs(n: int, m: int):
    model, _ = load_model("tiny-llama", device="cpu")
    r = prune_baseline(model, windows(), "wanda-nm", n=n, m=m, batch_size=4)
    for name, lin in prunable_linears(model).items():
        groups = (lin.weight != 0).reshape(lin.out_features, -1, m).sum(dim=-1)  # [out, in / m]
        assert bool((groups == n).all()), name
    assert r.sparsity == pytest.approx(1 - n / m)


def test_wanda_unstructured_keeps_the_largest_scores_of_each_row():
    model, _ = load_model("tiny-llama", device="cpu")
    fresh, _ = load_model("tiny-llama", device="cpu")
    r = prune_baseline(model, windows(), "wanda-unstructured", sparsity=0.5, batch_size=4)
    name = "model.layers.0.mlp.gate_proj"  # layer 0: its norms are those of the unpruned model
    w0 = prunable_linears(fresh)[name].weight
    scores = w0.abs() * r.act_norms[name][None, :]
    kept = prunable_linears(model)[name].weight != 0
    low_kept = torch.where(kept, scores, torch.inf).min(dim=1).values
    high_pruned = torch.where(kept, -torch.inf, scores).max(dim=1).values
    assert bool((low_kept >= high_pruned).all())


def test_unknown_baseline_is_refused():
    model, _ = load_model("tiny-llama", device="cpu")
    with pytest.raises(ValueError, match="unknown baseline"):
        prune_baseline(model, windows(), "magnitude")
