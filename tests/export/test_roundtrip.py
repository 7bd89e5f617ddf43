"""Packed export and load_packed give back every tensor of iter<N>/model exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tierctl.export import load_packed
from tierctl.export.format import BITS_VIEW
from tierctl.export.source import resolve_iteration
from tierctl.export.writer import export_iteration


def model_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.mark.parametrize("name", ["llama", "llama-bf16", "opt"])
def test_load_packed_equals_the_iteration_model_tensor_for_tensor(campaigns, tmp_path, name):
    src = resolve_iteration(str(campaigns[name].root))  # the latest finished iteration, at 35/45/20
    export_iteration(src, tmp_path / "x")
    model = load_packed(tmp_path / "x")
    state = model.state_dict()
    reference = model_tensors(src.model_dir)
    assert reference
    for key, t in reference.items():
        assert state[key].dtype == t.dtype, key
        assert torch.equal(state[key], t), key
        assert torch.equal(state[key].view(BITS_VIEW[t.dtype]), t.view(BITS_VIEW[t.dtype])), key  # bits: no -0.0


def test_an_iteration_model_holds_no_negative_zero(campaigns):
    """A pruned weight is +0.0 after the prune and after the fine-tune (both multiply by masks)."""
    src = resolve_iteration(str(campaigns["llama"].root))
    for key, t in model_tensors(src.model_dir).items():
        if t.is_floating_point():
            assert not bool(((t == 0) & torch.signbit(t)).any()), key


def test_dense_export_loads_with_plain_transformers_and_equals_the_iteration_model(campaigns, tmp_path):
    from transformers import AutoModelForCausalLM

    layout = campaigns["opt"]
    result = export_iteration(resolve_iteration(f"{layout.root}@1"), tmp_path / "d", format="dense")
    assert result.format == "dense" and result.sizes is None
    assert "tierctl" not in (tmp_path / "d" / "config.json").read_text()  # no custom code to import
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "d", local_files_only=True)
    state = model.state_dict()
    for key, t in model_tensors(layout.model(1)).items():
        assert torch.equal(state[key], t), key


def test_dtype_flag_exports_the_weights_cast_once(campaigns, tmp_path):
    layout = campaigns["llama"]
    export_iteration(resolve_iteration(f"{layout.root}@2"), tmp_path / "x", dtype="bfloat16")
    state = load_packed(tmp_path / "x").state_dict()
    for key, t in model_tensors(layout.model(2)).items():
        assert state[key].dtype == torch.bfloat16
        assert torch.equal(state[key], t.to(torch.bfloat16)), key


def test_an_earlier_iteration_is_exported_when_asked_for(campaigns, tmp_path):
    layout = campaigns["llama"]
    export_iteration(resolve_iteration(f"{layout.root}@1"), tmp_path / "x")
    state = load_packed(tmp_path / "x").state_dict()
    for key, t in model_tensors(layout.model(1)).items():
        assert torch.equal(state[key], t), key


def test_tied_embeddings_are_tied_again_after_loading(tmp_path):
    """save_pretrained stores a tied lm_head once (as the embedding); load_packed must tie it back."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from tierctl.export import format as fmt
    from tierctl.export.packed_file import write_checkpoint
    from tierctl.export.writer import pack_checkpoint
    from tierctl.lm.models import TINY_CONFIGS, prunable_linears

    config = AutoConfig.for_model("llama", vocab_size=64, tie_word_embeddings=True, **TINY_CONFIGS["tiny-llama"][1])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path / "saved")
    tensors = model_tensors(tmp_path / "saved")
    assert "lm_head.weight" not in tensors
    maps = {name: torch.zeros(lin.out_features // 16, lin.in_features // 16, dtype=torch.uint8)
            for name, lin in prunable_linears(model).items()}
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text((tmp_path / "saved" / "config.json").read_text())
    write_checkpoint(tmp_path / "x" / fmt.WEIGHTS_FILE, pack_checkpoint(tensors, maps, 16, 10, torch.float32, "t"))
    for materialize in (True, False):
        loaded = load_packed(tmp_path / "x", materialize=materialize)
        assert loaded.lm_head.weight is loaded.model.embed_tokens.weight
        assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
