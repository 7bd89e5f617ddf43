"""Resumable fine-tune checkpoints, without pickle.

A checkpoint is a directory (written with atomic_dir, so a kill leaves the previous one or the new
one) holding:

    model.safetensors      every parameter, full (gathered under FSDP2), keyed by parameter name
    optimizer.safetensors  the AdamW state flattened by hand: "<key>:<parameter name>" -> tensor
                           for key in exp_avg, exp_avg_sq, step (a 0-d float32 tensor)
    state.json             scalars: optimizer steps done, tokens, seconds, last loss, and the
                           fingerprint of the run (settings, data, input model) it belongs to

The learning rate is a pure function of the step and the data order a pure function of
(seed, epoch), so the step count is all the scheduler and data-loader state there is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tierctl.core.atomic import atomic_dir
from tierctl.lm.finetune_dist import Dist, full, shard_like, unwrap

MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
FORMAT = 1


@dataclass
class Checkpoint:
    state: dict[str, Any]
    weights: dict[str, torch.Tensor]
    optim: dict[str, torch.Tensor]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def _named_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Parameters by name, tied ones once (named_parameters drops duplicates)."""
    return list(unwrap(model).named_parameters())


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict[str, Any], d: Dist) -> None:
    """Collective under FSDP2 (every rank gathers); only rank 0 writes."""
    weights: dict[str, torch.Tensor] = {}
    optim: dict[str, torch.Tensor] = {}
    for name, p in _named_params(model):
        w = full(p.detach())
        if d.is_main:
            weights[name] = w.to("cpu", copy=True).contiguous()
        for key, value in optimizer.state.get(p, {}).items():
            if not torch.is_tensor(value):
                raise TypeError(f"optimizer state {key!r} of {name} is not a tensor; cannot save it without pickle")
            v = full(value.detach())
            if d.is_main:
                optim[f"{key}:{name}"] = v.to("cpu", copy=True).reshape(v.shape).contiguous()
    if not d.is_main:
        return
    with atomic_dir(Path(path)) as tmp:
        save_file(weights, str(tmp / MODEL_FILE))
        save_file(optim, str(tmp / OPTIM_FILE))
        (tmp / STATE_FILE).write_text(json.dumps({"format": FORMAT, **state}, indent=2) + "\n", encoding="utf-8")


def read_checkpoint(path: Path | None) -> Checkpoint | None:
    """The checkpoint in `path`, or None when there is none (or it is not one we can read)."""
    if path is None:
        return None
    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        if state.get("format") != FORMAT:
            return None
        return Checkpoint(state, load_file(str(path / MODEL_FILE)), load_file(str(path / OPTIM_FILE)))
    except (FileNotFoundError, ValueError, OSError):
        return None


@torch.no_grad()
def restore_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy checkpoint weights into the (not yet wrapped) model; every parameter must be there."""
    for name, p in _named_params(model):
        if name not in weights:
            raise KeyError(f"checkpoint has no weight {name}")
        p.copy_(weights[name])


def restore_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, optim: dict[str, torch.Tensor]) -> None:
    """Rebuild AdamW's per-parameter state from the flat tensors, sharded like each parameter."""
    by_name: dict[str, dict[str, torch.Tensor]] = {}
    for flat, v in optim.items():
        key, name = flat.split(":", 1)
        by_name.setdefault(name, {})[key] = v
    for name, p in _named_params(model):
        st: dict[str, torch.Tensor] = {}
        for key, v in by_name.get(name, {}).items():
            if key == "step":
                st[key] = v.clone()  # a 0-d float32 tensor on the CPU, as AdamW keeps it
            else:
                st[key] = shard_like(v.to(p.dtype), p).clone()
        if st:
            optimizer.state[p] = st
