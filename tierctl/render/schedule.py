"""The schedule as a Rich table with its projection, shared by `tierctl schedule show` and the dashboard.

Rich and core only (no torch, no file reading): the caller loads the schedule and passes the block
size and k of its campaign, since the expected sparsity of a top-k block depends on them.
"""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from tierctl.core.schedule import Schedule, format_fraction, project
from tierctl.core.schedule_knobs import format_knob
from tierctl.render.bars import composition_bar


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _frac(x: float) -> str:
    return format_fraction(x, places=4)


def schedule_table(schedule: Schedule, block_size: int = 16, k: int = 10, title: str | None = None,
                   bar_width: int = 10) -> Table:
    """One row per iteration: the cumulative fractions, the moves, epochs, a composition bar and the
    expected weight sparsity of the prunable matrices (full blocks; partial blocks stay dense).

    Transition columns the file left out (derived) are starred and dim, so a reader knows they were computed.
    """
    derived = set(schedule.derived)
    table = Table(title=title, show_edge=False, pad_edge=False, header_style="bold", box=box.SIMPLE_HEAD,
                  collapse_padding=True)
    table.add_column("iter", justify="right")
    for head in ("dense", "2:4", "top-k"):
        table.add_column(head, justify="right")
    for head, col in (("dense→2:4", "dense_to_2_4"), ("2:4→top-k", "mid_2_4_to_topk")):
        mark = col in derived
        table.add_column(head + ("*" if mark else ""), justify="right", style="dim" if mark else "")
    table.add_column("epochs", justify="right")
    knobs = schedule.knobs  # per-iteration fine-tune settings, shown only when some row sets them
    for knob in knobs:
        table.add_column(knob, justify="right")
    table.add_column("composition", no_wrap=True)
    table.add_column("sparsity", justify="right", style="bold")
    for row, p in zip(schedule.rows, project(schedule, block_size, k), strict=True):
        table.add_row(
            str(row.iteration),
            _frac(row.dense), _frac(row.mid_2_4), _frac(row.topk),
            _frac(row.dense_to_2_4), _frac(row.mid_2_4_to_topk),
            Text(str(row.epochs), style="dim" if row.epochs == 0 else ""),
            *(Text(format_knob(kn, getattr(row, kn)) or "-", style="" if getattr(row, kn) is not None else "dim")
              for kn in knobs),
            composition_bar(p["dense"], p["semi"], p["topk"], bar_width),
            _pct(p["sparsity"]),
        )
    table.caption = (f"expected sparsity for {block_size}x{block_size} blocks, top-{k} per block"
                     + ("; * derived" if derived else "") + ("; - = campaign.toml" if knobs else ""))
    return table
