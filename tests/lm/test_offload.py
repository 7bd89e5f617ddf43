"""lm/offload: offload "layers" (model on CPU, one decoder layer at a time on the device) computes exactly
what the whole-model path does, and places the layers one at a time.

Both devices are CPU here, but the code path is the real one: the outer modules and each layer go
through `place`. The placement test uses torch.device("cpu", 0) as the compute device, which differs
from the CPU home device as a torch.device, so the recorded moves say where each module is meant to be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.helpers import make_campaign
from tierctl.campaign.config import dumps_config, load_config
from tierctl.core.tiermap_io import load_tiers
from tierctl.lm.evaluate import perplexity
from tierctl.lm.models import decoder_layers, load_model, prunable_linears
from tierctl.lm.offload import outer_modules, streams_layers
from tierctl.lm.prune import prune_baseline, prune_model
from tierctl.steps.prune import main

COMPUTE = torch.device("cpu", 0)


def windows(n: int = 6, seqlen: int = 32, seed: int = 3) -> torch.Tensor:
    return torch.randint(1, 512, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: lin.weight.detach().clone() for name, lin in prunable_linears(model).items()}


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-opt"])
def test_layers_offload_prunes_bit_identically_to_the_whole_model(preset: str):
    whole, _ = load_model(preset, device="cpu")
    streamed, _ = load_model(preset, device="cpu")
    prev_w = prev_s = None
    for dense, topk in [(0.90, 0.00), (0.80, 0.10)]:
        a = prune_model(whole, windows(), prev_w, dense, topk, 16, 10, 4)
        b = prune_model(streamed, windows(), prev_s, dense, topk, 16, 10, 4, layers_on=COMPUTE)
        assert list(a.tiers) == list(b.tiers)
        for name in a.tiers:
            assert torch.equal(a.tiers[name], b.tiers[name]), name
            assert torch.equal(a.act_norms[name], b.act_norms[name]), name
        assert a.per_layer == b.per_layer and a.composition == b.composition and a.sparsity == b.sparsity
        prev_w, prev_s = a.tiers, b.tiers
    wa, wb = weights(whole), weights(streamed)
    assert all(torch.equal(wa[name], wb[name]) for name in wa)


def test_layers_offload_wanda_baseline_is_bit_identical():
    whole, _ = load_model("tiny-llama", device="cpu")
    streamed, _ = load_model("tiny-llama", device="cpu")
    a = prune_baseline(whole, windows(), "wanda-nm", n=2, m=4)
    b = prune_baseline(streamed, windows(), "wanda-nm", n=2, m=4, layers_on=COMPUTE)
    assert a.per_layer == b.per_layer
    wa, wb = weights(whole), weights(streamed)
    assert all(torch.equal(wa[name], wb[name]) for name in wa)


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-opt", "tiny-qwen2"])
def test_streamed_perplexity_matches_the_whole_model(preset: str):
    model, _ = load_model(preset, device="cpu")
    prune_model(model, windows(), None, 0.8, 0.0, 16, 10, 4)  # pruned weights, as ppl_pruned sees them
    w = windows(5, 24, seed=7)
    whole = perplexity(model, w, batch_size=2)
    streamed = perplexity(model, w, batch_size=2, layers_on=COMPUTE)
    assert streamed == pytest.approx(whole, rel=1e-6)
    assert model.training is False and all(p.device.type == "cpu" for p in model.parameters())


class Recorder:
    """A `place` that moves modules and remembers, per module, whether it is on the compute device."""

    def __init__(self, model: nn.Module) -> None:
        self.names = {id(m): name for name, m in model.named_modules()}
        self.calls: list[tuple[str, str]] = []
        self.on_compute: set[str] = set()

    def __call__(self, module: nn.Module, device: torch.device) -> None:
        name = self.names[id(module)]
        where = "compute" if device == COMPUTE else "cpu"
        self.calls.append((name, where))
        (self.on_compute.add if where == "compute" else self.on_compute.discard)(name)
        module.to(device)


@pytest.mark.parametrize("what", ["prune", "perplexity"])
def test_layers_offload_holds_one_decoder_layer_at_a_time_on_the_device(what: str):
    model, _ = load_model("tiny-llama", device="cpu")
    layers, prefix = decoder_layers(model)
    layer_names = [f"{prefix}.{i}" for i in range(len(layers))]
    place = Recorder(model)
    outer = [place.names[id(m)] for m in outer_modules(model, prefix)]
    seen: list[tuple[str, set[str]]] = []

    def hook(name: str):
        def post(module: nn.Module, args: Any, output: Any) -> None:  # after a real pass (not the capture)
            seen.append((name, {n for n in place.on_compute if n in layer_names}))
        return post

    handles = [layer.register_forward_hook(hook(name)) for name, layer in zip(layer_names, layers, strict=True)]
    try:
        if what == "prune":
            prune_model(model, windows(), None, 0.9, 0.0, 16, 10, 4, layers_on=COMPUTE, place=place)
        else:
            perplexity(model, windows(4, 16), batch_size=2, layers_on=COMPUTE, place=place)
    finally:
        for h in handles:
            h.remove()

    assert sorted(outer) == ["lm_head", "model.embed_tokens", "model.norm", "model.rotary_emb"]
    per_layer = [c for name in layer_names for c in ((name, "compute"), (name, "cpu"))]
    assert place.calls == [(n, "compute") for n in outer] + per_layer + [(n, "cpu") for n in outer]
    assert seen and all(on == {name} for name, on in seen)  # every layer pass: that layer alone on the device
    assert place.on_compute == set()


def test_streams_layers_decides_auto_from_free_device_memory():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert streams_layers("auto", cuda, param_bytes=71, free_bytes=100) is True
    assert streams_layers("auto", cuda, param_bytes=70, free_bytes=100) is False
    assert streams_layers("auto", cpu, param_bytes=10**12) is False
    assert streams_layers("layers", cpu, param_bytes=1) is True
    assert streams_layers("never", cuda, param_bytes=10**12, free_bytes=1) is False
    with pytest.raises(ValueError, match="offload must be one of auto, never, layers, got 'some'"):
        streams_layers("some", cpu, param_bytes=1)


def test_prune_step_with_offload_layers_writes_the_same_outputs(tmp_path: Path):
    runs = {}
    for mode in ("never", "layers"):
        layout = make_campaign(tmp_path, name=mode)
        cfg = load_config(layout.config)
        cfg.model.offload = mode  # make_campaign's `model` is the model's name, so set the key here
        layout.config.write_text(dumps_config(cfg), encoding="utf-8")
        assert main(["--campaign", str(layout.root), "--iter", "1"]) == 0
        runs[mode] = (layout, json.loads(layout.metrics(1).read_text(encoding="utf-8")))
    (never, m_never), (layers, m_layers) = runs["never"], runs["layers"]
    assert m_never["offload"] == "never" and m_layers["offload"] == "layers"
    for key in ("composition", "sparsity", "per_layer"):
        assert m_never[key] == m_layers[key], key
    assert m_layers["ppl_pruned"] == pytest.approx(m_never["ppl_pruned"], rel=1e-6)
    maps_never, _ = load_tiers(never.tiers(1))
    maps_layers, _ = load_tiers(layers.tiers(1))
    assert all(torch.equal(maps_never[k], maps_layers[k]) for k in maps_never)
    w_never = weights(load_model(str(never.model(1)), device="cpu")[0])
    w_layers = weights(load_model(str(layers.model(1)), device="cpu")[0])
    assert all(torch.equal(w_never[k], w_layers[k]) for k in w_never)


def test_eval_step_with_offload_layers_gives_the_same_ppl_and_says_where_the_model_is(tmp_path: Path):
    from tierctl.core.atomic import atomic_write_json
    from tierctl.core.events import read_events
    from tierctl.steps.eval import main as eval_main

    ppl = {}
    for mode in ("never", "layers"):
        layout = make_campaign(tmp_path, name=f"eval-{mode}")
        cfg = load_config(layout.config)
        cfg.model.offload = mode
        layout.config.write_text(dumps_config(cfg), encoding="utf-8")
        assert main(["--campaign", str(layout.root), "--iter", "1"]) == 0
        atomic_write_json(layout.model(1) / "finetune.json", {"epochs": 0, "skipped": True})  # eval needs it
        assert eval_main(["--campaign", str(layout.root), "--iter", "1"]) == 0
        ppl[mode] = json.loads(layout.metrics(1).read_text(encoding="utf-8"))["ppl"]
        logs = [e.get("msg") for e in read_events(layout.events(1)) if e.step == "eval" and e.event == "log"]
        streamed = any("one decoder layer at a time" in m for m in logs)
        assert streamed == (mode == "layers")
    assert ppl["layers"] == pytest.approx(ppl["never"], rel=1e-6)
