"""Tables: the iterations of a campaign, and tier transitions between two sets of tier maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich import box
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from tierctl.core.vocab import DONE, FAILED, INTERRUPTED, PARTIAL, PENDING, RUNNING, STEPS
from tierctl.core.vocab import iteration_state as summed_up
from tierctl.render.bars import comp_bar, composition_percent

STEP_STYLES = {DONE: "green", RUNNING: "bold yellow", FAILED: "bold red", INTERRUPTED: "yellow", PENDING: "dim"}
STEP_MARKS = {DONE: "✓", RUNNING: "▶", FAILED: "✗", INTERRUPTED: "↻", PENDING: "·"}


def step_state(state: str) -> Text:
    """`✓ done`, `▶ running`, `✗ failed`, `↻ interrupted`, `· pending`, coloured."""
    return Text(f"{STEP_MARKS.get(state, '?')} {state}", style=STEP_STYLES.get(state, ""))


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


WIDE = 96  # widths from which the iterations table has one column per step


def iteration_state(steps: Mapping[str, str]) -> Text:
    """The state of a whole iteration in one cell (core.vocab.iteration_state): `✓ done`,
    `▶ finetune` (running), `✗ eval` (failed), `↻ eval` (interrupted), `✓ prune` (done up to that
    step, the rest pending) or `· pending`."""
    state = summed_up(steps)
    if state.word in (RUNNING, FAILED, INTERRUPTED):
        return Text(f"{STEP_MARKS[state.word]} {state.step}", style=STEP_STYLES[state.word])
    if state.word == PARTIAL:
        return Text(f"✓ {state.step}", style="yellow")
    return step_state(state.word)


def interval_text(interval: Sequence[float] | None) -> str:
    """`28.1-32.0`: a 95% ppl interval in one short cell ("-" when there is none)."""
    if not interval:
        return "-"
    return f"{interval[0]:.{_digits(interval[0])}f}-{interval[1]:.{_digits(interval[1])}f}"


def _digits(v: float) -> int:
    return 2 if v < 100 else 1 if v < 1000 else 0


def ratio_text(value: float | None, reference: float | None) -> str:
    """`1.52x`: a ppl as a multiple of the reference's ("-" without either)."""
    return "-" if value is None or not reference else f"{value / reference:.2f}x"


class IterationsTable:
    """One row per iteration: step states, composition bar (dense/2:4/top-k %), sparsity, ppl before/after.

    The reference (iteration 0, the starting model) comes first when the status has one, and every ppl
    after fine-tune is also shown as a multiple of its ppl (`x ref`). From WIDE columns on, one column per
    step, the 95% interval of the ppl (once there is one) and, when the campaign has zero-shot tasks, their
    mean acc; narrower,
    one `steps` column (iteration_state), a shorter bar and, below 66 columns, shorter headers (`pruned`
    is the ppl after prune) and no `x ref`, so it reads at 80 columns and in a dashboard panel down to 60.
    """

    def __init__(self, status: Any, bar_width: int | None = None, title: str | None = None) -> None:
        self.iterations = list(getattr(status, "iterations", status))
        self.reference = getattr(status, "reference", None)
        self.bar_width, self.title = bar_width, title

    def table(self, width: int) -> Table:
        ref = self.reference
        ref_ppl = ref.ppl if ref is not None else None
        rows = ([ref] if ref is not None else []) + self.iterations
        accs = [getattr(it, "mean_acc", None) for it in rows]
        # Extra columns by priority as the width allows: `x ref` (7), the mean zero-shot acc (7), the
        # interval (14), then the step columns (+20 over one `steps` column).
        ratio_w = 7 if ref is not None and width >= 74 else 0
        acc_w = 7 if any(a is not None for a in accs) and width >= 74 + ratio_w + 7 else 0
        interval_w = 14 if any(getattr(it, "ppl_interval", None) for it in rows) and \
            width >= 76 + ratio_w + acc_w else 0
        wide = width >= WIDE + ratio_w + acc_w + interval_w
        show_acc, show_interval, show_ratio = acc_w > 0, interval_w > 0, ratio_w > 0
        base = 82 if wide else 58  # what the other columns take
        bar_width = self.bar_width or max(6, min(16, width - base - ratio_w - acc_w - interval_w))
        table = Table(title=self.title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                      header_style="bold")
        tight = width < 66  # shorter headers, so that every number still shows in a narrow panel
        table.add_column("iter", justify="right", no_wrap=True)
        for step in STEPS if wide else ("steps",):
            table.add_column(step, no_wrap=True)
        table.add_column("D/2:4/T %" if tight else "dense/2:4/top-k %", no_wrap=True)
        table.add_column("sparse" if tight else "sparsity", justify="right", no_wrap=True)
        table.add_column("pruned" if tight else "ppl pruned", justify="right", no_wrap=True)
        table.add_column("ppl", justify="right", no_wrap=True)
        if show_interval:
            table.add_column("95% interval", justify="right", no_wrap=True)
        if show_ratio:
            table.add_column("x ref", justify="right", no_wrap=True)
        if show_acc:
            table.add_column("acc", justify="right", no_wrap=True)
        for it, acc in zip(rows, accs, strict=True):
            reference = it is ref
            if reference:
                bar = Text("reference", style="dim")
                cells = [Text("-", style="dim"), Text("-", style="dim"), step_state(it.steps.get("eval", "pending"))]
                steps = cells if wide else [iteration_state({s: "done" for s in STEPS[:2]} | dict(it.steps))]
            else:
                bar = comp_bar(it.composition, bar_width)
                bar.append(f" {composition_percent(it.composition)}")
                steps = [step_state(it.steps.get(s, "pending")) for s in STEPS] if wide else \
                    [iteration_state(it.steps)]
            extra = [interval_text(getattr(it, "ppl_interval", None))] if show_interval else []
            if show_ratio:
                extra.append(ratio_text(it.ppl, ref_ppl))
            if show_acc:
                extra.append(_num(acc, "{:.3f}"))
            table.add_row(
                "0" if reference else str(it.iteration),
                *steps,
                bar,
                _num(None if it.sparsity is None else 100 * it.sparsity, "{:.1f}%"),
                _num(it.ppl_pruned, "{:.2f}"),
                _num(it.ppl, "{:.2f}"),
                *extra,
                style="italic" if reference else "",
            )
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.table(options.max_width))


def iterations_table(status: Any, bar_width: int | None = None, title: str | None = None) -> IterationsTable:
    """The iterations of a campaign (see IterationsTable). `status` is a CampaignStatus or a list of
    IterationStatus-like objects (attributes `iteration`, `steps`, `composition`, `sparsity`,
    `ppl_pruned`, `ppl`); `bar_width` fixes the bar, else it follows the width."""
    return IterationsTable(status, bar_width, title)


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
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                  header_style="bold")
    table.add_column(label, overflow="fold")  # long names fold; the counts never shrink
    for head, _, _ in TRANSITION_COLUMNS:
        table.add_column(head, justify="right", no_wrap=True, min_width=len(head))
    for head in ("promoted", "moved", "agree"):
        table.add_column(head, justify="right", no_wrap=True, min_width=max(len(head), 6 if head == "agree" else 0))

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
