"""Shipping a pruned model: the packed format, `load_packed`, `TieredLinear`, `tierctl export` / `sample`.

This package sits on the model side (torch, safetensors, transformers). The CLI imports it lazily, so
`tierctl --help` stays free of torch; `from tierctl.export import load_packed` imports what it needs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_packed", "TieredLinear"]


def __getattr__(name: str) -> Any:
    if name == "load_packed":
        from tierctl.export.load import load_packed

        return load_packed
    if name == "TieredLinear":
        from tierctl.export.tiered_linear import TieredLinear

        return TieredLinear
    raise AttributeError(name)
