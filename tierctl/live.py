"""The live display of `tierctl run` in a terminal (Rich Live), fed by the runner's events.

Events only update a headless model (tierctl.core.live_model.LiveModel, the same one the dashboard
uses), drawn by the panels of tierctl.render.live; Rich's own refresh thread redraws at `REFRESH_HZ`,
so a fine-tune that reports its loss every step costs one cheap dict update per event, never a redraw
per event. The model and the status table are guarded by one lock, because the refresh thread reads
what the runner thread writes.

Panels: the running step with its progress bar; the tier composition of each decoder layer as the
prune reaches it (one stacked bar dense / 2:4 / top-k per matrix); the fine-tune loss as a sparkline;
the iterations so far (composition, sparsity, ppl before / after fine-tune), re-read from the files
whenever a step ends; the last log lines.
"""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from tierctl.campaign.holder import Holder
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.runner import StepResult
from tierctl.campaign.state import CampaignStatus, campaign_status
from tierctl.core.events import Event
from tierctl.core.live_model import LiveModel
from tierctl.render import iterations_table
from tierctl.render.live import layers_panel, log_panel, loss_panel, step_line, with_live_steps

REFRESH_HZ = 4


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
