"""The live panels of `tierctl run` in a terminal (Rich Live), fed by the runner's events.

Events only update a headless model (tierctl.live_model.LiveModel, the same one the dashboard
uses); Rich's own refresh thread redraws at `REFRESH_HZ`, so a fine-tune that reports its loss every
step costs one cheap dict update per event, never a redraw per event. The model and the status
table are guarded by one lock, because the refresh thread reads what the runner thread writes.

Panels: the running step with its progress bar; the tier composition of each decoder layer as the
prune reaches it (one stacked bar dense / 2:4 / top-k per matrix); the fine-tune loss as a sparkline;
the iterations so far (composition, sparsity, ppl before / after fine-tune), re-read from the files
whenever a step ends; the last log lines.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tierctl.campaign.holder import Holder
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.runner import StepResult
from tierctl.campaign.state import CampaignStatus, campaign_status
from tierctl.core.events import STEPS, Event
from tierctl.live_model import LiveModel
from tierctl.render import composition_legend, iterations_table, layer_composition_table, sparkline, step_state

REFRESH_HZ = 4
LOG_LINES = 4


def _duration(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def step_line(model: LiveModel, width: int, now: float | None = None) -> RenderableType:
    """`▶ finetune  [=====     ] 120/400 steps  0:42`, the state of the other steps, and under them the
    running step's progress in words: what it measures, elapsed and time left."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column(no_wrap=True)
    running = model.running_step or model.current
    for step in STEPS:
        view = model.steps[step]
        bar: RenderableType = Text("")
        count = ""
        if view.status == "running" or step == running:
            frac = view.fraction
            bar = ProgressBar(total=1.0, completed=frac or 0.0, width=max(10, width // 3),
                              pulse=frac is None and view.status == "running")
            count = view.count_text(step)
        elapsed = ""
        if view.started is not None:
            end = view.ended if view.ended is not None else (now or time.time())
            elapsed = _duration(end - view.started)
        label = step_state(view.status)
        label.append(f" {step}")
        grid.add_row(label, bar, count, Text(elapsed, style="dim"))
        if view.error:
            grid.add_row(Text(""), Text(view.error, style="red", overflow="fold"), "", "")
    words = model.steps[running].progress_text(now or time.time()) if running is not None else ""
    return Group(grid, Text(words, style="dim", overflow="fold")) if words else grid


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


def with_live_steps(status: CampaignStatus, model: LiveModel) -> CampaignStatus:
    """The status with the followed iteration's unfinished steps as the events tell (running, failed).

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
    steps = {s: it.steps[s] if it.steps[s] == "done" or live[s] == "pending" else live[s] for s in STEPS}
    its[model.iteration - 1] = dataclasses.replace(it, steps=steps)
    return dataclasses.replace(status, iterations=its)


class LiveView:
    """Feeds the live panels: pass `on_event` / `on_step` to the runner and use it as a context manager."""

    def __init__(self, layout: CampaignLayout, console: Console, status: CampaignStatus | None = None) -> None:
        self.layout = layout
        self.console = console
        self.model = LiveModel()
        self._lock = threading.Lock()
        self.status = status
        if status is None:
            self.refresh_status()
        self._live: Live | None = None
        self.renders = 0  # how often the panels were drawn (coalescing: far fewer than events)
        self.waiting: str | None = None  # `run --wait`: who holds the campaign, until our first step starts
        self._waiting_on: tuple[int | None, str | None] | None = None  # the holder's (iteration, step)

    # ---- fed by the runner (its thread) ----

    def on_event(self, event: Event, line: str) -> None:
        with self._lock:
            if self.model.iteration is not None and event.iter != self.model.iteration:
                self.model = LiveModel(event.iter)
            self.model.apply([event])

    def on_step(self, iteration: int, step: str, result: StepResult | None) -> None:
        """At the end of each step the files changed: re-read the iterations table."""
        if result is not None:
            self.refresh_status()
        elif self.waiting is not None:  # our first step: the wait is over, and the holder changed the files
            self.waiting = None
            self.refresh_status()

    def on_wait(self, holder: Holder) -> None:
        """`run --wait`, at every look at the campaign's holder: say who it is and what it does."""
        step = holder.step
        doing = (step.iteration, step.step) if step is not None else None
        if doing != self._waiting_on:
            self._waiting_on = doing
            self.refresh_status()  # the holder moved on to another step: its files changed
        with self._lock:
            self.waiting = f"waiting for {holder.describe()}"

    def refresh_status(self) -> None:
        try:
            status = campaign_status(self.layout, check=False)
        except Exception:  # noqa: BLE001  (a display refresh must never end the run)
            return
        with self._lock:
            self.status = status

    # ---- drawn by Rich's refresh thread ----

    def render(self) -> RenderableType:
        with self._lock:
            self.renders += 1
            return self._render()

    def _render(self) -> RenderableType:
        width = self.console.size.width
        height = self.console.size.height
        m = self.model
        title = f"{self.layout.name}" + (f" — iteration {m.iteration}" if m.iteration is not None else "")
        parts: list[RenderableType] = [Panel(step_line(m, width), title=title, title_align="left")]
        if self.waiting is not None:
            parts.insert(0, Text(self.waiting, style="yellow"))
        halt = getattr(self.status, "halt", None)
        if halt is not None:  # the guardrail stopped the run: say why, above everything else
            parts.insert(0, Text(f"halted: {halt.reason}", style="bold yellow"))
        if m.layers:
            table_rows = len(self.status.iterations) if self.status else 0
            max_rows = max(3, height - 18 - table_rows)
            parts.append(Panel(layers_panel(m.layers, max_rows), title="tiers per layer", title_align="left"))
        if len(m.loss) or m.steps["finetune"].status == "running":
            parts.append(Panel(loss_panel(m, width - 4), title="fine-tune", title_align="left"))
        if self.status is not None:
            parts.append(Panel(iterations_table(with_live_steps(self.status, m)), title="iterations",
                               title_align="left"))
        logs = log_panel(m)
        if isinstance(logs, Text) and logs.plain:
            parts.append(logs)
        return Group(*parts)

    def __enter__(self) -> LiveView:
        self._live = Live(console=self.console, get_renderable=self.render, refresh_per_second=REFRESH_HZ,
                          transient=False, redirect_stdout=False, redirect_stderr=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
            self._live = None
