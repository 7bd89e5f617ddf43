"""Reading tier maps without torch, for the CLI's diff / show / report and the dashboard.

`core/tiers.py` writes and reads tier maps with torch; commands that only look at them must start fast,
so they read the same safetensors file through its numpy binding. The file layout is SPEC section 5:
one uint8 tensor `[out // b, in // b]` per prunable matrix (0 DENSE, 1 SEMI, 2 TOPK), metadata
`block_size`, `topk_per_block`, `iteration` stored as strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tierctl.errors import BadInput

INT_META_KEYS = ("block_size", "topk_per_block", "iteration")


def load_tier_maps_numpy(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Tier maps of one file as numpy uint8 arrays, plus metadata (known keys as ints).

    Raises BadInput naming the file for anything a user could have got wrong: a missing or unreadable
    file, a tensor that is not 2-D uint8, a tier value outside 0..2, metadata that is not an integer.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such tier map file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw_meta = dict(f.metadata() or {})
            maps = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInput(f"{path}: not a readable safetensors file ({first})") from None

    if not maps:
        raise BadInput(f"{path}: holds no tier maps")
    for name, t in maps.items():
        if t.dtype != np.uint8 or t.ndim != 2:
            raise BadInput(f"{path}: tensor {name!r} is {t.dtype} with shape {list(t.shape)}, expected 2-D uint8")
        if t.size and int(t.max()) > 2:
            raise BadInput(f"{path}: tensor {name!r} holds tier {int(t.max())}, expected 0 (dense), 1 (2:4), 2 (top-k)")

    meta: dict[str, Any] = dict(raw_meta)
    for key in INT_META_KEYS:
        if key in raw_meta:
            try:
                meta[key] = int(raw_meta[key])
            except ValueError:
                raise BadInput(f"{path}: metadata {key}={raw_meta[key]!r} is not an integer") from None
    return maps, meta
