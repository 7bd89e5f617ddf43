"""Layer-wise device placement for models larger than the accelerator (`[model] offload`).

With offload "layers" the model stays on CPU. The modules outside the decoder ModuleList (embeddings,
rotary embeddings, final norm, lm_head, ...) are small and move to the compute device for the whole
run; the decoder layers visit it one at a time:

    outer modules -> device ; capture the inputs of decoder layer 0 (calibrate.capture_inputs)
    for each decoder layer i: layer i -> device ; its passes ; layer i -> CPU
    outer modules -> CPU

The prune loop (prune.sequential_prune) and the perplexity (evaluate.streamed_window_nlls) both
follow it, with calibrate's capture_inputs / run_layer doing the passes.
A `Place` callable does every move, so a caller (a test) can observe the order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

MODES = ("auto", "never", "layers")
# "auto" streams the layers when the parameters take more than this fraction of the free device memory.
AUTO_FRACTION = 0.70
CPU = torch.device("cpu")

# Moves one module (with everything inside it) to a device.
Place = Callable[[nn.Module, torch.device], None]


def place_module(module: nn.Module, device: torch.device) -> None:
    module.to(device)


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of the parameters in the dtype they are held in (tied weights counted once)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def streams_layers(mode: str, device: torch.device, param_bytes: int, free_bytes: int | None = None) -> bool:
    """Whether `mode` means layer-wise placement for a model of `param_bytes` on `device`.

    "auto": only on CUDA, when the parameters exceed AUTO_FRACTION of the free device memory
    (`free_bytes`, read from torch.cuda.mem_get_info when None).
    """
    if mode not in MODES:
        raise ValueError(f"offload must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "auto":
        return mode == "layers"
    if device.type != "cuda":
        return False
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    return param_bytes > AUTO_FRACTION * free_bytes


def outer_modules(model: nn.Module, prefix: str) -> list[nn.Module]:
    """The largest submodules of `model` that neither contain nor lie inside the decoder ModuleList
    named `prefix` (e.g. for "model.layers": model.embed_tokens, model.rotary_emb, model.norm, lm_head)."""
    out: list[nn.Module] = []
    module, path = model, prefix.split(".")
    for depth, part in enumerate(path):
        for name, child in module.named_children():
            if name != part:
                out.append(child)
        module = module.get_submodule(part)
        if depth + 1 < len(path) and any(True for _ in module.parameters(recurse=False)):
            raise ValueError(f"{prefix}: {'.'.join(path[:depth + 1])} holds parameters of its own; "
                             f"offload 'layers' cannot place them")
    if any(True for _ in model.parameters(recurse=False)):
        raise ValueError(f"{type(model).__name__} holds parameters of its own; offload 'layers' cannot place them")
    return out


def _move_own_buffers(model: nn.Module, prefix: str, device: torch.device) -> None:
    """Buffers held directly by the ancestors of the ModuleList (rare, e.g. a causal-mask cache)."""
    module = model
    for part in ["", *prefix.split(".")[:-1]]:
        module = module.get_submodule(part) if part else module
        for key, buf in module.named_buffers(recurse=False):
            module._buffers[key] = buf.to(device)


@contextmanager
def outer_on(model: nn.Module, prefix: str, device: torch.device, place: Place = place_module) -> Iterator[None]:
    """Hold the outer modules on `device` for the duration; back to CPU afterwards (even on error)."""
    outer = outer_modules(model, prefix)
    try:
        for m in outer:
            place(m, device)
        _move_own_buffers(model, prefix, device)
        yield
    finally:
        for m in outer:
            place(m, CPU)
        _move_own_buffers(model, prefix, CPU)


def load_placed(spec: str, device: str, dtype: str, trust_remote_code: bool,
                mode: str) -> tuple[nn.Module, object, torch.device | None]:
    """(model, tokenizer, layers_on): the model whole on `device` (layers_on None), or on CPU with
    `layers_on` the device its layers visit one at a time, as `mode` ([model] offload) decides."""
    from tierctl.lm.models import load_model, resolve_device

    dev = resolve_device(device)
    if mode == "never" or (mode == "auto" and dev.type != "cuda"):
        model, tok = load_model(spec, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        return model, tok, None
    model, tok = load_model(spec, device="cpu", dtype=dtype, trust_remote_code=trust_remote_code)
    if streams_layers(mode, dev, parameter_bytes(model)):
        return model, tok, dev
    return model.to(dev), tok, None
