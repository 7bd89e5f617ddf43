"""Reading and writing `tierctl-packed.safetensors`: the packed matrices, the other tensors, the metadata.

The reader checks everything it can before a model is built (format and version, shapes, dtypes, codes),
and raises BadInput naming the file and the tensor: a corrupted file never turns into a wrong model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tierctl.errors import BadInput
from tierctl.export import format as fmt
from tierctl.export.matrix import PackedMatrix, PackError


@dataclass
class PackedCheckpoint:
    """A packed model's tensors: prunable matrices by state-dict key, every other tensor as it is."""

    matrices: dict[str, PackedMatrix]
    others: dict[str, torch.Tensor]
    block_size: int
    k: int
    dtype: torch.dtype
    source: str = ""
    extra_meta: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        shapes = {key: list(m.shape) for key, m in self.matrices.items()}
        return {fmt.META_FORMAT: fmt.FORMAT, fmt.META_VERSION: str(fmt.FORMAT_VERSION),
                fmt.META_BLOCK: str(self.block_size), fmt.META_TOPK: str(self.k),
                fmt.META_DTYPE: fmt.DTYPE_NAMES[self.dtype], fmt.META_MATRICES: json.dumps(shapes),
                fmt.META_SOURCE: self.source, **self.extra_meta}

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {name: t.contiguous() for name, t in self.others.items()}
        for key, m in self.matrices.items():
            out.update(m.to_tensors(key))
        return out


def write_checkpoint(path: Path, ckpt: PackedCheckpoint) -> None:
    """Save the checkpoint to `path` (the caller writes into a temporary directory that is renamed later).

    The metadata keys are then sorted in place (same header length): safetensors writes them in hash-map
    order, which changes per process, and equal models must give equal files (an export from a packed-store
    campaign is compared byte for byte with one from a dense-store campaign).
    """
    from safetensors.torch import save_file

    from tierctl.core.atomic import canonical_safetensors

    save_file(ckpt.tensors(), str(path), metadata=ckpt.metadata())
    with open(path, "r+b") as f:
        head = f.read(8)
        header = head + f.read(int.from_bytes(head, "little"))
        f.seek(0)
        f.write(canonical_safetensors(header))


def _int_meta(path: Path, meta: Mapping[str, str], key: str) -> int:
    try:
        return int(meta[key])
    except KeyError:
        raise BadInput(f"{path}: metadata lacks {key}") from None
    except ValueError:
        raise BadInput(f"{path}: metadata {key}={meta[key]!r} is not an integer") from None


def read_checkpoint(path: Path) -> PackedCheckpoint:
    """Read and check a packed file; BadInput (one line naming the file) for anything wrong with it."""
    from tierctl.core.safetensors_read import read_safetensors

    path = Path(path)
    meta, tensors = read_safetensors(path, "missing (not a tierctl packed model directory)")
    if meta.get(fmt.META_FORMAT) != fmt.FORMAT:
        raise BadInput(f"{path}: metadata format is {meta.get(fmt.META_FORMAT)!r}, expected {fmt.FORMAT!r}")
    version = _int_meta(path, meta, fmt.META_VERSION)
    if version != fmt.FORMAT_VERSION:
        raise BadInput(f"{path}: format version {version}, this tierctl reads version {fmt.FORMAT_VERSION}")
    b, k = _int_meta(path, meta, fmt.META_BLOCK), _int_meta(path, meta, fmt.META_TOPK)
    if b < 4 or b % 4 or not 1 <= k <= b * b:
        raise BadInput(f"{path}: block_size {b} / topk_per_block {k} are not valid (b a multiple of 4, 1 <= k <= b*b)")
    dtype = fmt.DTYPES.get(meta.get(fmt.META_DTYPE, ""))
    if dtype is None:
        raise BadInput(f"{path}: metadata dtype {meta.get(fmt.META_DTYPE)!r} is not one of {', '.join(fmt.DTYPES)}")
    try:
        shapes = json.loads(meta.get(fmt.META_MATRICES, ""))
        shapes = {str(key): (int(s[0]), int(s[1])) for key, s in shapes.items()}
    except (ValueError, TypeError, IndexError, AttributeError):
        raise BadInput(f"{path}: metadata {fmt.META_MATRICES} is not a JSON object of [out, in] shapes") from None

    matrices: dict[str, PackedMatrix] = {}
    for key, shape in shapes.items():
        try:
            matrices[key] = PackedMatrix.from_tensors(key, tensors, shape, b, k, dtype)
        except PackError as e:
            raise BadInput(f"{path}: {e}") from None
    owned = {key + suffix for key in shapes for suffix in fmt.SUFFIXES}
    others = {name: t for name, t in tensors.items() if name not in owned}
    extra = {key: v for key, v in meta.items() if key == fmt.META_BASE_MODEL}
    return PackedCheckpoint(matrices, others, b, k, dtype, meta.get(fmt.META_SOURCE, ""), extra)
