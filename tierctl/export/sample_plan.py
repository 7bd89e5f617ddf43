"""Which models `tierctl sample` runs, in which columns: checked before torch is imported.

The original model comes first (the `[model] name` of the first campaign given, or the `base_model` a
packed export records), then every `CAMPAIGN[@N]` or export directory in the order given, then `--packed`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from tierctl.errors import BadInput

PACKED_FILE = "tierctl-packed.safetensors"  # tierctl.export.format.WEIGHTS_FILE, without importing torch


@dataclass(frozen=True)
class Column:
    label: str
    kind: str  # "model" (preset, HF id or model directory, through tierctl.lm) or "packed" (load_packed)
    spec: str
    dtype: str = "float32"


def packed_metadata(directory: Path) -> dict[str, str]:
    """The safetensors metadata of a packed export (its header only); BadInput when unreadable."""
    path = Path(directory) / PACKED_FILE
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(min(n, 100_000_000)))
        meta = header.get("__metadata__") or {}
    except (OSError, struct.error, ValueError, AttributeError):
        raise BadInput(f"{path}: not a readable safetensors file") from None
    return {str(k): str(v) for k, v in meta.items()}


def _export_column(path: Path) -> tuple[Column, str | None]:
    if (path / PACKED_FILE).is_file():
        meta = packed_metadata(path)
        dtype = meta.get("dtype", "float32")
        return Column(f"{meta.get('source') or path.name} (packed)", "packed", str(path), dtype), \
            meta.get("base_model")
    if (path / "config.json").is_file():
        return Column(path.name, "model", str(path)), None
    raise BadInput(f"{path}: neither a campaign nor an exported model directory")


def plan_columns(targets: list[str], packed: list[Path]) -> list[Column]:
    """The columns, original first; BadInput for a missing campaign, an unfinished iteration, a bad directory."""
    from tierctl.export.source import resolve_iteration

    columns: list[Column] = []
    original: tuple[str, str] | None = None
    for target in targets:
        path = Path(target)
        if path.is_dir() and not (path / "campaign.toml").is_file():
            col, base = _export_column(path)
            if base and original is None:
                original = (base, col.dtype)
        else:
            src = resolve_iteration(target)
            col = Column(src.label, "model", str(src.model_dir), src.dtype)
            if original is None:
                original = (src.base_model, src.dtype)
        columns.append(col)
    for path in packed:
        if not (Path(path) / PACKED_FILE).is_file():
            raise BadInput(f"--packed {path}: no {PACKED_FILE} there (not a packed export)")
        col, base = _export_column(Path(path))
        if base and original is None:
            original = (base, col.dtype)
        columns.append(col)
    if original is not None:
        columns.insert(0, Column(f"original ({original[0]})", "model", original[0], original[1]))
    return columns
