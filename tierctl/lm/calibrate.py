"""Layer-wise calibration: what decoder layer 0 receives, activation norms, and layer-by-layer replay.

Wanda (docs/tiers.md) prunes one decoder layer at a time with statistics collected on inputs that
already went through the pruned earlier layers. This module provides the three pieces:

- `capture_inputs`: runs the calibration windows through the model up to decoder layer 0 and records
  what the model hands to that layer: its positional arguments (the hidden states) and *every keyword
  argument* (attention mask, position ids, rotary position embeddings, cache objects, flags, ... whatever
  this transformers version passes). A forward pre-hook on layer 0 records them and raises a private
  exception, so the rest of the model never runs. Nothing is rebuilt by hand, so a transformers upgrade
  that changes the layer's signature keeps working. (A pre-hook rather than a wrapper module: some
  models read attributes of their layers, e.g. `decoder_layer.attention_type`, which a wrapper hides.)
- `accumulate_norms`: one pass of a layer over the recorded inputs with forward hooks on its
  prunable Linears, summing x_j^2 over every calibration token in float64, then norm = sqrt.
- `run_layer`: one pass of a (pruned) layer over the recorded inputs, whose outputs replace them:
  they are the next layer's inputs.

The keyword arguments are the same for every decoder layer of the model (the models compute them once
before the loop over layers), so the ones recorded at layer 0 serve every layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

# On CUDA, keep the hidden states on the device while both copies (inputs and outputs of one layer)
# stay under this fraction of the free device memory; offload them to CPU otherwise.
OFFLOAD_FRACTION = 0.25


class _Captured(Exception):
    """Raised by the pre-hook on decoder layer 0 once its inputs are recorded: the rest need not run."""


@dataclass
class LayerInputs:
    """Inputs of the current decoder layer, one entry per calibration batch.

    hidden[b]: [batch_b, seqlen, hidden] in the model's dtype, on `store_device` (CPU when offloaded).
    args[b]:   further positional arguments the model passed after the hidden states (usually none).
    kwargs[b]: the keyword arguments as the model passed them, on the compute device; batches with equal
               keyword arguments share one dict, so a causal mask [b, 1, L, L] is held once, not per batch.
    """

    hidden: list[torch.Tensor] = field(default_factory=list)
    args: list[tuple[Any, ...]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)
    device: torch.device = torch.device("cpu")  # where the layers compute
    store_device: torch.device = torch.device("cpu")  # where `hidden` lives between layers

    @property
    def tokens(self) -> int:
        return sum(h.shape[0] * h.shape[1] for h in self.hidden)

    def batches(self) -> Iterator[tuple[torch.Tensor, tuple[Any, ...], dict[str, Any]]]:
        """(hidden on the compute device, args, kwargs) per batch."""
        for h, a, kw in zip(self.hidden, self.args, self.kwargs, strict=True):
            yield h.to(self.device, non_blocking=True), a, kw


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _same(a: Any, b: Any) -> bool:
    """Equal values, tensors compared by shape, dtype and content (for sharing kwargs across batches)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and a.device == b.device and bool(torch.equal(a, b)))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if a is None or b is None or isinstance(a, (bool, int, float, str)):
        return a is b or (type(a) is type(b) and a == b)
    return a is b  # cache objects and other opaque values: share only the very same object


def choose_store_device(device: torch.device, nsamples: int, seqlen: int, hidden_size: int,
                        dtype: torch.dtype, offload: bool | None) -> torch.device:
    """Where the hidden states wait between layers: the compute device unless they would crowd it."""
    if offload is not None:
        return torch.device("cpu") if offload else device
    if device.type != "cuda":
        return device
    need = 2 * nsamples * seqlen * hidden_size * torch.empty((), dtype=dtype).element_size()  # inputs + outputs
    free, _ = torch.cuda.mem_get_info(device)
    return device if need <= OFFLOAD_FRACTION * free else torch.device("cpu")


