"""The sweep as Rich tables: one row per point, and the best point at each sparsity (`tierctl sweep status`)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

STATE_STYLES = {"done": "green", "running": "cyan", "pending": "dim", "failed": "red", "halted": "yellow"}


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def sweep_table(doc: dict[str, Any], title: str | None = None) -> Table:
    """Points of `sweep_status(...)`: name, job, state, iteration reached, sparsity, ppl, and why (failed / halted)."""
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False)
    for head, justify in (("campaign", "left"), ("job", "right"), ("state", "left"), ("iter", "right"),
                          ("sparsity", "right"), ("ppl", "right"), ("", "left")):
        table.add_column(head, justify=justify)  # type: ignore[arg-type]
    for c in doc["campaigns"]:
        table.add_row(c["name"], c.get("job_id") or "-", Text(c["state"], style=STATE_STYLES.get(c["state"], "")),
                      str(c["iteration"] or "-"), _num(c["sparsity"], "{:.1%}"), _num(c["ppl"], "{:.2f}"),
                      Text(c.get("reason") or "", style="dim"))
    return table


def best_table(best: list[dict[str, Any]], title: str = "best point at each sparsity") -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, header_style="bold", show_edge=False, pad_edge=False)
    for head, justify in (("sparsity", "right"), ("ppl", "right"), ("campaign", "left"), ("iter", "right")):
        table.add_column(head, justify=justify)  # type: ignore[arg-type]
    for b in best:
        table.add_row(f"{b['sparsity']:.1%}", f"{b['ppl']:.2f}", b["name"], str(b["iteration"]))
    return table
