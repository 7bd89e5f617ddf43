"""Perplexity with Wanda's protocol (the README's Models and text).

Non-overlapping windows of `seqlen` tokens over the evaluation stream; inside each window the
model predicts tokens 1..L-1 from their prefixes; ppl = exp(mean over windows of the mean token
NLL of the window). Log-softmax is accumulated in float32 even when the model runs in bf16/fp16,
and the per-window means are summed in float64.

Every ppl carries a 95% interval from the spread of the per-window mean NLLs: a Student-t interval on
their mean, mapped through exp (`ppl_interval`, INTERVAL below). It treats the windows as independent
samples of the text; consecutive windows of one text are not quite independent, so read it as the
noise of the measurement on these windows, not a guarantee about another text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tierctl.errors import BadInput
from tierctl.lm.offload import CPU, Place, outer_on, place_module

PROTOCOL = "wanda: exp(mean window NLL), non-overlapping"
INTERVAL = "95% Student-t over windows: exp(mean NLL -/+ t(0.975, n-1) * sd / sqrt(n))"


def window_nll(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of each window: float32 [B] for ids [B, L]."""
    logits = model(input_ids=ids, use_cache=False).logits  # [B, L, V]
    return nll_from_logits(logits, ids)


def perplexity(model: nn.Module, windows: torch.Tensor, batch_size: int = 1,
               on_progress: Callable[[int, int], None] | None = None, layers_on: torch.device | None = None,
               place: Place = place_module) -> float:
    """exp(mean over windows of the mean token NLL). `on_progress(done, total)` counts windows."""
    return ppl_of(window_nlls(model, windows, batch_size, on_progress, layers_on, place))


def window_nlls(model: nn.Module, windows: torch.Tensor, batch_size: int = 1,
                on_progress: Callable[[int, int], None] | None = None, layers_on: torch.device | None = None,
                place: Place = place_module) -> list[torch.Tensor]:
    """The mean token NLL of every window, float64 on CPU, one tensor per batch of `batch_size` windows.

    `layers_on`: the model is on CPU and streams through this device one decoder layer at a time
    (offload "layers", lm/offload.py); progress is then reported once, at the end. That path runs under
    no_grad, not inference_mode: moving a layer under inference_mode would leave inference tensors as
    its parameters.
    """
    if windows.ndim != 2 or windows.size(0) == 0 or windows.size(1) < 2:
        raise ValueError(f"windows must be [n >= 1, seqlen >= 2], got {tuple(windows.shape)}")
    if layers_on is not None:
        with torch.no_grad():
            nlls = streamed_window_nlls(model, windows, batch_size, torch.device(layers_on), place)
        if on_progress is not None:
            on_progress(windows.size(0), windows.size(0))
        return nlls
    return _window_nlls(model, windows, batch_size, on_progress)


def ppl_of(nlls: list[torch.Tensor]) -> float:
    """exp(mean NLL), summed batch by batch in float64 (the order every ppl of tierctl was measured in)."""
    total, count = 0.0, 0
    for batch in nlls:
        total += batch.sum().item()
        count += batch.numel()
    return math.exp(total / count)


def ppl_interval(nlls: list[torch.Tensor] | torch.Tensor, confidence: float = 0.95) -> list[float] | None:
    """[low, high] of the ppl: exp of a Student-t interval on the mean of the per-window NLLs (INTERVAL).

    None for a single window (no spread to measure). Its width shrinks like 1/sqrt(windows).
    """
    from scipy.stats import t as student_t

    x = torch.cat(list(nlls)) if isinstance(nlls, list) else nlls
    n = x.numel()
    if n < 2:
        return None
    mean, sd = x.mean().item(), x.std(correction=1).item()  # float64
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return [math.exp(mean - half), math.exp(mean + half)]


