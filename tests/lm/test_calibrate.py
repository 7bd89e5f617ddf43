"""Layer-wise calibration: layer-0 capture with the model's own kwargs, activation norms, layer replay."""

from __future__ import annotations

import pytest
import torch

from tierctl.lm.calibrate import accumulate_norms, capture_inputs, layer_output, run_layer
from tierctl.lm.models import decoder_layers, load_model, prunable_linears

FAMILIES = ("tiny-llama", "tiny-opt", "tiny-qwen2", "tiny-mistral")


def windows(n: int = 5, seqlen: int = 24, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 500, (n, seqlen), generator=g)


@pytest.mark.parametrize("preset", FAMILIES)
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_replaying_layers_with_captured_kwargs_reproduces_the_models_hidden_states(preset: str, batch_size: int):
    model, _ = load_model(preset, device="cpu")
    layers, _ = decoder_layers(model)
    ids = windows()
    with torch.no_grad():
        ref = model(input_ids=ids, use_cache=False, output_hidden_states=True).hidden_states  # [L+1] x [n, s, h]
    inputs = capture_inputs(model, layers, ids, batch_size)
    assert [h.shape[0] for h in inputs.hidden] == [min(batch_size, 5 - s) for s in range(0, 5, batch_size)]
    torch.testing.assert_close(torch.cat(inputs.hidden), ref[0])
    for i, layer in enumerate(layers[:-1]):  # hidden_states[L] is after the final norm
        run_layer(layer, inputs)
        torch.testing.assert_close(torch.cat(inputs.hidden), ref[i + 1], rtol=1e-5, atol=1e-5)


def test_llama_layers_receive_rotary_position_embeddings_and_position_ids():
    model, _ = load_model("tiny-llama", device="cpu")
    inputs = capture_inputs(model, decoder_layers(model)[0], windows(4, 16), 2)
    kw = inputs.kwargs[0]
    cos, sin = kw["position_embeddings"]
    assert cos.shape == sin.shape == (1, 16, 64 // 4)  # [1, seqlen, head_dim]
    assert kw["position_ids"].tolist() == [list(range(16))]
    assert kw.get("use_cache") is False


def test_eager_attention_passes_a_materialised_causal_mask_shared_by_equal_batches():
    model, _ = load_model("tiny-llama", device="cpu")
    model.config._attn_implementation = "eager"
    inputs = capture_inputs(model, decoder_layers(model)[0], windows(4, 16), 2)
    mask = inputs.kwargs[0]["attention_mask"]
    assert isinstance(mask, torch.Tensor) and mask.shape[-2:] == (16, 16)
    assert inputs.kwargs[0] is inputs.kwargs[1]  # identical masks are held once


def test_capture_leaves_no_hook_behind_and_keeps_the_training_flag():
    model, _ = load_model("tiny-llama", device="cpu")
    layers, _ = decoder_layers(model)
    model.train()
    capture_inputs(model, layers, windows(2, 8), 2)
    assert model.training
    assert not layers[0]._forward_pre_hooks
    assert model(input_ids=windows(1, 8)).logits.shape == (1, 8, 512)  # runs to the end again


def _direct_norms(model: torch.nn.Module, ids: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """sqrt(sum over tokens of x_j^2) of each module's input, from a whole-model forward (float64)."""
    mods = dict(model.named_modules())
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [mods[n].register_forward_hook(lambda m, a, o, n=n: seen[n].append(a[0].detach().double()))
             for n in names]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in hooks:
        h.remove()
    return {n: torch.cat([x.reshape(-1, x.shape[-1]) for x in seen[n]]).square().sum(0).sqrt() for n in names}


@pytest.mark.parametrize("preset", ["tiny-llama", "tiny-opt"])
def test_norms_equal_a_direct_computation_over_the_modules_inputs(preset: str):
    model, _ = load_model(preset, device="cpu")
    layers, prefix = decoder_layers(model)
    ids = windows(6, 20)
    inputs = capture_inputs(model, layers, ids, 4)
    for i, layer in enumerate(layers):
        mine = {n: lin for n, lin in prunable_linears(model).items() if n.startswith(f"{prefix}.{i}.")}
        got = accumulate_norms(layer, mine, inputs)
        want = _direct_norms(model, ids, list(mine))
        for name in mine:
            assert got[name].dtype == torch.float32 and got[name].shape == (mine[name].in_features,)
            torch.testing.assert_close(got[name].double(), want[name], rtol=1e-5, atol=1e-6)
        run_layer(layer, inputs)


def test_norms_do_not_depend_on_the_batch_size():
    model, _ = load_model("tiny-qwen2", device="cpu")
    layers, prefix = decoder_layers(model)
    mine = {n: lin for n, lin in prunable_linears(model).items() if n.startswith(f"{prefix}.0.")}
    a = accumulate_norms(layers[0], mine, capture_inputs(model, layers, windows(), 1))
    b = accumulate_norms(layers[0], mine, capture_inputs(model, layers, windows(), 5))
    for name in mine:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-6)


def test_offloaded_hidden_states_live_on_the_cpu_and_give_the_same_outputs():
    model, _ = load_model("tiny-llama", device="cpu")
    layers, _ = decoder_layers(model)
    on = capture_inputs(model, layers, windows(), 2, offload=True)
    off = capture_inputs(model, layers, windows(), 2, offload=False)
    assert on.store_device.type == "cpu"
    run_layer(layers[0], on)
    run_layer(layers[0], off)
    torch.testing.assert_close(torch.cat(on.hidden), torch.cat(off.hidden))


def test_layer_output_accepts_tensors_and_tuples():
    t = torch.ones(2, 3, 4)
    assert layer_output(t) is t
    assert layer_output((t, None)) is t
    with pytest.raises(TypeError, match="expected a tensor"):
        layer_output({"x": t})


def test_windows_must_be_two_dimensional():
    model, _ = load_model("tiny-llama", device="cpu")
    with pytest.raises(ValueError, match=r"\[nsamples, seqlen\]"):
        capture_inputs(model, decoder_layers(model)[0], torch.arange(10), 2)


def test_norms_are_accumulated_in_float64() -> None:
    """A float32 sum over a batch drifts by ~1e-6 relative; the norm must be the float64 sum, rounded once."""

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 2)

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:
            return self.proj(hidden)

    from tierctl.lm.calibrate import LayerInputs

    g = torch.Generator().manual_seed(0)
    hidden = [torch.randn(2, 4096, 8, generator=g) * torch.logspace(-3, 3, 8) for _ in range(2)]  # [b, seq, in]
    inputs = LayerInputs(hidden=hidden, args=[(), ()], kwargs=[{}, {}])
    layer = Layer()
    got = accumulate_norms(layer, {"proj": layer.proj}, inputs)["proj"]
    x = torch.cat([h.reshape(-1, 8) for h in hidden])  # [tokens, in]
    want = x.double().square().sum(0).sqrt().float()
    assert torch.equal(got, want)
    # The former accumulation (a float32 GEMV per batch, float64 across batches) does not pass:
    f32 = sum((torch.ones(1, 8192) @ h.reshape(-1, 8).square()).squeeze(0).double() for h in hidden)
    assert not torch.equal(f32.sqrt().float(), want)
