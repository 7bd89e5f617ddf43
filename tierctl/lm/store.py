"""How a step keeps an iteration's model on disk: dense (save_pretrained) or packed (`[run] store`).

A packed model directory holds what `tierctl export --format packed` writes (config.json, generation
config, tokenizer files, tierctl-packed.safetensors), produced by the same code (tierctl/export/writer.py):
the tensors are the ones save_pretrained would have written (tied weights once, same names), packed by
the iteration's tier maps, written and read back equal before the directory is renamed into place.
`load_model` (tierctl/lm/models.py) reads either form, so no step needs to know which one it got.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tierctl.core.atomic import atomic_dir


@dataclass(frozen=True)
class Packing:
    """What packing an iteration's model needs besides the weights: its tier maps and the format's labels."""

    tier_maps: dict[str, torch.Tensor]  # prunable matrix name (no ".weight") -> uint8 [R, C]
    block_size: int
    k: int
    source: str  # "campaign@N", the export's `source` metadata
    base_model: str  # [model] name, for `tierctl sample`


def tensors_to_save(model: nn.Module, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The tensors save_pretrained writes for `model` (or for `state_dict`): ignored keys dropped, tied
    weights kept once under the name the model expects back, names in the checkpoint's original format."""
    from transformers.modeling_utils import remove_tied_weights_from_state_dict, revert_weight_conversion

    state = dict(model.state_dict() if state_dict is None else state_dict)
    for key in getattr(model, "_keys_to_ignore_on_save", None) or []:
        state.pop(key, None)
    state = remove_tied_weights_from_state_dict(state, model)
    state = revert_weight_conversion(model, state)
    return {name: t.detach().cpu().contiguous() for name, t in state.items()}


def _save_side_files(model: Any, tokenizer: Any, dest: Path) -> None:
    """config.json and generation_config.json exactly as save_pretrained writes them, and the tokenizer."""
    model.config.dtype = str(model.dtype).split(".")[1]
    model.config.architectures = [type(model).__name__.removeprefix("FSDP")]
    model.config.save_pretrained(str(dest))
    if model.can_generate():
        model.generation_config.save_pretrained(str(dest))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(dest))


def write_model(model: Any, tokenizer: Any, dest: Path, packing: Packing | None,
                state_dict: dict[str, torch.Tensor] | None = None) -> None:
    """Write the model into directory `dest` (a temporary one the caller renames): dense when `packing` is
    None, else packed. `state_dict` replaces the model's own tensors (the fine-tune's gathered, cast state)."""
    from tierctl.lm.models import _quiet

    _quiet()
    dest = Path(dest)
    if packing is None:
        model.save_pretrained(dest, state_dict=state_dict, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(dest)
        return
    from tierctl.export.writer import write_packed

    tensors = tensors_to_save(model, state_dict)
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(dtypes) != 1:
        raise ValueError(f"a packed model holds one floating dtype, the model has {sorted(map(str, dtypes))}")
    _save_side_files(model, tokenizer, dest)
    write_packed(dest, tensors, packing.tier_maps, packing.block_size, packing.k, dtypes.pop(), packing.source,
                 packing.base_model)


def store_model(model: Any, tokenizer: Any, dest: Path, packing: Packing | None) -> None:
    """Write the model as directory `dest`, replaced atomically (temporary directory + rename)."""
    with atomic_dir(Path(dest)) as tmp:
        write_model(model, tokenizer, tmp, packing)


def stored_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model directory, dense or packed (packed matrices unpacked, bit-exact)."""
    from tierctl.export.writer import source_tensors

    return source_tensors(Path(model_dir))


def load_packed_model(path: Path, dtype: torch.dtype) -> tuple[nn.Module, Any]:
    """(model with ordinary nn.Linear weights in `dtype`, tokenizer) of a packed model directory."""
    from transformers import AutoTokenizer

    from tierctl.export.load import load_packed

    model = load_packed(path, materialize=True)
    return model.to(dtype), AutoTokenizer.from_pretrained(str(path), local_files_only=True)
