"""What an iteration came to, in three short cells beside its schedule row: ppl (after the prune ->
after the fine-tune), the sparsity it reached, and its state.

One function for every place that shows an outcome next to a row (the dashboard's schedule table),
so the words and numbers agree with `tierctl status` (the state is core.vocab.iteration_state, drawn
by render.tables.iteration_state). Rich only; reads no file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text

from tierctl.core.vocab import PENDING
from tierctl.core.vocab import iteration_state as summed_up
from tierctl.render.tables import interval_text, iteration_state


@dataclass(frozen=True)
class Outcome:
    """The cells of one iteration: `ppl` (`48.25→41.50`), `sparsity` (`14.5%`), `state` (`✓ done`)."""

    ppl: Text
    sparsity: Text
    state: Text


def ppl_number(value: float | None) -> str:
    """A perplexity with 2 decimals under 100, 1 under 1000, none above; `-` when not measured."""
    if value is None:
        return "-"
    return f"{value:.{2 if value < 100 else 1 if value < 1000 else 0}f}"


def iteration_outcome(it: Any) -> Outcome:
    """The outcome of an IterationStatus-like object (`steps`, `ppl_pruned`, `ppl`, `sparsity`).

    An iteration that did not run yet has empty cells, so a table of plans reads as one.
    """
    if summed_up(it.steps).word == PENDING:
        return Outcome(Text(""), Text(""), Text(""))
    ppl = Text(justify="right", no_wrap=True)
    if it.ppl_pruned is not None or it.ppl is not None:
        ppl.append(ppl_number(it.ppl_pruned), style="dim")
        ppl.append("→", style="dim")
        ppl.append(ppl_number(it.ppl), style="bold")
    sparsity = Text("" if it.sparsity is None else f"{100 * it.sparsity:.1f}%", justify="right")
    return Outcome(ppl, sparsity, iteration_state(it.steps))


def reference_line(status: Any) -> Text | None:
    """`reference ppl 30.25 (28.50-32.10)`: the unpruned model's ppl (iter0/metrics.json), None until measured."""
    ref = getattr(status, "reference", None)
    if ref is None or ref.ppl is None:
        return None
    out = Text("reference ppl ")
    out.append(ppl_number(ref.ppl), style="bold")
    if ref.ppl_interval:
        out.append(f" ({interval_text(ref.ppl_interval)})", style="dim")
    return out
