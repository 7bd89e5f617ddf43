"""Perplexity with Wanda's protocol (SPEC section 8).

Non-overlapping windows of `seqlen` tokens over the evaluation stream; inside each window the
model predicts tokens 1..L-1 from their prefixes; ppl = exp(mean over windows of the mean token
NLL of the window). Log-softmax is accumulated in float32 even when the model runs in bf16/fp16,
and the per-window means are summed in float64.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tierctl.errors import BadInput
from tierctl.lm.offload import Place, nll_from_logits, place_module, streamed_nll_sum

PROTOCOL = "wanda: exp(mean window NLL), non-overlapping"


def window_nll(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of each window: float32 [B] for ids [B, L]."""
    logits = model(input_ids=ids, use_cache=False).logits  # [B, L, V]
    return nll_from_logits(logits, ids)


def perplexity(model: nn.Module, windows: torch.Tensor, batch_size: int = 1,
               on_progress: Callable[[int, int], None] | None = None, layers_on: torch.device | None = None,
               place: Place = place_module) -> float:
    """exp(mean over windows of the mean token NLL). `on_progress(done, total)` counts windows.

    `layers_on`: the model is on CPU and streams through this device one decoder layer at a time
    (offload "layers", lm/offload.py); progress is then reported once, at the end. That path runs under
    no_grad, not inference_mode: moving a layer under inference_mode would leave inference tensors as
    its parameters.
    """
    if windows.ndim != 2 or windows.size(0) == 0 or windows.size(1) < 2:
        raise ValueError(f"windows must be [n >= 1, seqlen >= 2], got {tuple(windows.shape)}")
    if layers_on is not None:
        nll = streamed_nll_sum(model, windows, batch_size, torch.device(layers_on), place)
        if on_progress is not None:
            on_progress(windows.size(0), windows.size(0))
        return math.exp(nll / windows.size(0))
    return math.exp(_nll_sum(model, windows, batch_size, on_progress) / windows.size(0))


@torch.inference_mode()
def _nll_sum(model: nn.Module, windows: torch.Tensor, batch_size: int,
             on_progress: Callable[[int, int], None] | None) -> float:
    """Sum over windows of the mean token NLL, the whole model on its device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = windows.size(0)
    nll_sum = 0.0  # Python float: float64 accumulation across batches
    try:
        for start in range(0, total, batch_size):
            batch = windows[start:start + batch_size].to(device)
            nll_sum += window_nll(model, batch).double().sum().item()
            if on_progress is not None:
                on_progress(min(start + batch_size, total), total)
    finally:
        model.train(was_training)
    return nll_sum


@dataclass
class EvalResult:
    ppl: float
    info: dict[str, Any] = field(default_factory=dict)  # the "eval" entry of metrics.json
    seconds: float = 0.0


def max_positions(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def evaluate_source(model: nn.Module, tokenizer: Any, source: str, seqlen: int, max_windows: int = 0,
                    batch_size: int = 1, on_progress: Callable[[int, int], None] | None = None,
                    layers_on: torch.device | None = None) -> EvalResult:
    """Perplexity of `model` on the eval split of a text source, with the protocol recorded.

    Shared by the prune step (ppl_pruned) and the eval step (ppl) so both measure the same way.
    """
    from tierctl.lm.text import eval_windows, token_stream

    limit = max_positions(model)
    if limit is not None and seqlen > limit:
        raise BadInput(f"data.seqlen {seqlen} exceeds the model's max_position_embeddings {limit}")
    t0 = time.perf_counter()
    windows = eval_windows(token_stream(source, tokenizer, "eval"), seqlen, max_windows,
                           what=f"eval split of {source}")
    ppl = perplexity(model, windows, batch_size=batch_size, on_progress=on_progress, layers_on=layers_on)
    info = {"source": source, "seqlen": seqlen, "windows": int(windows.size(0)),
            "tokens": int(windows.numel()), "protocol": PROTOCOL}
    return EvalResult(ppl=ppl, info=info, seconds=time.perf_counter() - t0)