@torch.inference_mode()
def _window_nlls(model: nn.Module, windows: torch.Tensor, batch_size: int,
                 on_progress: Callable[[int, int], None] | None) -> list[torch.Tensor]:
    """Per-window mean token NLL, the whole model on its device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = windows.size(0)
    out: list[torch.Tensor] = []
    try:
        for start in range(0, total, batch_size):
            batch = windows[start:start + batch_size].to(device)
            out.append(window_nll(model, batch).double().cpu())
            if on_progress is not None:
                on_progress(min(start + batch_size, total), total)
    finally:
        model.train(was_training)
    return out


@dataclass
class EvalResult:
    ppl: float
    info: dict[str, Any] = field(default_factory=dict)  # the "eval" entry of metrics.json
    seconds: float = 0.0
    interval: list[float] | None = None  # [low, high] at 95% (INTERVAL); None for one window


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
    nlls = window_nlls(model, windows, batch_size=batch_size, on_progress=on_progress, layers_on=layers_on)
    ppl, interval = ppl_of(nlls), ppl_interval(nlls)
    info = {"source": source, "seqlen": seqlen, "windows": int(windows.size(0)),
            "tokens": int(windows.numel()), "protocol": PROTOCOL, "interval": INTERVAL}
    return EvalResult(ppl=ppl, info=info, seconds=time.perf_counter() - t0, interval=interval)


# ---- perplexity with the model on CPU and one decoder layer at a time on the device (offload "layers") ----


def final_modules(model: nn.Module, prefix: str) -> list[nn.Module]:
    """What turns the last decoder layer's output into logits, in order: final norm (+ OPT's
    project_out), then the output embedding (lm_head). ValueError for an architecture we don't know."""
    parent = model.get_submodule(prefix.rsplit(".", 1)[0]) if "." in prefix else model
    norm = next((getattr(parent, a) for a in ("norm", "final_layer_norm", "ln_f")
                 if isinstance(getattr(parent, a, None), nn.Module)), None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if norm is None or head is None:
        raise ValueError(f"{type(model).__name__}: no final norm / lm_head found next to {prefix}; "
                         f"offload 'layers' cannot evaluate it (use offload 'never')")
    project = getattr(parent, "project_out", None)
    return [norm, *([project] if isinstance(project, nn.Module) else []), head]


def nll_from_logits(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of each window: float32 [B] from logits [B, L, V] and ids [B, L]."""
    logits = logits[:, :-1, :].float()  # predictions for positions 1..L-1
    targets = ids[:, 1:]  # [B, L-1]
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
    return nll.view(ids.size(0), -1).mean(dim=1)


@torch.no_grad()
def streamed_window_nlls(model: nn.Module, windows: torch.Tensor, batch_size: int, device: torch.device,
                         place: Place = place_module) -> list[torch.Tensor]:
    """Mean token NLL of each window [n, L] (float64 CPU tensors, one per batch), with the model on CPU and
    one decoder layer at a time on `device`: capture -> layer by layer -> final norm + lm_head -> loss."""
    from tierctl.lm.calibrate import capture_inputs, run_layer
    from tierctl.lm.models import decoder_layers

    layers, prefix = decoder_layers(model)
    was_training = model.training
    model.eval()
    try:
        with outer_on(model, prefix, device, place):
            inputs = capture_inputs(model, layers, windows, batch_size, offload=True, device=device)
            for layer in layers:
                place(layer, device)
                run_layer(layer, inputs)  # hidden[b]: [b, L, hidden] on CPU between layers
                place(layer, CPU)
            final = final_modules(model, prefix)
            out: list[torch.Tensor] = []
            for b, (hidden, _, _) in enumerate(inputs.batches()):
                for m in final:
                    hidden = m(hidden)  # [b, L, hidden] -> ... -> logits [b, L, V]
                ids = windows[b * batch_size:(b + 1) * batch_size].to(device)  # [b, L]
                out.append(nll_from_logits(hidden, ids).double().cpu())
    finally:
        model.train(was_training)
    return out
