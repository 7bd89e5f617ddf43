"""Reading a whole safetensors file (metadata and every tensor) with one line for what went wrong.

Tier maps, packed models and keep files are all safetensors files a user may hand over damaged; each
reader then checks its own format, but the first failure (missing, unreadable, not safetensors) is
worded the same way everywhere: BadInput naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tierctl.errors import BadInput


def read_safetensors(path: str | Path, what: str, framework: str = "pt") -> tuple[dict[str, str], dict[str, Any]]:
    """(metadata, {name: tensor}) of the file; BadInput `PATH: missing (WHAT)` or `PATH: not a readable
    safetensors file (REASON)`. `what` says what the file should have been (for the missing case)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: {what}")
    try:
        with safe_open(str(path), framework=framework) as f:
            meta = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118  (safe_open has no iterator)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:  # a damaged header raises several types
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInput(f"{path}: not a readable safetensors file ({first})") from None
    return meta, tensors