@torch.no_grad()
def capture_inputs(model: nn.Module, layers: nn.ModuleList, windows: torch.Tensor, batch_size: int,
                   offload: bool | None = None, device: torch.device | None = None) -> LayerInputs:
    """Inputs of decoder layer 0 for windows [nsamples, seqlen], in batches of `batch_size` windows.

    `offload`: True keeps hidden states on CPU between layers, False on the compute device, None decides
    (CPU only when on CUDA and they would take more than OFFLOAD_FRACTION of the free memory).
    `device`: where the layers compute; None = where the model's parameters are. With layer-wise
    placement (lm/offload.py) the model is on CPU and only the modules before layer 0 are on `device`.
    """
    if windows.ndim != 2 or windows.numel() == 0:
        raise ValueError(f"calibration windows must be [nsamples, seqlen], got {tuple(windows.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = model_device(model) if device is None else torch.device(device)
    hidden_size = int(getattr(model.config, "hidden_size", 0) or 0)
    dtype = next(model.parameters()).dtype
    store = choose_store_device(device, windows.shape[0], windows.shape[1], hidden_size, dtype, offload)
    out = LayerInputs(device=device, store_device=store)
    seen: dict[str, Any] = {}

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if args:
            hidden, rest = args[0], tuple(args[1:])
        else:  # passed by keyword
            kwargs = dict(kwargs)
            hidden, rest = kwargs.pop("hidden_states"), ()
        seen.update(hidden=hidden, args=rest, kwargs=dict(kwargs))
        raise _Captured

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, windows.shape[0], batch_size):
            ids = windows[start:start + batch_size].to(device)  # [b, seqlen]
            seen.clear()
            try:
                model(input_ids=ids, use_cache=False)
            except _Captured:
                pass
            if not seen:
                raise RuntimeError(f"{type(model).__name__}: the forward pass never reached decoder layer 0")
            out.hidden.append(seen["hidden"].to(store))  # [b, seqlen, hidden]
            out.args.append(seen["args"])
            kw = seen["kwargs"]
            if out.kwargs and _same(out.kwargs[-1], kw):
                kw = out.kwargs[-1]  # share: identical masks / position embeddings across batches
            out.kwargs.append(kw)
    finally:
        handle.remove()
        model.train(was_training)
    return out


def layer_output(result: Any) -> torch.Tensor:
    """The hidden states a decoder layer returns: a tensor (transformers >= 5) or the first of a tuple."""
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
        return result[0]
    for attr in ("hidden_states", "last_hidden_state"):  # a ModelOutput-style return
        hidden = getattr(result, attr, None)
        if isinstance(hidden, torch.Tensor):
            return hidden
    raise TypeError(f"decoder layer returned {type(result).__name__}; expected a tensor or a tuple of tensors")


@torch.no_grad()
def accumulate_norms(layer: nn.Module, linears: dict[str, nn.Linear], inputs: LayerInputs) -> dict[str, torch.Tensor]:
    """norm[j] = sqrt(sum over calibration tokens of x_j^2) of every Linear's input (docs/tiers.md).

    One pass of `layer` over `inputs`; its outputs are discarded. Returns float32 [in_features] per
    name, on the compute device. Linears fed the same tensor (q, k, v; gate, up) share one reduction.
    """
    sums = {name: torch.zeros(lin.in_features, dtype=torch.float64, device=inputs.device)
            for name, lin in linears.items()}
    last: dict[str, Any] = {"x": None, "sq": None}  # the most recent input and its column sums

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            x = args[0]  # [b, seqlen, in] (or [tokens, in])
            if last["x"] is not x:
                # float64 from the first square on: a float32 sum over a batch carries ~1.6e-6 relative
                # error on smollm2 (against ~3e-7 for the Wanda reference's running mean), enough to flip
                # near-ties at the cut. Column sums as a GEMV (ones[1, tokens] @ sq), faster than sum(0).
                sq = x.reshape(-1, x.shape[-1]).double().square()  # [tokens, in]
                ones = torch.ones(1, sq.shape[0], dtype=sq.dtype, device=sq.device)
                last["x"], last["sq"] = x, (ones @ sq).squeeze(0)  # [in]
            sums[name] += last["sq"]
        return hook

    handles = [lin.register_forward_hook(make_hook(name)) for name, lin in linears.items()]
    try:
        for hidden, args, kwargs in inputs.batches():
            layer(hidden, *args, **kwargs)
            last["x"] = last["sq"] = None  # a new batch: never match a freed tensor's id
    finally:
        for h in handles:
            h.remove()
    return {name: s.sqrt().float() for name, s in sums.items()}


@torch.no_grad()
def run_layer(layer: nn.Module, inputs: LayerInputs) -> None:
    """Replace `inputs.hidden` by the outputs of `layer`: the inputs of the next decoder layer."""
    for b, (hidden, args, kwargs) in enumerate(inputs.batches()):
        out = layer_output(layer(hidden, *args, **kwargs))  # [b, seqlen, hidden]
        inputs.hidden[b] = out.to(inputs.store_device)
