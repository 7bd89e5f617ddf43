"""The fine-tune loss curve of the followed iteration, drawn from the live model's decimated series."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import Static

from tierctl.render import LineChart
from tierctl.tui.live_state import LiveModel

CHART_EXTRA_LINES = 4  # title, x axis, x labels and legend around the plot rows


class LossChart(Static):
    """Redrawn from the model on `show`, and on resize (the plot fills the widget)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._model: LiveModel | None = None

    def show(self, model: LiveModel) -> None:
        self._model = model
        self.update(self._renderable())

    def on_resize(self) -> None:
        if self._model is not None:
            self.update(self._renderable())

    def _renderable(self) -> RenderableType:
        model = self._model
        if model is None or not model.loss.points:
            return Text("fine-tune loss: no fine-tune step in the followed iteration yet", style="dim")
        series = model.loss
        pts = [(i * series.stride + 1, v) for i, v in enumerate(series.points)]
        lo = min(series.points)
        lr = model.metrics.get("lr")
        title = f"fine-tune loss  last {series.last:.4g}  min {lo:.4g}  ({series.count} reports)"
        if lr is not None:
            title += f"  lr {lr:.3g}"
        height = max(2, self.content_size.height - CHART_EXTRA_LINES) if self.content_size.height else 4
        return LineChart({"loss": pts}, height=height, title=title, x_label="report")
