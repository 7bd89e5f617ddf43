"""Per-layer tier composition: one row per decoder layer, a stacked bar per matrix kind.

Live while a prune step runs (filled in as its `layer` events arrive); otherwise the per-layer
composition of the latest iteration in metrics.json, so the panel is never empty after a run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from tierctl.core.live_model import LiveModel
from tierctl.core.vocab import TIER_KEYS
from tierctl.render import allocation_notes, composition_legend, layer_composition_table, split_matrix_name


def _mean(per_layer: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    n = max(1, len(per_layer))
    return {k: sum(float(v.get(k, 0.0)) for v in per_layer.values()) / n for k in TIER_KEYS}


class CompositionPanel(VerticalScroll):
    """A scrolling view of the layer composition table."""

    _last: tuple[LiveModel | None, tuple[int, Mapping[str, Mapping[str, float]]] | None, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="composition-body")

    _key: tuple[int, ...] | None = None

    def on_resize(self) -> None:
        if self._last is not None:
            self._key = None
            self.show(*self._last)

    def show(self, model: LiveModel | None, stored: tuple[int, Mapping[str, Mapping[str, float]]] | None,
             allocation: Mapping[str, Any] | None = None) -> None:
        """`stored` is (iteration, per_layer) of the latest iteration on disk, used when nothing is live;
        `allocation` is that iteration's metrics.json allocation (an OWL column when not uniform)."""
        key = (id(model), model.layers_version if model is not None else -1, id(stored[1]) if stored else 0,
               model.steps["prune"].done if model is not None else 0, self.scrollable_content_region.width)
        if key == self._key:
            return
        self._last, self._key = (model, stored, allocation), key
        body = self.query_one("#composition-body", Static)
        if model is not None and model.layers:
            head = Text(f"iteration {model.iteration}  ", style="bold")
            prune = model.steps["prune"]
            head.append(f"{len(model.layers)} matrices", style="")
            if prune.status == "running" and prune.total:
                head.append(f"  (prune {prune.done}/{prune.total} {prune.unit})", style="dim")
            per_layer: Mapping[str, Mapping[str, float]] = model.layers
            # the allocation is in metrics.json once the prune is done
            notes = allocation_notes(allocation) if stored is not None and stored[0] == model.iteration else None
        elif stored is not None:
            head = Text(f"iteration {stored[0]}  ", style="bold").append("from metrics.json", style="dim")
            per_layer = stored[1]
            notes = allocation_notes(allocation)
        else:
            body.update(Text("no tier composition yet: it appears as the first prune step runs", style="dim"))
            return
        kinds = len({split_matrix_name(n)[1] for n in per_layer}) or 1
        # the layer and sparsity columns take ~16 cells; the rest is shared by one bar (+2 padding) per kind
        width = self.scrollable_content_region.width
        bar = max(3, min(16, (width - 16) // kinds - 2)) if width else 6
        body.update(Group(head, composition_legend(_mean(per_layer)),
                          layer_composition_table(per_layer, bar_width=bar, notes=notes)))
        if model is not None and model.steps["prune"].status == "running":
            self.call_after_refresh(self.scroll_end, animate=False)  # follow the layer being pruned
