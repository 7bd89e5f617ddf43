"""The packed format's constants and bit packing: names, metadata keys, 2-bit codes (docs/packed-format.md).

One safetensors file `tierctl-packed.safetensors` holds every tensor of the model. A prunable matrix
`KEY` (its state-dict name, e.g. `model.layers.0.self_attn.q_proj.weight`) is replaced by the tensors
`KEY + SUFFIX` below; every other tensor is stored under its own name, as it is. The file name differs
from `model.safetensors` on purpose: plain transformers then refuses the directory instead of loading a
model whose prunable weights are missing (randomly initialised).
"""

from __future__ import annotations

import torch

FORMAT = "tierctl-packed"
FORMAT_VERSION = 1
WEIGHTS_FILE = "tierctl-packed.safetensors"

# Metadata keys (safetensors metadata is str -> str).
META_FORMAT = "format"
META_VERSION = "format_version"
META_BLOCK = "block_size"
META_TOPK = "topk_per_block"
META_DTYPE = "dtype"
META_MATRICES = "matrices"  # JSON object: KEY -> [out, in], in the order of the model's layers
META_SOURCE = "source"  # campaign and iteration, for humans
META_BASE_MODEL = "base_model"  # [model] name of the campaign: the original model, for `tierctl sample`

# Tensor suffixes of one prunable matrix.
TIERS = ".tiers"  # uint8 [ceil(R*C / 4)]: 2-bit tier codes, row-major blocks, first block in the low bits
DENSE = ".dense"  # dtype [nD, b, b]: DENSE blocks, row-major block order
SEMI_VALUES = ".semi.values"  # dtype [nS, b, b/2]: per block row, per group of 4, the 2 kept values
SEMI_CODES = ".semi.codes"  # uint8 [nS * b * b / 8]: 2-bit column inside the group of each kept value
TOPK_VALUES = ".topk.values"  # dtype [nT, k]: the k kept values of each TOPK block
TOPK_INDEX = ".topk.index"  # uint8 (b*b <= 256) or int32 [nT, k]: position r*b + c inside the block
EDGE_RIGHT = ".edge.right"  # dtype [R*b, in - C*b]: the partial column strip (absent when empty)
EDGE_BOTTOM = ".edge.bottom"  # dtype [out - R*b, in]: the partial row strip (absent when empty)
SUFFIXES = (TIERS, DENSE, SEMI_VALUES, SEMI_CODES, TOPK_VALUES, TOPK_INDEX, EDGE_RIGHT, EDGE_BOTTOM)

DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
DTYPES = {name: dt for dt, name in DTYPE_NAMES.items()}
# Integer views of each value dtype (tests compare bit patterns through them).
BITS_VIEW = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def index_dtype(block_size: int) -> torch.dtype:
    """uint8 positions while a block has at most 256 entries (b <= 16), int32 beyond."""
    return torch.uint8 if block_size * block_size <= 256 else torch.int32


def position_bits(block_size: int) -> int:
    """Bits the format's minimum charges for one TOPK position: ceil(log2(b*b))."""
    return max(1, (block_size * block_size - 1).bit_length())


def pack_2bit(codes: torch.Tensor) -> torch.Tensor:
    """uint8 codes 0..3 (any shape, flattened) -> uint8 [ceil(n/4)]; code i in bits 2*(i%4) of byte i//4."""
    flat = codes.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 4
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    q = flat.view(-1, 4)
    return q[:, 0] | (q[:, 1] << 2) | (q[:, 2] << 4) | (q[:, 3] << 6)


def unpack_2bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of pack_2bit: the first n codes as uint8 [n]."""
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=packed.device)
    return ((packed.reshape(-1, 1) >> shifts) & 3).reshape(-1)[:n]


def full_blocks(shape: tuple[int, int], block_size: int) -> tuple[int, int]:
    """(R, C): full blocks along rows and columns of an [out, in] matrix."""
    return shape[0] // block_size, shape[1] // block_size
