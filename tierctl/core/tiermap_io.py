"""Tier-map files (`iter<N>/tiers.safetensors`): the one module that reads and writes them.

The file layout is docs/campaign.md: one uint8 tensor `[out // b, in // b]` per prunable matrix
(0 DENSE, 1 SEMI, 2 TOPK), metadata `block_size`, `topk_per_block`, `iteration` stored as strings.

Commands that only look at tier maps (diff, show, report, the dashboard) must start fast, so the
reader is numpy (`load_tier_maps_numpy`) and importing this module imports no torch; the steps use
`save_tiers` / `load_tiers`, which import torch when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tierctl.errors import BadInput

if TYPE_CHECKING:
    from collections.abc import Mapping

    import torch

INT_META_KEYS = ("block_size", "topk_per_block", "iteration")


def load_tier_maps_numpy(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tier maps of one file as numpy uint8 arrays, plus metadata (known keys as ints).

    Raises BadInput naming the file for anything a user could have got wrong: a missing or unreadable
    file, a tensor that is not 2-D uint8, a tier value outside 0..2, metadata that is not an integer.
    """
    from tierctl.core.safetensors_read import read_safetensors

    path = Path(path)
    raw_meta, maps = read_safetensors(path, "no such tier map file", framework="numpy")

    if not maps:
        raise BadInput(f"{path}: holds no tier maps")
    for name, t in maps.items():
        if t.dtype != np.uint8 or t.ndim != 2:
            raise BadInput(f"{path}: tensor {name!r} is {t.dtype} with shape {list(t.shape)}, expected 2-D uint8")
        if t.size and int(t.max()) > 2:
            raise BadInput(f"{path}: tensor {name!r} holds tier {int(t.max())}, expected 0 (dense), 1 (2:4), 2 (top-k)")

    meta: dict[str, Any] = dict(raw_meta)
    for key in INT_META_KEYS:
        if key in raw_meta:
            try:
                meta[key] = int(raw_meta[key])
            except ValueError:
                raise BadInput(f"{path}: metadata {key}={raw_meta[key]!r} is not an integer") from None
    return maps, meta


def save_tiers(path: str | Path, maps: Mapping[str, torch.Tensor], block_size: int, k: int, iteration: int) -> None:
    """Write tier maps (key = module name) to a safetensors file atomically, metadata as strings."""
    import torch

    from tierctl.core.atomic import atomic_write_safetensors

    if not maps:
        raise ValueError("no tier maps to save")
    for name, t in maps.items():
        if t.dtype != torch.uint8 or t.dim() != 2:
            raise ValueError(f"tier map {name!r} must be 2-D uint8, got {t.dtype} {list(t.shape)}")
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in maps.items()}
    meta = {"block_size": str(int(block_size)), "topk_per_block": str(int(k)), "iteration": str(int(iteration))}
    atomic_write_safetensors(Path(path), tensors, meta)


def load_tiers(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, int | str]]:
    """Tier maps (CPU uint8 torch tensors) and metadata (the documented keys as ints, all required).

    A bad file raises BadInput naming it (the checks of load_tier_maps_numpy, and missing metadata).
    """
    import torch

    arrays, meta = load_tier_maps_numpy(path)  # validates: readable, 2-D uint8, tiers 0..2, int metadata
    missing = [key for key in INT_META_KEYS if key not in meta]
    if missing:
        raise BadInput(f"{path}: metadata lacks {', '.join(missing)}")
    return {name: torch.tensor(a, dtype=torch.uint8) for name, a in arrays.items()}, meta
