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
    """Every tensor of a saved model directory (all its safetensors shards)."""
    from safetensors.torch import load_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise BadInput(f"{model_dir}: holds no .safetensors weights")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {n: (t.to(dtype) if t.is_floating_point() else t) for n, t in tensors.items()}


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


def export_iteration(src: IterationSource, out: Path, format: str | None = None,
                     dtype: str | None = None) -> ExportResult:
    """Write iteration `src` to `out` (packed by default for progressive campaigns, dense for baselines)."""
    from tierctl.core.tiermap_io import load_tiers

    out = Path(out)
    format, dtype = check_export(src, out, format, dtype)
    torch_dtype = fmt.DTYPES[dtype]
    tensors = _cast(source_tensors(src.model_dir), torch_dtype)
    ckpt = None
    if format == "packed":
        maps, meta = load_tiers(src.tiers)
        ckpt = pack_checkpoint(tensors, maps, int(meta["block_size"]), int(meta["topk_per_block"]), torch_dtype,
                               src.label, src.base_model)
    sizes = None
    try:
        with atomic_dir(out) as tmp:
            side = _copy_side_files(src.model_dir, tmp, dtype, same_dtype=dtype == src.dtype)
            if ckpt is None:
                from safetensors.torch import save_file

                save_file(tensors, str(tmp / DENSE_FILE), metadata={"format": "pt"})
            else:
                write_checkpoint(tmp / fmt.WEIGHTS_FILE, ckpt)
                verify_packed(tmp / fmt.WEIGHTS_FILE, tensors)
                other_bytes = sum(t.numel() * t.element_size() for t in ckpt.others.values())
                sizes = size_report(ckpt.matrices, other_bytes, (tmp / fmt.WEIGHTS_FILE).stat().st_size, side)
    except PermissionError as e:
        raise BadInput(f"--out {out}: cannot write there ({e.strerror})") from None
    return ExportResult(out, format, dtype, sizes)
