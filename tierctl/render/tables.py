"""Tables: the iterations of a campaign, and tier transitions between two sets of tier maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from tierctl.render.bars import comp_bar, composition_percent

STEP_STYLES = {"done": "green", "running": "bold yellow", "failed": "bold red", "pending": "dim"}
STEP_MARKS = {"done": "✓", "running": "▶", "failed": "✗", "pending": "·"}


def step_state(state: str) -> Text:
    """`✓ done`, `▶ running`, `✗ failed`, `· pending`, coloured."""
    return Text(f"{STEP_MARKS.get(state, '?')} {state}", style=STEP_STYLES.get(state, ""))


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def iterations_table(status: Any, bar_width: int = 16, title: str | None = None) -> Table:
    """One row per iteration: step states, composition bar (dense/2:4/top-k %), sparsity, ppl before/after.

    `status` is a CampaignStatus or a list of IterationStatus-like objects (attributes `iteration`,
    `steps`, `composition`, `sparsity`, `ppl_pruned`, `ppl`).
    """
    table = Table(title=title, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("iter", justify="right")
    for step in ("prune", "finetune", "eval"):
        table.add_column(step, no_wrap=True)
    table.add_column("dense/2:4/top-k %", no_wrap=True)
    table.add_column("sparsity", justify="right")
    table.add_column("ppl pruned", justify="right")
    table.add_column("ppl", justify="right")
    for it in getattr(status, "iterations", status):
        bar = comp_bar(it.composition, bar_width)
        bar.append(f" {composition_percent(it.composition)}")
        table.add_row(
            str(it.iteration),
            *[step_state(it.steps.get(s, "pending")) for s in ("prune", "finetune", "eval")],
            bar,
            _num(None if it.sparsity is None else 100 * it.sparsity, "{:.1f}%"),
            _num(it.ppl_pruned, "{:.2f}"),
            _num(it.ppl, "{:.2f}"),
        )
    return table


# Columns of a transition row: (label, i, j) of M[i][j]; promotions are summed into one column.
TRANSITION_COLUMNS = (("D=D", 0, 0), ("D→S", 0, 1), ("D→T", 0, 2), ("S=S", 1, 1), ("S→T", 1, 2), ("T=T", 2, 2))


def transition_stats(m: Sequence[Sequence[int]] | np.ndarray) -> dict[str, float]:
    """blocks, moved (off-diagonal), agreement (diagonal share), promoted (A's tier denser than... B's).

    A promotion is a block whose tier in B is *denser* than in A (below the diagonal): impossible when
    B comes later in the same campaign, so it signals maps from different campaigns or a bug.
    """
    a = np.asarray(m, dtype=np.int64).reshape(3, 3)
    blocks = int(a.sum())
    same = int(np.trace(a))
    return {
        "blocks": blocks,
        "moved": blocks - same,
        "agreement": same / blocks if blocks else 1.0,
        "promoted": int(a[1, 0] + a[2, 0] + a[2, 1]),
    }


def transitions_table(rows: Mapping[str, Any], label: str = "matrix", title: str | None = None,
                      total: bool = True) -> Table:
    """One row per matrix (or group) of 3x3 transition counts M[i][j] (tier i in A, tier j in B).

    Columns: blocks that stayed (D=D, S=S, T=T) and moved down (D→S, D→T, S→T), promoted (any move
    up, bold red when non-zero), moved, agreement. A total row sums all rows.
    """
    table = Table(title=title, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column(label, no_wrap=True)
    for head, _, _ in TRANSITION_COLUMNS:
        table.add_column(head, justify="right")
    for head in ("promoted", "moved", "agree"):
        table.add_column(head, justify="right")

    def add(name: str, m: np.ndarray, style: str = "") -> None:
        st = transition_stats(m)
        bad = st["promoted"] > 0
        table.add_row(
            Text(name, style="bold red" if bad else style),
            *[str(int(m[i][j])) for _, i, j in TRANSITION_COLUMNS],
            Text(str(st["promoted"]), style="bold red" if bad else "dim"),
            str(st["moved"]),
            f"{100 * st['agreement']:.1f}%",
            style=style,
        )

    acc = np.zeros((3, 3), dtype=np.int64)
    for name, m in rows.items():
        arr = np.asarray(m, dtype=np.int64).reshape(3, 3)
        acc += arr
        add(str(name), arr)
    if total and len(rows) > 1:
        table.add_section()
        add("total", acc, style="bold")
    return table
