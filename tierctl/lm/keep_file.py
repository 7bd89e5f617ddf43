"""iter<N>/keep.safetensors: what the pruned model of iteration N is beyond its input model.

The prune only zeroes weights of its input (iter<N-1>/model, or `[model] name` for N = 1) by
`apply_keep` (lm/prune.py) and never changes a kept value, so the pruned model is fully given by the
input model and the keep mask of every prunable matrix. The file holds, per prunable matrix (its name,
no ".weight"), the mask as bits (uint8 [ceil(R*C/8)], core/keepbits.py), and in its metadata what
identifies the input and the result:

    format   "tierctl-keep"          version  "1"
    iteration, method                input    "iter<N-1>/model" or the [model] name
    dtype    the campaign's dtype    shapes   JSON {matrix: [R, C]}
    sha256   of every tensor of the pruned model (names, dtypes, shapes, bytes, by name)

A redo of the fine-tune (`tierctl run C --iter N --step finetune --force`) loads the input again,
applies the masks with the same function and checks the sha256, so an input that changed since the
prune (a new revision on the hub, an edited iter<N-1>/model) is refused instead of silently giving
another model. ~1/32 of a float32 model (smollm2-135m: 13 MB); no pickle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tierctl.core.atomic import atomic_write_safetensors
from tierctl.core.keepbits import unpack_keep
from tierctl.errors import BadInput

FORMAT, VERSION = "tierctl-keep", "1"


@dataclass(frozen=True)
class KeepFile:
    """The contents of a keep file: bits per matrix and its metadata (strings)."""

    bits: dict[str, torch.Tensor]  # matrix name -> uint8 [ceil(R*C/8)]
    shapes: dict[str, list[int]]  # matrix name -> [R, C]
    meta: dict[str, str]

    @property
    def sha256(self) -> str:
        return self.meta["sha256"]


def model_sha256(model: nn.Module) -> str:
    """sha256 of every tensor of `model` (state_dict, sorted by name): name, dtype, shape and raw bytes.

    Raw bytes, so -0.0 and +0.0 differ: a rebuild must give the prune's bits, not equal values."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{list(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_keep(path: Path, bits: dict[str, torch.Tensor], shapes: dict[str, list[int]], *, iteration: int,
               method: str, input_model: str, dtype: str, sha256: str) -> None:
    """Write the keep file atomically (temporary + rename): a killed write leaves no keep.safetensors."""
    if set(bits) != set(shapes):
        raise ValueError("keep file: masks and shapes name different matrices")
    meta = {"format": FORMAT, "version": VERSION, "iteration": str(iteration), "method": method,
            "input": input_model, "dtype": dtype, "sha256": sha256,
            "shapes": json.dumps({n: list(map(int, s)) for n, s in sorted(shapes.items())})}
    atomic_write_safetensors(Path(path), {n: b.contiguous() for n, b in bits.items()}, meta)


def read_keep(path: Path) -> KeepFile:
    """The keep file at `path`; BadInput naming it when it is missing, unreadable or not a keep file."""
    from tierctl.core.safetensors_read import read_safetensors

    path = Path(path)
    meta, bits = read_safetensors(path, "missing")
    try:
        shapes = json.loads(meta.get("shapes", "null"))
    except ValueError as e:
        raise BadInput(f"{path}: not a tierctl keep file (shapes: {e})") from None
    if meta.get("format") != FORMAT or not meta.get("sha256") or not isinstance(shapes, dict) or \
            set(shapes) != set(bits):
        raise BadInput(f"{path}: not a tierctl keep file (format {meta.get('format')!r}, version "
                       f"{meta.get('version')!r})")
    if meta.get("version") != VERSION:
        raise BadInput(f"{path}: keep file version {meta.get('version')!r}; this tierctl reads version {VERSION}")
    return KeepFile(bits, shapes, meta)


def apply_keep_file(model: nn.Module, keep: KeepFile, path: Path) -> None:
    """Zero `model`'s prunable weights as the keep file says, with the prune's own `apply_keep`.

    BadInput naming `path` when the model's prunable matrices are not the ones the masks were made for."""
    from tierctl.lm.models import prunable_linears
    from tierctl.lm.prune import apply_keep

    linears = prunable_linears(model)
    if set(linears) != set(keep.bits):
        odd = sorted(set(linears) ^ set(keep.bits))[:2]
        raise BadInput(f"{path}: its masks and the input model's prunable matrices differ ({', '.join(odd)})")
    for name, lin in linears.items():
        if list(lin.weight.shape) != list(keep.shapes[name]):
            raise BadInput(f"{path}: mask of {name} is {keep.shapes[name]}, the input model's matrix "
                           f"{list(lin.weight.shape)}")
        try:
            mask = unpack_keep(keep.bits[name], lin.weight.shape)
        except ValueError as e:
            raise BadInput(f"{path}: mask of {name}: {e}") from None
        apply_keep(lin.weight.data, mask)
