"""The live run panels: the running step, the tiers per layer, the fine-tune loss, the log tail.

Renderables of a `LiveModel` (tierctl.core.live_model), the headless state of one iteration's run
built from its events, so `tierctl run` (tierctl.live) and anything else that follows a run draw
the same panels. Pure functions of their inputs: they read no file.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tierctl.core.live_model import LiveModel
from tierctl.core.vocab import DONE, PENDING, RUNNING, STEPS
from tierctl.render.bars import composition_legend, layer_composition_table
from tierctl.render.charts import sparkline
from tierctl.render.tables import step_state

LOG_LINES = 4


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def step_line(model: LiveModel, width: int, now: float | None = None) -> RenderableType:
    """`▶ finetune  [=====     ] 120/400 steps  0:42`, the state of the other steps, and under them the
    running step's progress in words: what it measures, elapsed and time left."""
    running = model.running_step or model.current
    rows = []
    for step in STEPS:
        view = model.steps[step]
        bar: RenderableType = Text("")
        count = ""
        if view.status == RUNNING or step == running:
            frac = view.fraction
            bar = ProgressBar(total=1.0, completed=frac or 0.0, pulse=frac is None and view.status == RUNNING)
            count = view.count_text(step)
        elapsed = ""
        if view.started is not None:
            end = view.ended if view.ended is not None else (now or time.time())
            elapsed = _duration(end - view.started)
        label = step_state(view.status)
        label.append(f" {step}")
        rows.append((label, bar, count, elapsed, view.error))
    # The label, count and time columns are as wide as their widest cell, so a narrow terminal never
    # cuts a step name (`✗ failed pr…`): the bar takes what is left (of `width` less a panel's 4 columns
    # of border and padding), and errors fold under the grid across the whole width.
    label_w, count_w, time_w = (max(len(r[i]) for r in rows) for i in (0, 2, 3))
    bar_w = max(6, min(width // 3, width - 4 - label_w - count_w - time_w - 3))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=label_w)
    grid.add_column(no_wrap=True, width=bar_w)
    grid.add_column(no_wrap=True, justify="right", min_width=count_w)
    grid.add_column(no_wrap=True, min_width=time_w)
    errors = []
    for label, bar, count, elapsed, error in rows:
        if isinstance(bar, ProgressBar):
            bar.width = bar_w
        grid.add_row(label, bar, count, Text(elapsed, style="dim"))
        if error:
            errors.append(Text(f"{label.plain.split()[-1]}: {error}", style="red", overflow="fold"))
    words = model.steps[running].progress_text(now or time.time()) if running is not None else ""
    return Group(grid, *errors, *([Text(words, style="dim", overflow="fold")] if words else []))


def layers_panel(layers: dict[str, dict[str, float]], max_rows: int, bar_width: int = 6) -> RenderableType:
    """The per-layer composition table, the most recently pruned `max_rows` matrices' layers only."""
    if not layers:
        return Text("waiting for the first layer…", style="dim")
    names = list(layers)
    # Each decoder layer is one row; keep the newest rows that fit.
    shown: dict[str, dict[str, float]] = {}
    rows: list[str] = []
    for name in reversed(names):
        prefix = name.rsplit(".", 2)[0]
        if prefix not in rows:
            if len(rows) == max_rows:
                break
            rows.append(prefix)
        shown[name] = layers[name]
    ordered = {n: shown[n] for n in names if n in shown}
    hidden = len({n.rsplit(".", 2)[0] for n in names}) - len(rows)
    table = layer_composition_table(ordered, bar_width=bar_width)
    parts: list[RenderableType] = [table]
    if hidden > 0:
        parts.insert(0, Text(f"… {hidden} earlier layer(s) done", style="dim"))
    parts.append(composition_legend())
    return Group(*parts)


def loss_panel(model: LiveModel, width: int) -> RenderableType:
    """Sparkline of the fine-tune loss with its latest value and learning rate."""
    points = model.loss.points
    if not points:
        return Text("no loss reported yet", style="dim")
    line = Text()
    line.append(f"loss {points[-1]:.4f}  ")
    if "lr" in model.metrics:
        line.append(f"lr {model.metrics['lr']:.2e}  ", style="dim")
    line.append(f"min {min(points):.4f}", style="dim")
    return Group(line, sparkline(points, width=max(10, width - 4)))


def log_panel(model: LiveModel, n: int = LOG_LINES) -> RenderableType:
    lines = list(model.log)[-n:]
    if not lines:
        return Text("")
    out = Text()
    for i, entry in enumerate(lines):
        style = "red" if entry.level == "error" else "yellow" if entry.level == "warning" else "dim"
        out.append(("\n" if i else "") + f"[{entry.step}] {entry.msg}", style=style)
    return out


def with_live_steps(status: Any, model: LiveModel) -> Any:
    """The status (a CampaignStatus) with the followed iteration's unfinished steps as the events tell
    (running, failed, interrupted).

    The files only change when a step ends; between, the events are the fresher source.
    """
    if model.iteration == 0:  # the reference: its one step
        ref = status.reference
        live_eval = model.steps["eval"].status
        if ref.steps["eval"] != "done" and live_eval != "pending":
            return dataclasses.replace(status, reference=dataclasses.replace(ref, steps={"eval": live_eval}))
        return status
    if model.iteration is None or not 1 <= model.iteration <= len(status.iterations):
        return status
    its = list(status.iterations)
    it = its[model.iteration - 1]
    live = {s: model.steps[s].status for s in STEPS}
    steps = {s: it.steps[s] if it.steps[s] == DONE or live[s] == PENDING else live[s] for s in STEPS}
    its[model.iteration - 1] = dataclasses.replace(it, steps=steps)
    return dataclasses.replace(status, iterations=its)
