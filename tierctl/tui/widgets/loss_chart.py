"""The fine-tune loss curve of the followed iteration, drawn from the live model's decimated series."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import Static

from tierctl.core.live_model import LiveModel
from tierctl.render import LineChart

CHART_EXTRA_LINES = 4  # title, x axis, x labels and legend around the plot rows


class LossChart(Static):
    """Redrawn from the model on `show`, and on resize (the plot fills the widget)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._model: LiveModel | None = None
        self._key: tuple[int, int, float | None] | None = None

    def show(self, model: LiveModel) -> None:
        key = (id(model), model.loss.count, model.metrics.get("lr"))
        if key == self._key:
            return
        self._model, self._key = model, key
        self.update(self._renderable())

    def on_resize(self) -> None:
        if self._model is not None:
            self.update(self._renderable())

    def _renderable(self) -> RenderableType:
        model = self._model
        if model is None or not model.loss.points:
            return Text("fine-tune loss: no fine-tune step in the followed iteration yet", style="dim")
        series = model.loss
        # A plot column shows one value: more points than twice the width only cost drawing time.
        step = max(1, len(series.points) // max(1, 2 * self.content_size.width))
        # x: the optimizer step of each report (events' opt_step); the report's number for older events
        pts = [(series.xs[i], series.points[i]) for i in range(0, len(series.points), step)]
        if (len(series.points) - 1) % step:
            pts.append((series.xs[-1], series.points[-1]))
        lo = min(series.points)
        lr = model.metrics.get("lr")
        title = f"fine-tune loss  last {series.last:.4g}  min {lo:.4g}  ({series.count} reports)"
        if lr is not None:
            title += f"  lr {lr:.3g}"
        height = max(2, self.content_size.height - CHART_EXTRA_LINES) if self.content_size.height else 4
        x_label = "optimizer step" if series.by_step else "report"
        return LineChart({"loss": pts}, height=height, title=title, x_label=x_label)
