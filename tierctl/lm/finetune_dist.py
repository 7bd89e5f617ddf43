"""The process group around a fine-tune: one process, DDP, or FSDP2 (`fully_shard`) under torchrun.

Everything that differs between the three lives here, so `lm/finetune.py` reads as one training
loop. Rules the loop relies on:

- Only rank 0 writes files and events; every rank takes part in collectives (gathers for saving).
- Under FSDP2 a parameter is a DTensor sharded by rows (Shard(0)); its gradient is a DTensor with
  the same placement. Masks are sharded the same way and applied to `to_local()` views: parameter
  hooks on sharded FSDP2 parameters do not fire, so nothing here relies on them.
- On CPU the backend is gloo with an explicit CPU device mesh; on CUDA nccl, one GPU per local rank.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

STRATEGIES = ("single", "ddp", "fsdp2")


@dataclass
class Dist:
    """Where this process sits: rank, world size, device, and how the model is wrapped."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    strategy: str = "single"  # single | ddp | fsdp2
    mesh: Any = None  # DeviceMesh under fsdp2
    owns_group: bool = False  # True when init_dist created the process group (close() destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def world_size() -> int:
    """WORLD_SIZE set by torchrun, 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_dist(device: torch.device, strategy: str = "ddp") -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1; a one-process Dist otherwise.

    `device` is the device asked for (cpu or cuda); under torchrun a CUDA run uses cuda:LOCAL_RANK.
    `strategy` "single" under torchrun means DDP (one process per rank must agree on gradients).
    """
    world = world_size()
    if world <= 1:
        return Dist(device=device)
    import torch.distributed as dist

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r}: must be one of {', '.join(STRATEGIES)}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    mesh = None
    if strategy == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh

        mesh = init_device_mesh(device.type, (world,))
    return Dist(rank=dist.get_rank(), world=world, device=device,
                strategy="fsdp2" if strategy == "fsdp2" else "ddp", mesh=mesh, owns_group=owns)


def close(d: Dist) -> None:
    if d.owns_group:
        import torch.distributed as dist

        dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, layers: nn.ModuleList | None = None) -> nn.Module:
    """The module to call forward/backward on: the model itself, DDP around it, or the model
    sharded in place by FSDP2 (each decoder layer one FSDP unit, the rest in the root unit)."""
    if d.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [d.device.index] if d.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)
    if d.strategy == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in layers if layers is not None else []:
            fully_shard(layer, mesh=d.mesh)
        fully_shard(model, mesh=d.mesh)
        return model
    return model


def unwrap(module: nn.Module) -> nn.Module:
    """The model whose parameter names are the checkpoint's (DDP adds a `module.` prefix)."""
    return getattr(module, "module", module) if type(module).__name__ == "DistributedDataParallel" else module


def is_dtensor(t: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a view sharing its storage), or the tensor itself."""
    return t.to_local() if is_dtensor(t) else t


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor on every rank (an all-gather for a sharded DTensor); collective under FSDP2."""
    return t.full_tensor() if is_dtensor(t) else t


def shard_like(whole: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`whole` (identical on every rank) cut the way `ref` is: this rank's rows for a sharded
    parameter, unchanged otherwise. No communication: each rank slices its own copy."""
    whole = whole.to(device=ref.device)
    if not is_dtensor(ref):
        return whole
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(whole, ref.device_mesh, ref.placements, src_data_rank=None)


@contextlib.contextmanager
def no_grad_sync(module: nn.Module, d: Dist, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter on micro-steps that are not the last of an
    optimizer step: the gradients accumulate locally and are reduced once."""
    if d.strategy == "ddp" and not sync:
        with module.no_sync():  # type: ignore[operator]
            yield
    elif d.strategy == "fsdp2":
        module.set_requires_gradient_sync(sync)  # type: ignore[operator]
        yield
    else:
        yield


def mean_over_ranks(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of a scalar over ranks (for the logged loss: every rank saw a different slice)."""
    if not d.distributed:
        return t
    import torch.distributed as dist

    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / d.world


def barrier(d: Dist) -> None:
    if d.distributed:
        import torch.distributed as dist

        dist.barrier()


def broadcast_flag(flag: bool, d: Dist) -> bool:
    """Rank 0's decision, made everyone's (e.g. "the checkpoint is usable")."""
    if not d.distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=d.device if d.device.type == "cuda" else "cpu")
    dist.broadcast(t, src=0)
    return bool(t.item())


def gather_state_dict(model: nn.Module, d: Dist, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor] | None:
    """The whole state dict on rank 0's CPU (None on other ranks), for save_pretrained.

    Collective under FSDP2: every rank gathers each sharded tensor in turn, so at most one full
    parameter at a time sits on a device beyond the shards.
    """
    out: dict[str, torch.Tensor] = {}
    for name, t in unwrap(model).state_dict().items():
        whole = full(t.detach())
        if d.is_main:
            out[name] = whole.to(device="cpu", dtype=dtype if dtype is not None and whole.is_floating_point() else None)
    return out if d.is_main else None
