"""The size table of `tierctl export`: packed against dense bytes, the ratio, and the format's minimum."""

from __future__ import annotations

from rich.table import Table


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f} MB" if n >= 10_000 else f"{n:,} B"


def size_table(rows: list[tuple[str, int, int, int | None]], dtype: str, weights: int) -> Table:
    """One row per (what, packed bytes, dense bytes, minimum bytes or None); dense = the same tensors in `dtype`.

    `weights` (entries of the prunable matrices) gives the first row's bits per weight.
    """
    table = Table(title=f"size ({dtype})", title_justify="left")
    for col in ("", "packed", "dense", "dense/packed", "minimum", "packed/min"):
        table.add_column(col, justify="left" if not col else "right")
    for what, packed, dense, minimum in rows:
        table.add_row(what, _mb(packed), _mb(dense), f"{dense / packed:.2f}x" if packed else "-",
                      _mb(minimum) if minimum else "-", f"{packed / minimum:.4f}" if minimum else "-")
    if weights:
        packed = rows[0][1]
        table.caption = (f"prunable: the pruned matrices, {8 * packed / weights:.2f} bits per weight; directory: "
                         "every file")
        table.caption_justify = "left"
    return table
