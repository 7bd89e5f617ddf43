"""`tierctl export`: write a finished iteration as a Hugging Face model directory, dense or packed.

Everything is written into a temporary directory next to `--out` and renamed into place only after the
packed file was read back and found equal to the iteration's model, so a failure or a kill leaves no
directory that looks complete. The non-tensor files (tokenizer, generation config, chat template) are
copied from `iter<N>/model`; config.json too, with its dtype changed when `--dtype` asks for another.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from tierctl.core.atomic import atomic_dir
from tierctl.errors import BadInput
from tierctl.export import format as fmt
from tierctl.export.matrix import PackError, pack_matrix
from tierctl.export.packed_file import PackedCheckpoint, read_checkpoint, write_checkpoint
from tierctl.export.sizes import SizeReport, size_report
from tierctl.export.source import IterationSource, check_export

DENSE_FILE = "model.safetensors"
SKIPPED = ("finetune.json", "model.safetensors.index.json")  # the ledger stays with the campaign


@dataclass
class ExportResult:
    out: Path
    format: str
    dtype: str
    sizes: SizeReport | None  # packed exports only


def source_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model directory: all its safetensors shards, or its packed file unpacked
    (an iteration kept packed by `[run] store = "packed"`), bit-exact either way."""
    from safetensors.torch import load_file

    packed = Path(model_dir) / fmt.WEIGHTS_FILE
    if packed.is_file():
        ckpt = read_checkpoint(packed)
        return {**ckpt.others, **{key: m.unpack() for key, m in ckpt.matrices.items()}}
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise BadInput(f"{model_dir}: holds no .safetensors weights")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors in `dtype`, every zero written as +0.0.

    A pruned weight of a dense checkpoint may be -0.0 (a negative weight times a 0 mask) and the packed
    form stores no sign for what it does not store; with one zero the export of an iteration is the same
    bytes whichever form the campaign kept it in ([run] store). x + 0.0 is x for every other value.
    """
    return {n: (t.to(dtype) + 0.0 if t.is_floating_point() else t) for n, t in tensors.items()}


def _copy_side_files(src: Path, dest: Path, dtype: str, same_dtype: bool) -> int:
    """Copy config, tokenizer and generation files; returns their bytes. config.json gets `dtype`."""
    total = 0
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.suffix == ".safetensors" or f.name in SKIPPED:
            continue
        if f.name == "config.json" and not same_dtype:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(src), local_files_only=True)
            config.dtype = dtype  # written as "dtype" in config.json
            config.save_pretrained(str(dest))
        else:
            shutil.copy2(f, dest / f.name)
        total += (dest / f.name).stat().st_size
    return total


def pack_checkpoint(tensors: dict[str, torch.Tensor], tier_maps: dict[str, torch.Tensor], block_size: int, k: int,
                    dtype: torch.dtype, source: str, base_model: str = "") -> PackedCheckpoint:
    """Pack the prunable matrices (tier-map key + ".weight"); keep every other tensor as it is."""
    matrices = {}
    for name, tiers in tier_maps.items():
        key = name + ".weight"
        if key not in tensors:
            raise BadInput(f"{source}: the tier map names {name} but the model has no tensor {key}")
        try:
            matrices[key] = pack_matrix(tensors[key], tiers, block_size, k, key)
        except PackError as e:
            raise BadInput(f"{source}: {e}") from None
    others = {n: t for n, t in tensors.items() if n not in matrices}
    return PackedCheckpoint(matrices, others, block_size, k, dtype, source,
                            {fmt.META_BASE_MODEL: base_model} if base_model else {})


def verify_packed(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Read a packed file back and compare every tensor with the reference; RuntimeError on a difference."""
    ckpt = read_checkpoint(path)
    rebuilt = {**ckpt.others, **{key: m.unpack() for key, m in ckpt.matrices.items()}}
    if set(rebuilt) != set(tensors):
        odd = sorted(set(rebuilt) ^ set(tensors))[:3]
        raise RuntimeError(f"{path}: holds tensors {odd} that differ from the model's")
    for name, t in tensors.items():
        if rebuilt[name].dtype != t.dtype or not torch.equal(rebuilt[name], t):
            raise RuntimeError(f"{path}: tensor {name} does not read back equal to the model's")


def write_packed(dest: Path, tensors: dict[str, torch.Tensor], tier_maps: dict[str, torch.Tensor], block_size: int,
                 k: int, dtype: torch.dtype, source: str, base_model: str = "") -> PackedCheckpoint:
    """Pack `tensors` by `tier_maps` into `dest`/tierctl-packed.safetensors and read it back equal.

    The one writer of packed files: `tierctl export` and the steps of a `[run] store = "packed"` campaign.
    `dest` is a temporary directory its caller renames into place, so a failed check leaves nothing.
    """
    ckpt = pack_checkpoint(tensors, tier_maps, block_size, k, dtype, source, base_model)
    write_checkpoint(dest / fmt.WEIGHTS_FILE, ckpt)
    verify_packed(dest / fmt.WEIGHTS_FILE, tensors)
    return ckpt


def export_iteration(src: IterationSource, out: Path, format: str | None = None,
                     dtype: str | None = None) -> ExportResult:
    """Write iteration `src` to `out` (packed by default for progressive campaigns, dense for baselines)."""
    from tierctl.core.tiermap_io import load_tiers

    out = Path(out)
    format, dtype = check_export(src, out, format, dtype)
    torch_dtype = fmt.DTYPES[dtype]
    tensors = _cast(source_tensors(src.model_dir), torch_dtype)
    maps, meta = load_tiers(src.tiers) if format == "packed" else ({}, {})
    sizes = None
    try:
        with atomic_dir(out) as tmp:
            side = _copy_side_files(src.model_dir, tmp, dtype, same_dtype=dtype == src.dtype)
            if format == "dense":
                from safetensors.torch import save_file

                save_file(tensors, str(tmp / DENSE_FILE), metadata={"format": "pt"})
            else:
                ckpt = write_packed(tmp, tensors, maps, int(meta["block_size"]), int(meta["topk_per_block"]),
                                    torch_dtype, src.label, src.base_model)
                other_bytes = sum(t.numel() * t.element_size() for t in ckpt.others.values())
                sizes = size_report(ckpt.matrices, other_bytes, (tmp / fmt.WEIGHTS_FILE).stat().st_size, side)
    except PermissionError as e:
        raise BadInput(f"--out {out}: cannot write there ({e.strerror})") from None
    return ExportResult(out, format, dtype, sizes)
