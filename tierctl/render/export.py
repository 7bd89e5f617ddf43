"""What `tierctl export` and `tierctl sample` print: the size table, and greedy texts side by side."""

from __future__ import annotations

import re

from rich.table import Table
from rich.text import Text

BREAK_MARK = "⏎"
_BREAK_RUN = re.compile(r"\n{3,}")


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


def shown_text(text: str) -> Text:
    """A generated text as the table shows it: never blank when the model wrote only line breaks or spaces.

    A badly pruned model often answers with a run of newlines; printed as they are, they make an empty
    looking cell many lines tall. Runs of 3 or more line breaks are shown as one line `⏎ x N`; a text with
    nothing but whitespace says so. Rich markup in the model's text is not interpreted (Text, not markup).
    """
    if not text.strip():
        what = f"{text.count(chr(10))} line breaks" if "\n" in text else f"{len(text)} spaces"
        return Text(f"(only whitespace: {what})" if text else "(nothing: the model ended at once)", style="dim")
    return Text(_BREAK_RUN.sub(lambda m: f"\n{BREAK_MARK} x {len(m.group())}\n", text.strip("\n")))


def sample_table(texts: dict[str, str], max_new_tokens: int) -> Table:
    """One column per model (the original first), one row of greedy text."""
    table = Table(title=f"greedy, {max_new_tokens} new tokens", show_lines=True)
    for label in texts:
        table.add_column(label, overflow="fold")
    table.add_row(*(shown_text(t) for t in texts.values()))
    return table
