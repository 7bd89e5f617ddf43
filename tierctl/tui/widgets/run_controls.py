"""The run panel: which iteration and step is running, its progress, and buttons for the mouse."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from tierctl.core.live_model import LiveModel
from tierctl.core.vocab import DONE, FAILED, INTERRUPTED, PENDING, RUNNING, STEPS
from tierctl.render.styles import ACTIVE, ERROR, OK, WARNING

STEP_MARKS = {PENDING: ("·", "dim"), RUNNING: ("●", f"bold {ACTIVE}"), DONE: ("✓", OK),
              FAILED: ("✗", f"bold {ERROR}")}


@dataclass(frozen=True)
class RunState:
    """What the campaign lock and this dashboard's own launch say, next to what the events say."""

    active_pid: int | None = None  # the process holding the campaign lock
    starting: bool = False  # launched from here, lock not taken yet
    note: str = ""  # one line to show (a refused launch, a cancel sent)
    orphaned: bool = False  # the holder is a step whose runner died: it goes on alone until it ends


def steps_line(model: LiveModel, active: bool) -> Text:
    """`iteration 2  prune ✓  finetune ● 120/400 steps  eval ·`; an unended step of a run that is
    no longer active reads `interrupted` (it resumes on the next run)."""
    out = Text(no_wrap=True, overflow="ellipsis")
    if model.iteration is None:
        return out.append("no iteration has run yet", style="dim")
    out.append(f"iteration {model.iteration}", style="bold")
    for s in STEPS:
        view = model.steps[s]
        status = view.status
        if (status == RUNNING and not active) or status == INTERRUPTED:
            out.append(f"  {s} ", style="")
            out.append("interrupted", style=WARNING)
            continue
        mark, style = STEP_MARKS[status]
        out.append(f"  {s} ", style="" if status != PENDING else "dim")
        out.append(mark, style=style)
    return out


def next_step(model: LiveModel) -> str | None:
    """The step a run goes on with after the last one that ended (None before any event, or at the end)."""
    if model.iteration is None or not any(model.steps[s].status != PENDING for s in STEPS):
        return None
    return next((s for s in STEPS if model.steps[s].status != DONE), None)


def progress_renderable(model: LiveModel, run: RunState, now: float | None = None) -> Group:
    """The progress bar of the step being run, or what the panel knows instead."""
    active = run.active_pid is not None
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(no_wrap=True, min_width=max(map(len, STEPS)))  # a step name is never cut: the bar shrinks
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True, justify="right")
    step = model.running_step if active else None
    if step is not None:
        view = model.steps[step]
        frac = view.fraction
        count = view.count_text(step) or "starting"
        pct = f"{100 * frac:5.1f}%" if frac is not None else ""
        grid.add_row(Text(step, style="bold"), ProgressBar(total=1.0, completed=frac or 0.0),
                     Text(f"{count} {pct}".strip()))
        words = view.progress_text(time.time() if now is None else now)
        if words:  # what it measures (ppl_pruned after the layers), elapsed and time left
            grid.add_row(Text(""), Text(words, style="dim", overflow="ellipsis", no_wrap=True), Text(""))
    else:
        failed = model.failed_step
        if run.starting:
            msg = Text("starting the run…", style=ACTIVE)
        elif active and next_step(model) is not None:
            msg = Text(f"starting the {next_step(model)} step of iteration {model.iteration}…", style=ACTIVE)
        elif active and model.iteration is not None and all(v.status == DONE for v in model.steps.values()):
            msg = Text(f"iteration {model.iteration} is done; waiting for the run to go on or end", style=ACTIVE)
        elif active:
            msg = Text(f"a run holds the campaign lock (pid {run.active_pid}); waiting for its events",
                       style=ACTIVE)
        elif failed is not None and model.steps[failed].status == INTERRUPTED:
            msg = Text(f"{failed} was interrupted: run the iteration again to resume", style=WARNING)
        elif failed is not None:
            msg = Text(f"{failed} failed: {model.steps[failed].error}", style=ERROR)
        elif model.running_step is not None:
            msg = Text(f"{model.running_step} was interrupted: run the iteration again to resume",
                       style=WARNING)
        else:
            msg = Text("idle", style="dim")
        grid.add_row(msg)
    state = Text(no_wrap=True, overflow="ellipsis")
    if active:
        word = "running (orphaned: its runner died)" if run.orphaned else "running"
        state.append(word, style=f"bold {ACTIVE}").append(f" pid {run.active_pid}", style="dim")
    elif run.starting:
        state.append("starting", style=ACTIVE)
    else:
        state.append("no run active", style="dim")
    if run.note:
        state.append("  " + run.note, style="italic")
    return Group(steps_line(model, active or run.starting), grid, state)


class RunPanel(Vertical):
    """Progress of the followed iteration, and run / cancel buttons that fire the screen's actions."""

    def compose(self) -> ComposeResult:
        yield Static(id="run-status")
        with Horizontal(id="run-buttons"):
            yield Button("Run next", id="run-next", compact=True, tooltip="run the next incomplete iteration (r)")
            yield Button("Run…", id="run-iter", compact=True, tooltip="run a chosen iteration (i)")
            yield Button("Run all", id="run-all", compact=True, tooltip="run every incomplete iteration (a)")
            yield Button("Cancel", id="run-cancel", compact=True, variant="error",
                         tooltip="stop the running step (c)")

    def show(self, model: LiveModel, run: RunState) -> None:
        self.query_one("#run-status", Static).update(progress_renderable(model, run))
        busy = run.active_pid is not None or run.starting
        for bid in ("run-next", "run-iter", "run-all"):
            self.query_one(f"#{bid}", Button).disabled = busy
        self.query_one("#run-cancel", Button).disabled = run.active_pid is None

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"run-next": "run_next", "run-iter": "run_iteration", "run-all": "run_all",
                   "run-cancel": "cancel_run"}
        if event.button.id in actions:
            event.stop()
            await self.app.run_action(actions[event.button.id], self.screen)
