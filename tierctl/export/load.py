"""`load_packed(DIR)`: a transformers model from a packed export, with plain or tiered linear layers.

The model is built from the directory's config.json, then given the file's tensors: with
`materialize=True` every prunable matrix is unpacked into its `nn.Linear` (bit-identical to the
iteration's model); with `materialize=False` each prunable `nn.Linear` is replaced by a `TieredLinear`
that keeps the packed tensors and never holds the dense weight.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tierctl.errors import BadInput
from tierctl.export import format as fmt
from tierctl.export.packed_file import PackedCheckpoint, read_checkpoint


def is_packed_dir(path: str | Path) -> bool:
    return (Path(path) / fmt.WEIGHTS_FILE).is_file()


def _empty_model(path: Path, dtype: torch.dtype) -> nn.Module:
    """The architecture of config.json, in `dtype`, without spending time on a random initialisation."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as e:
        raise BadInput(f"{path / 'config.json'}: cannot read a model config ({str(e).splitlines()[0]})") from None
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers: initialise, it only costs time
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def _assign(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path, expect_missing: set[str]) -> None:
    """Load `tensors` into `model`; refuse unknown names, wrong shapes, and missing ones that are not tied."""
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    for name, t in tensors.items():
        target = params.get(name, buffers.get(name))
        if target is None:
            raise BadInput(f"{path}: tensor {name} has no place in the model of config.json")
        if tuple(target.shape) != tuple(t.shape):
            raise BadInput(f"{path}: tensor {name} has shape {list(t.shape)}, the model wants {list(target.shape)}")
    model.load_state_dict(tensors, strict=False, assign=True)  # the file's tensors become the parameters: no copy
    model.tie_weights()  # tied weights (lm_head = embed_tokens) are saved once; tying after loading shares them
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {params[n].data_ptr() for n in tensors if n in params}
    for name, p in params.items():
        if name not in tensors and name not in expect_missing and p.data_ptr() not in loaded:
            raise BadInput(f"{path}: tensor {name} is missing")


def load_packed(path: str | Path, device: str | torch.device = "cpu", materialize: bool = True) -> Any:
    """A `transformers.PreTrainedModel` (eval mode) from a directory written by `tierctl export --format packed`.

    materialize=True: ordinary `nn.Linear` weights equal to the exported iteration's (torch.equal).
    materialize=False: prunable linears become `TieredLinear` (packed tensors only, computed tier by tier).
    A corrupted or foreign file raises BadInput naming it, never returns a wrong model.
    """
    path = Path(path)
    ckpt = read_checkpoint(path / fmt.WEIGHTS_FILE)
    model = _empty_model(path, ckpt.dtype)
    _check_matrices(model, ckpt, path / fmt.WEIGHTS_FILE)
    if materialize:
        tensors = {**ckpt.others, **{key: m.unpack() for key, m in ckpt.matrices.items()}}
        _assign(model, tensors, path / fmt.WEIGHTS_FILE, set())
    else:
        from tierctl.export.tiered_linear import TieredLinear

        for key, m in ckpt.matrices.items():
            parent_name, _, child = key[: -len(".weight")].rpartition(".")
            parent = model.get_submodule(parent_name)
            old = getattr(parent, child)
            setattr(parent, child, TieredLinear(m, bias=old.bias))
        _assign(model, ckpt.others, path / fmt.WEIGHTS_FILE, set())
    _generation_config(model, path)
    return model.to(device).eval()


def _check_matrices(model: nn.Module, ckpt: PackedCheckpoint, path: Path) -> None:
    """Every packed matrix must be the weight of an nn.Linear of the model, with its shape."""
    modules = dict(model.named_modules())
    for key, m in ckpt.matrices.items():
        mod = modules.get(key[: -len(".weight")]) if key.endswith(".weight") else None
        if not isinstance(mod, nn.Linear):
            raise BadInput(f"{path}: packed matrix {key} is not the weight of a linear layer of config.json's model")
        if tuple(mod.weight.shape) != m.shape:
            raise BadInput(f"{path}: packed matrix {key} is {list(m.shape)}, the model wants {list(mod.weight.shape)}")


def _generation_config(model: nn.Module, path: Path) -> None:
    if (path / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(path))
