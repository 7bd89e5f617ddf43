"""Perplexity before and after fine-tune, against iteration and against sparsity (from metrics.json)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from tierctl.render import ppl_chart

CHART_EXTRA_LINES = 4


class PplChart(Horizontal):
    """Two charts side by side, sized to the widget; redrawn from a CampaignStatus."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._status: Any = None

    def compose(self) -> ComposeResult:
        yield Static(id="ppl-by-iteration", classes="ppl-chart")
        yield Static(id="ppl-by-sparsity", classes="ppl-chart")

    def show(self, status: Any) -> None:
        self._status = status
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        if self._status is None:
            return
        height = max(3, self.content_size.height - CHART_EXTRA_LINES)
        its = list(getattr(self._status, "iterations", []))
        reference = getattr(self._status, "reference", None)
        if reference is not None and reference.ppl is not None:  # iteration 0, at sparsity 0: the starting model
            its.insert(0, reference)
        pruned = [it for it in its if it.sparsity is not None]  # sparsity is known once pruned
        self.query_one("#ppl-by-iteration", Static).update(ppl_chart(its, x="iteration", height=height))
        self.query_one("#ppl-by-sparsity", Static).update(ppl_chart(pruned, x="sparsity", height=height))
