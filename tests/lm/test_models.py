"""lm/models: presets, generic discovery of decoder layers and prunable matrices, saving, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tierctl.errors import BadInput
from tierctl.lm.models import (
    TINY_CONFIGS,
    TINY_VOCAB,
    decoder_layers,
    load_model,
    prunable_linears,
    resolve_device,
    save_model,
    torch_dtype,
)

LLAMA_LAYER0 = [f"model.layers.0.{m}" for m in (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
EXPECTED_PREFIX = {"tiny-llama": "model.layers", "tiny-qwen2": "model.layers", "tiny-mistral": "model.layers",
                   "tiny-opt": "model.decoder.layers"}


@pytest.mark.parametrize("preset", sorted(TINY_CONFIGS))
def test_every_tiny_family_loads_and_exposes_its_decoder_layers(preset):
    model, tok = load_model(preset, device="cpu")
    layers, prefix = decoder_layers(model)
    assert prefix == EXPECTED_PREFIX[preset]
    assert len(layers) == model.config.num_hidden_layers == 2
    assert not model.training
    logits = model(input_ids=torch.tensor([tok("def f(x): return x")["input_ids"]])).logits
    assert logits.shape[-1] == TINY_VOCAB and torch.isfinite(logits).all()


def test_prunable_linears_of_llama_are_the_seven_projections_per_layer_in_order(tiny_llama):
    names = list(prunable_linears(tiny_llama[0]))
    assert names == LLAMA_LAYER0 + [n.replace(".0.", ".1.") for n in LLAMA_LAYER0]


def test_prunable_linears_exclude_embeddings_and_lm_head(tiny_llama):
    model = tiny_llama[0]
    linears = prunable_linears(model)
    assert model.lm_head not in linears.values()
    named = dict(model.named_modules())
    assert all(named[name] is mod for name, mod in linears.items())


def test_opt_prunable_linears_include_fc1_fc2_and_out_proj():
    model, _ = load_model("tiny-opt", device="cpu")
    names = list(prunable_linears(model))
    layer0 = [n for n in names if n.startswith("model.decoder.layers.0.")]
    assert sorted(n.rsplit(".", 1)[-1] for n in layer0) == ["fc1", "fc2", "k_proj", "out_proj", "q_proj", "v_proj"]


def test_some_tiny_families_have_matrix_sides_that_are_not_multiples_of_16():
    # So partial (always dense) blocks get exercised by tests that prune these presets.
    for preset, side in (("tiny-opt", 200), ("tiny-mistral", 136)):
        shapes = {tuple(m.weight.shape) for m in prunable_linears(load_model(preset, device="cpu")[0]).values()}
        assert any(side in s for s in shapes) and side % 16 != 0


def test_tiny_llama_has_only_full_blocks(tiny_llama):
    for m in prunable_linears(tiny_llama[0]).values():
        assert m.weight.shape[0] % 16 == 0 and m.weight.shape[1] % 16 == 0


def test_tiny_preset_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, _ = load_model("tiny-llama", device="cpu")
    after = torch.rand(3)
    b, _ = load_model("tiny-llama", device="cpu")
    assert torch.equal(before, after)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)


def test_tiny_tokenizer_is_built_locally_and_round_trips_text(tiny_llama):
    from transformers import PreTrainedTokenizerBase

    tok = tiny_llama[1]
    assert isinstance(tok, PreTrainedTokenizerBase)
    assert len(tok) == TINY_VOCAB
    text = "for x in range(10):\n    print(x)  # café"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert max(ids) < TINY_VOCAB and tok.decode(ids) == text


def test_dtype_is_applied():
    model, _ = load_model("tiny-llama", device="cpu", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_save_model_round_trips_weights_bitwise_and_the_tokenizer(tmp_path, tiny_llama):
    model, tok = tiny_llama
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[:, ::2] = 0.0  # as if pruned
    save_model(model, tok, tmp_path / "m")
    model2, tok2 = load_model(str(tmp_path / "m"), device="cpu")
    sd, sd2 = model.state_dict(), model2.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    text = "class A:\n    pass"
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".tmp-*"))


def test_save_model_replaces_an_existing_directory(tmp_path, tiny_llama):
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    save_model(*tiny_llama, dest)
    assert not (dest / "stale.txt").exists() and (dest / "config.json").is_file()


def test_save_model_does_not_pickle(tmp_path, tiny_llama):
    save_model(*tiny_llama, tmp_path / "m")
    assert not [p.name for p in (tmp_path / "m").iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]


@pytest.mark.parametrize(("spec", "expected"), [
    ("tiny-gpt", "unknown preset"),
    ("./no/such/model", "no such file or directory"),
    ("/no/such/model.gguf", "no such file or directory"),
])
def test_unknown_or_missing_models_are_bad_input(spec, expected):
    with pytest.raises(BadInput, match=expected):
        load_model(spec, device="cpu")


def test_directory_without_config_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no config.json"):
        load_model(str(tmp_path), device="cpu")


def test_unreadable_gguf_is_bad_input(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 60)
    with pytest.raises(BadInput, match="cannot read this GGUF"):
        load_model(str(bad), device="cpu")


def test_hub_id_that_cannot_be_fetched_is_bad_input(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BadInput, match="not found locally"):
        load_model("tierctl-test-org/no-such-model", device="cpu")


class _Config:
    num_hidden_layers = 3


class _NoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = _Config()
        self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])  # wrong length


class _ConvLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = _Config()
        self.layers = nn.ModuleList([nn.Sequential(nn.Conv1d(4, 4, 1)) for _ in range(3)])


def test_model_without_decoder_layers_is_bad_input_naming_what_was_missing():
    with pytest.raises(BadInput, match="no decoder layers found.*num_hidden_layers=3"):
        decoder_layers(_NoLayers())


def test_decoder_layers_without_linears_is_bad_input():
    with pytest.raises(BadInput, match=r"\(layers\) contain no nn.Linear"):
        prunable_linears(_ConvLayers())


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_without_cuda_is_bad_input():
    with pytest.raises(BadInput, match="--device cuda: CUDA is not available"):
        load_model("tiny-llama", device="cuda")


def test_unknown_dtype_is_bad_input():
    with pytest.raises(BadInput, match="--dtype float8"):
        torch_dtype("float8")


@pytest.mark.slow
def test_smollm2_preset_loads_from_its_cache_with_thirty_decoder_layers():
    # The first run on a machine converts the GGUF (~25 s) into the user cache; later runs load it.
    model, tok = load_model("smollm2-135m", device="cpu")
    layers, prefix = decoder_layers(model)
    assert prefix == "model.layers" and len(layers) == 30
    assert len(prunable_linears(model)) == 30 * 7
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert tok.decode(tok("print('hi')", add_special_tokens=False)["input_ids"]) == "print('hi')"
