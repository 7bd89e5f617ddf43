"""The size table of `tierctl export`: packed against dense bytes per part, and the ratio."""

from __future__ import annotations

from rich.table import Table


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB" if n >= 10_000 else f"{n:,} B"


def size_table(rows: list[tuple[str, int, int, str]], dtype: str) -> Table:
    """One row per (what, packed bytes, dense bytes, note); dense means the same tensors unpacked in `dtype`."""
    table = Table(title=f"size ({dtype})", title_justify="left")
    for col, justify in (("", "left"), ("packed", "right"), ("dense", "right"), ("dense / packed", "right"),
                         ("", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for what, packed, dense, note in rows:
        table.add_row(what, _mb(packed), _mb(dense), f"{dense / packed:.2f}x" if packed else "-", note)
    return table
