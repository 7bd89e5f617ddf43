"""A prune's keep mask as bits: one bit per weight, 8 weights per byte.

The prune of an iteration only zeroes weights of its input (`weight *= keep`), so the pruned model is
the input model and its keep masks: iter<N>/keep.safetensors holds them, 1/32 of a float32 model. The
order is numpy.packbits': the weights row-major, the first of each 8 in the byte's highest bit, the last
byte padded with zero bits.
"""

from __future__ import annotations

import torch

_SHIFTS = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0], dtype=torch.uint8)


def packed_length(numel: int) -> int:
    """Bytes of the bits of `numel` weights."""
    return (numel + 7) // 8


def pack_keep(keep: torch.Tensor) -> torch.Tensor:
    """uint8 [ceil(numel / 8)] on the CPU: the bits of bool mask `keep` (any shape, any device)."""
    flat = keep.reshape(-1).to(torch.uint8)
    pad = packed_length(flat.numel()) * 8 - flat.numel()
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) << _SHIFTS.to(flat.device)).sum(dim=1, dtype=torch.uint8).cpu()


def unpack_keep(bits: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """Bool mask of `shape` from the bits `pack_keep` made; ValueError when their length does not fit it."""
    numel = 1
    for d in shape:
        numel *= int(d)
    if bits.dtype != torch.uint8 or bits.dim() != 1 or bits.numel() != packed_length(numel):
        raise ValueError(f"{bits.numel()} {str(bits.dtype).removeprefix('torch.')} values cannot be the bits of a "
                         f"{list(shape)} mask ({packed_length(numel)} uint8 values)")
    flat = (bits.unsqueeze(1) >> _SHIFTS.to(bits.device)) & 1  # [bytes, 8]
    return flat.reshape(-1)[:numel].bool().reshape(tuple(shape))
