"""Masked fine-tuning of a pruned causal LM (docs/tiers.md, Masks during the fine-tune).

Reads top to bottom like a nanoGPT training script:

    windows = train_windows(stream, seqlen)            # the fine-tune text, never eval windows
    keep    = build_masks(model, tiers, block_size)    # from tier map + pruned weights, not pickled
    result  = finetune(model, windows, keep, settings, checkpoint=dir, sink=sink)
    bad     = mask_violations(weights, tiers, keep, block_size, k)

Masks hold because the pruned entries get a zero gradient (grad *= keep before the optimizer step)
AND are zeroed again after every step (weight *= keep): Adam's moments or weight decay could move a
zero otherwise. Both are one torch._foreach_mul_ over precomputed masks in the weights' dtype on
their device, so masking costs a few elementwise kernels per optimizer step.

Determinism: the data order of epoch e is a permutation seeded by (seed, e), the learning rate a
function of the step, and the global RNG is reseeded from (seed, step) before every step (so even
dropout, if a model had any, depends on the step only). A run resumed from a checkpoint therefore
ends with bitwise the same weights as an uninterrupted one (on the CPU).

Data layout (so N processes with batch b see what one process with batch N*b sees): an optimizer
step takes `global_batch = batch_size * grad_accum * world` windows of the epoch's permutation;
micro-step m of rank r takes rows [(m*world + r)*b, (m*world + r + 1)*b) of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tierctl.core.progress import Clock, ProgressMeter
from tierctl.errors import BadInput, StepFailed
from tierctl.lm.finetune_ckpt import read_checkpoint, restore_optimizer, restore_weights, save_checkpoint
from tierctl.lm.finetune_dist import Dist, broadcast_flag, local, mean_over_ranks, no_grad_sync, shard_like, wrap

PROGRESS_EVERY_S = 1.0  # at most one progress event a second between the first and the last step

# ---- settings and the plan of a run ----


@dataclass
class FinetuneSettings:
    """[finetune] of campaign.toml plus the schedule row's epochs."""

    epochs: int
    lr: float = 5e-5
    batch_size: int = 4  # windows per micro-batch, per process
    grad_accum: int = 1
    seqlen: int = 512
    tokens_per_epoch: int = 0  # 0 = every training window once per epoch
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # 0 = no clipping
    seed: int = 0
    checkpoint_every: int = 0  # optimizer steps between checkpoints (0 = at the end of each epoch only)
    checkpoint_minutes: float = 0.0  # also checkpoint once this long passed since the last one (0 = off)
    log_every: int = 10  # optimizer steps between loss / lr / tokens_per_s events

    @classmethod
    def from_config(cls, cfg: Any, epochs: int) -> FinetuneSettings:
        names = [f.name for f in dataclasses.fields(cls) if f.name != "epochs"]
        return cls(epochs=epochs, **{n: getattr(cfg, n) for n in names if hasattr(cfg, n)})

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed. The cadences may change in between, and so
        may the split of the global batch (the plan carries it): a run killed on 8 processes with
        batch 2 resumes exactly on 4 with batch 4, or on 1 with grad_accum 8."""
        d = dataclasses.asdict(self)
        for key in ("checkpoint_every", "checkpoint_minutes", "log_every", "batch_size", "grad_accum"):
            d.pop(key)
        return d


@dataclass(frozen=True)
class Plan:
    windows: int  # training windows available
    per_epoch: int  # windows drawn per epoch (the token budget)
    global_batch: int  # windows per optimizer step over all processes
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int


def make_plan(n_windows: int, s: FinetuneSettings, world: int = 1) -> Plan:
    per_epoch = n_windows
    if s.tokens_per_epoch > 0:
        per_epoch = min(n_windows, math.ceil(s.tokens_per_epoch / s.seqlen))
    global_batch = s.batch_size * s.grad_accum * world
    steps = per_epoch // global_batch
    if s.epochs > 0 and steps == 0:
        raise BadInput(f"[finetune] batch_size {s.batch_size} x grad_accum {s.grad_accum} x {world} process(es) "
                       f"needs {global_batch} windows of {s.seqlen} tokens per step, but an epoch has {per_epoch} "
                       f"(lower batch_size / seqlen or raise tokens_per_epoch)")
    total = steps * s.epochs
    return Plan(n_windows, per_epoch, global_batch, steps, total, math.ceil(s.warmup_ratio * total))


def train_windows(stream: torch.Tensor, seqlen: int) -> torch.Tensor:
    """Non-overlapping windows [n, seqlen] of the fine-tune stream (the tail that does not fill one
    window is dropped)."""
    n = len(stream) // seqlen
    if n == 0:
        raise BadInput(f"[finetune] seqlen {seqlen}: the fine-tune text has only {len(stream)} tokens")
    return stream[: n * seqlen].reshape(n, seqlen)


def _mix(seed: int, i: int) -> int:
    """A 63-bit seed from (seed, i), so nearby pairs give unrelated streams."""
    return (seed * 0x9E3779B97F4A7C15 + i * 0xBF58476D1CE4E5B9 + 1) % (2**63 - 1)


def epoch_order(n_windows: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of the training windows used in `epoch`: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(_mix(seed, epoch))
    return torch.randperm(n_windows, generator=g)


def lr_at(step: int, plan: Plan, peak: float) -> float:
    """Linear warm-up to `peak` over warmup_steps, then cosine decay towards 0 at total_steps."""
    if step < plan.warmup_steps:
        return peak * (step + 1) / plan.warmup_steps
    progress = (step - plan.warmup_steps) / max(1, plan.total_steps - plan.warmup_steps)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---- masks ----


def build_masks(model: nn.Module, tiers: dict[str, torch.Tensor], block_size: int) -> dict[str, torch.Tensor]:
    """The keep mask (bool, shaped like the weight, on the CPU) of every prunable matrix that has a
    tier map: every entry of DENSE and partial blocks, the non-zero entries of SEMI and TOPK blocks."""
    from tierctl.core.tiers import keep_mask
    from tierctl.lm.models import prunable_linears

    linears = prunable_linears(model)
    missing = sorted(set(linears) - set(tiers))
    if missing:
        raise BadInput(f"tier maps: no map for prunable matrix {missing[0]} ({len(missing)} missing)")
    unknown = sorted(set(tiers) - set(linears))
    if unknown:
        raise BadInput(f"tier maps: {unknown[0]} is not a prunable matrix of this model")
    return {name: keep_mask(lin.weight.detach().cpu(), tiers[name].cpu(), block_size) for name, lin in linears.items()}


class Masker:
    """Keeps pruned entries at exactly zero: grads *= keep before the step, weights *= keep after.

    Built after the model is wrapped: under FSDP2 each parameter is a row-sharded DTensor, so each
    mask is cut into the same rows and applied to the local shards (`to_local()` views share the
    parameter's storage). The masks are stored once, in the weight's dtype, on its device.
    """

    def __init__(self, model: nn.Module, keep: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        self.params = [params[f"{name}.weight"] for name in keep]
        with torch.no_grad():
            self.masks = [local(shard_like(keep[name].to(p.dtype), p)).contiguous()
                          for name, p in zip(keep, self.params, strict=True)]
            self.weights = [local(p) for p in self.params]  # views: in-place ops reach the parameters

    def mask_grads(self) -> None:
        pairs = [(local(p.grad), m) for p, m in zip(self.params, self.masks, strict=True) if p.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])

    @torch.no_grad()
    def mask_weights(self) -> None:
        if self.weights:
            torch._foreach_mul_(self.weights, self.masks)


def mask_violations(weights: dict[str, torch.Tensor], tiers: dict[str, torch.Tensor], keep: dict[str, torch.Tensor],
                    block_size: int, k: int) -> dict[str, dict[str, int]]:
    """Per matrix: `revived` = pruned entries (outside the pre-fine-tune keep mask) that are non-zero,
    `tier` = count_violations of the tier map (2:4 groups or top-k blocks over budget).
    `weights` is keyed by module name (without `.weight`)."""
    from tierctl.core.tiers import count_violations

    out = {}
    for name, keep_m in keep.items():
        w = weights[name].detach().cpu()
        revived = int(((w != 0) & ~keep_m.cpu()).sum())
        out[name] = {"revived": revived, "tier": int(count_violations(w, tiers[name].cpu(), block_size, k))}
    return out


# ---- the training loop ----


@dataclass
class FinetuneResult:
    steps: int  # optimizer steps of the whole run (resumed ones included)
    tokens: int  # tokens fed to the model over all processes
    final_loss: float | None  # mean loss over the last logging interval
    seconds: float  # training time, summed over resumed runs
    resumed_from: int  # optimizer steps already done when this call started (0 = fresh)
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, mean loss since last log)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only; norms and biases (1-D) are not decayed."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def finetune(model: nn.Module, windows: torch.Tensor, keep: dict[str, torch.Tensor], settings: FinetuneSettings, *,
             dist: Dist | None = None, checkpoint: Path | None = None, identity: dict[str, Any] | None = None,
             sink: Any = None, on_step: Callable[[int], None] | None = None,
             clock: Clock = time.monotonic) -> FinetuneResult:
    """Fine-tune `model` in place on `windows` [n, seqlen] with pruned entries held at zero.

    `keep` maps prunable module names to bool masks (empty: unmasked, for benchmarks). With
    `checkpoint`, resumes from the checkpoint there when its fingerprint (settings, plan, `identity`
    of the input) matches, and writes one every `checkpoint_every` steps, whenever
    `checkpoint_minutes` of `clock` passed since the last one (rank 0's clock decides for every
    rank), and at each epoch's end. Progress (step N of M, tokens, elapsed, time left) is reported
    from the first optimizer step on, at most once a second. `on_step(done)` runs after every
    optimizer step (tests stop a run there). Under torchrun every rank calls this; only rank 0's
    `sink` is enabled.
    """
    d = dist or Dist(device=next(model.parameters()).device)
    plan = make_plan(len(windows), settings, d.world)
    # Compared with the one in state.json, so compared in its JSON form (tuples become lists).
    fingerprint = json.loads(json.dumps({"settings": settings.fingerprint(), "plan": dataclasses.asdict(plan),
                                         **(identity or {})}))
    ckpt = read_checkpoint(checkpoint)
    if ckpt is not None and ckpt.state.get("fingerprint") != fingerprint:
        _log(sink, f"ignoring checkpoint {checkpoint}: it belongs to other settings or another input model")
        ckpt = None
    start = ckpt.step if ckpt else 0
    if ckpt:
        restore_weights(model, ckpt.weights)
        _log(sink, f"the fine-tune resumes from its checkpoint at step {start} of {plan.total_steps}")

    from tierctl.lm.models import decoder_layers

    module = wrap(model, d, decoder_layers(model)[0])
    masker = Masker(model, keep)
    masker.mask_weights()
    optimizer = torch.optim.AdamW(param_groups(model, settings.weight_decay), lr=settings.lr)
    if ckpt:
        restore_optimizer(optimizer, model, ckpt.optim)
    state = dict(ckpt.state) if ckpt else {"step": 0, "tokens": 0, "seconds": 0.0, "last_loss": None}
    state["fingerprint"] = fingerprint
    result = FinetuneResult(plan.total_steps, state["tokens"], state["last_loss"], state["seconds"], start)

    meter = ProgressMeter(sink, plan.total_steps, "steps", "finetune", start_done=start, every_s=PROGRESS_EVERY_S,
                          clock=clock)
    last_ckpt = clock()
    b, world, accum = settings.batch_size, d.world, settings.grad_accum
    cuda = d.device.type == "cuda"
    module.train()
    order, order_epoch = None, -1
    loss_sum = torch.zeros((), device=d.device)  # summed micro-batch losses since the last log
    since_log, t_log, t_run = 0, time.perf_counter(), state["seconds"]
    tokens_at_log = state["tokens"]
    for step in range(start, plan.total_steps):
        epoch, s = divmod(step, plan.steps_per_epoch)
        if epoch != order_epoch:
            order, order_epoch = epoch_order(plan.windows, settings.seed, epoch)[: plan.per_epoch], epoch
        rows = order[s * plan.global_batch: (s + 1) * plan.global_batch]
        torch.manual_seed(_mix(settings.seed, step + 1_000_000))
        lr = lr_at(step, plan, settings.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = torch.zeros((), device=d.device)
        for m in range(accum):
            first = (m * world + d.rank) * b
            x = windows[rows[first: first + b]].to(d.device, non_blocking=True)  # [b, seqlen]
            with no_grad_sync(module, d, sync=(m == accum - 1)):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
                    loss = module(input_ids=x, labels=x, use_cache=False).loss  # mean NLL, b*(seqlen-1) targets
                (loss / accum).backward()  # equal-sized micro-batches: the mean of means is the mean
            step_loss += loss.detach().float()
        check_finite_loss(step_loss, step + 1, plan.total_steps, lr)  # before the step spreads it into the weights
        loss_sum += step_loss
        masker.mask_grads()
        if settings.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        masker.mask_weights()

        done = step + 1
        since_log += 1
        state["tokens"] += plan.global_batch * settings.seqlen
        if done % settings.log_every == 0 or done == plan.total_steps:
            mean_loss = float(mean_over_ranks(loss_sum / (since_log * accum), d).item())
            now = time.perf_counter()
            tps = (state["tokens"] - tokens_at_log) / max(now - t_log, 1e-9)
            state["seconds"] = t_run + (now - t_log)
            t_run, t_log, tokens_at_log = state["seconds"], now, state["tokens"]
            state["last_loss"] = mean_loss
            result.losses.append((done, mean_loss))
            loss_sum.zero_()
            since_log = 0
            if sink is not None:
                meter.update(done, force=True, tokens=state["tokens"])
                sink.metric("loss", mean_loss, opt_step=done)
                sink.metric("lr", lr, opt_step=done)
                sink.metric("tokens_per_s", tps, opt_step=done)
        else:
            meter.update(done, tokens=state["tokens"])
        state["step"] = done
        if checkpoint is not None and _checkpoint_due(done, plan, settings, clock() - last_ckpt, d):
            state["seconds"] = t_run + (time.perf_counter() - t_log)
            save_checkpoint(checkpoint, model, optimizer, state, d)
            last_ckpt = clock()
        if on_step is not None:
            on_step(done)

    state["seconds"] = t_run + (time.perf_counter() - t_log) if plan.total_steps > start else state["seconds"]
    result.tokens, result.final_loss, result.seconds = state["tokens"], state["last_loss"], state["seconds"]
    model.eval()
    return result


def _checkpoint_due(done: int, plan: Plan, s: FinetuneSettings, since_s: float, d: Dist) -> bool:
    """At each epoch's end, every `checkpoint_every` steps, and once `checkpoint_minutes` passed since
    the last checkpoint (or the start). The time rule is rank 0's call, so every rank saves together."""
    if done % plan.steps_per_epoch == 0 or (s.checkpoint_every > 0 and done % s.checkpoint_every == 0):
        return True
    if s.checkpoint_minutes <= 0:
        return False
    return broadcast_flag(since_s >= 60.0 * s.checkpoint_minutes, d)


def check_finite_loss(step_loss: torch.Tensor, opt_step: int, total: int, lr: float) -> None:
    """StepFailed at the first optimizer step whose loss is NaN or infinite (one sync per step).

    Checked before optimizer.step(), so no checkpoint ever holds the weights it would poison; later a
    NaN would only surface as a misleading mask violation (NaN is not zero).
    """
    value = float(step_loss.item())
    if not math.isfinite(value):
        raise StepFailed(f"fine-tune loss is {value} at optimizer step {opt_step} of {total} (lr {lr:.3g}): "
                         "training diverged; lower [finetune] lr or check the text")


def _log(sink: Any, msg: str) -> None:
    if sink is not None:
        sink.log(msg)
