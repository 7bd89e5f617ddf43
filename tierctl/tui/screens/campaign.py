"""One campaign: the schedule table, run controls, live panels and results.

Wide terminals show everything at once (schedule and results on the left, the live run on the
right); narrow ones show one of the three views at a time (tabs, or keys 1 2 3).

Live panels are fed by an EventPump (tierctl.campaign.follow): a reader thread tails the newest
iteration's events.jsonl into it, and a timer on the UI thread drains it into the live model and
redraws the panels once. However fast a step writes events, the panels are redrawn at most once
per tick, and parsing never runs on the UI thread.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast

from rich.console import Group
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static, Tab, Tabs
from textual.worker import get_current_worker

from tierctl.campaign import jobs
from tierctl.campaign.config import load_config
from tierctl.campaign.follow import EventPump, RunWatch
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.schedule import load_schedule
from tierctl.errors import TierctlError
from tierctl.render import iterations_table
from tierctl.render.outcome import Outcome, iteration_outcome, reference_line
from tierctl.render.styles import ACTIVE, ERROR, WARNING
from tierctl.tui.run_actions import RunActions
from tierctl.tui.schedule_draft import ScheduleDraft, row_locks
from tierctl.tui.screens.choice import ChoiceScreen, unsaved_choices
from tierctl.tui.screens.schedule_actions import ScheduleActions
from tierctl.tui.widgets.composition_panel import CompositionPanel
from tierctl.tui.widgets.log_tail import LogTail
from tierctl.tui.widgets.loss_chart import LossChart
from tierctl.tui.widgets.ppl_chart import PplChart
from tierctl.tui.widgets.run_controls import RunPanel, RunState, next_step
from tierctl.tui.widgets.schedule_editor import ScheduleEditor

if TYPE_CHECKING:
    from tierctl.tui.app import TierctlApp

VIEWS = ("schedule", "live", "results")
WIDE = 140  # columns from which every view shows at once (before the breakpoint classes are set, too)


def outcomes(status: Any) -> dict[int, Outcome]:
    """iteration -> what it came to (ppl, sparsity reached, state), beside its schedule row."""
    return {it.iteration: iteration_outcome(it) for it in getattr(status, "iterations", [])}


class CampaignScreen(ScheduleActions, Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE, "-wide")]
    AUTO_FOCUS = None  # focus follows the visible view (action_view), never the first focusable widget
    BINDINGS = [
        Binding("r", "run_next", "Run next"),
        Binding("a", "run_all", "Run all"),
        Binding("i", "run_iteration", "Run…", show=False),
        Binding("c", "cancel_run", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+r", "revert", "Reload", show=False),
        Binding("e", "edit_cell", "Edit", show=False),
        Binding("n", "add_row", "Add iter", show=False),
        Binding("x,delete", "remove_row", "Remove iter", show=False),
        Binding("f", "derive", "Fill transitions", show=False),
        Binding("t", "tier_maps", "Tier maps"),
        Binding("1", "view('schedule')", "Schedule", show=False),
        Binding("2", "view('live')", "Live", show=False),
        Binding("3", "view('results')", "Results", show=False),
        Binding("escape", "back", "Campaigns", show=False),
    ]

    def __init__(self, layout: CampaignLayout, poll_interval: float = 0.2) -> None:
        # A run under way is what the user opened the campaign for: open on Live then.
        self.opening_view = "live" if jobs.active_holder(layout) is not None else "schedule"
        super().__init__(classes=f"view-{self.opening_view}")
        self.campaign = layout
        self.poll_interval = poll_interval
        self.pump = EventPump(RunWatch(layout))
        self.runs = RunActions(self)
        self.status: Any = None
        self.contradiction = ""  # schedule.csv disagrees with iterations that ran (hand-edited)
        self.draft: ScheduleDraft | None = None
        self.launched: jobs.Launched | None = None
        self.run_note = ""
        self.live_refreshes = 0  # redraws of the live panels (coalescing: far fewer than events)
        self.status_loads = 0
        self._stop = threading.Event()
        self._pid: int | None = None
        self._orphaned = False  # the holder is a step whose runner died
        self._phase = -1
        self._drawn_version = -1
        try:
            self.config = load_config(layout.config)
            self.config_problem = ""
        except TierctlError as e:
            self.config, self.config_problem = None, str(e)

    @property
    def tierctl_app(self) -> TierctlApp:
        """The app, which owns going from screen to screen."""
        return cast("TierctlApp", self.app)

    @property
    def model(self) -> Any:
        """The live model of the followed iteration (the pump's: replaced when a newer one starts)."""
        return self.pump.model

    # ---- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="campaign-title")
        yield Tabs(Tab("1 Schedule", id="tab-schedule"), Tab("2 Live", id="tab-live"),
                   Tab("3 Results", id="tab-results"), id="views", active=f"tab-{self.opening_view}")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                with Vertical(id="schedule-section", classes="section") as s:
                    s.border_title = "schedule"
                    yield ScheduleEditor(id="schedule")
                with Vertical(id="results-section", classes="section") as s:
                    s.border_title = "results"
                    yield Static(id="iterations")
                    yield PplChart(id="ppl")
            with Vertical(id="live-section", classes="section") as s:
                s.border_title = "live"
                yield RunPanel(id="run")
                yield CompositionPanel(id="composition")
                yield LossChart(id="loss")
                yield LogTail(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self._focus_visible()
        self.call_after_refresh(self._focus_visible)  # again once the breakpoint class is set
        self.load_schedule()
        self.load_status()
        self._tick()
        self.set_interval(self.poll_interval, self._tick)
        self.set_interval(10.0, self.load_status)  # files can change under us (a run from a shell)
        self._read_events()

    def on_unmount(self) -> None:
        self._stop.set()

    # ---- data in --------------------------------------------------------------------------------

    @work(thread=True, group="events", exclusive=True)
    def _read_events(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled and not self._stop.is_set():
            self.pump.read()
            self._stop.wait(self.poll_interval)

    @work(thread=True, group="status", exclusive=True)
    def load_status(self) -> None:
        from tierctl.campaign.state import campaign_status, check_history, load_campaign_schedule

        try:
            schedule = load_campaign_schedule(self.campaign)
            status = campaign_status(self.campaign, schedule, check=False)
        except TierctlError as e:
            self.app.call_from_thread(self._status_failed, str(e))
            return
        try:
            check_history(self.campaign, schedule, status)
            contradiction = ""
        except TierctlError as e:  # a hand edit of schedule.csv: `tierctl run` will refuse until fixed
            contradiction = str(e)
        self.app.call_from_thread(self._got_status, status, contradiction)

    def _got_status(self, status: Any, contradiction: str = "") -> None:
        self.status = status
        self.contradiction = contradiction
        self.status_loads += 1
        if self.draft is not None:
            self.draft.locked = row_locks(status)
        self.query_one(ScheduleEditor).load(self.draft, outcomes(status), self._schedule_problem)
        self._draw_schedule_title()
        table = iterations_table(status)
        self.query_one("#iterations", Static).update(
            Group(table, Text(contradiction, style=f"bold {ERROR}")) if contradiction else table)
        self.query_one(PplChart).show(status)
        self._draw_title()
        self._draw_live(force=True)

    def _draw_schedule_title(self) -> None:
        """The schedule's border names the reference ppl, the number every iteration's ppl is judged by."""
        ref = reference_line(self.status)
        section = self.query_one("#schedule-section")
        section.border_title = "schedule" + (f" · {ref.plain}" if ref is not None else "")

    def _status_failed(self, message: str) -> None:
        self.status = None
        self.query_one("#iterations", Static).update(Text(message, style=ERROR))

    def load_schedule(self) -> None:
        """(Re)read schedule.csv into a fresh draft; a broken file is shown, not raised."""
        self._schedule_problem: str | None = None
        try:
            schedule = load_schedule(self.campaign.schedule)
            b = self.config.tiers.block_size if self.config else 16
            k = self.config.tiers.topk_per_block if self.config else 10
            self.draft = ScheduleDraft(schedule, self.campaign.schedule, row_locks(self.status), b, k)
        except TierctlError as e:
            self.draft = None
            self._schedule_problem = f"{e}  (fix the file, then ctrl+r reloads it)"
        self.query_one(ScheduleEditor).load(self.draft, outcomes(self.status), self._schedule_problem)

    # ---- the tick: drain events, redraw once ----------------------------------------------------

    def _tick(self) -> None:
        self.pump.drain()
        holder = jobs.active_holder(self.campaign)
        pid = holder.pid if holder is not None else None
        self._orphaned = holder is not None and holder.orphaned
        launched_note = self._check_launched(pid)
        if pid != self._pid or self.model.phase_version != self._phase:
            self._pid, self._phase = pid, self.model.phase_version
            self.load_status()
        if launched_note:
            self.run_note = launched_note
        self._draw_live()

    def _check_launched(self, pid: int | None) -> str:
        """Forget our launched process once it exits; say why when it ended badly."""
        if self.launched is None:
            return ""
        code = self.launched.exit_code()
        if code is None:
            return ""
        launched, self.launched = self.launched, None
        if code == 0:
            return "run finished"
        reason = launched.error_line() or f"tierctl run exited with code {code}"
        if code in (130, 143):  # stopped by a signal (a cancel): resumable, not an error
            self.notify(reason, title="run stopped", timeout=6)
            return "run stopped"
        if code == 3:  # the guardrail halted the campaign: a decision to make, not a crash
            self.query_one(LogTail).note(reason, "warning")
            self.notify(reason, title="campaign halted", severity="warning", timeout=10)
            return "campaign halted"
        self.query_one(LogTail).note(reason, "error")
        self.notify(reason, title=f"run ended (exit {code})", severity="error", timeout=8)
        return f"run ended with exit code {code}"

    def _run_state(self) -> RunState:
        starting = self.launched is not None and self._pid is None
        return RunState(active_pid=self._pid, starting=starting, note=self.run_note, orphaned=self._orphaned)

    def _draw_live(self, force: bool = False) -> None:
        key = (self.model.version, id(self.model), self._pid, self._orphaned, self.launched is None, self.run_note)
        if not force and key == self._drawn_version:
            return
        self._drawn_version = key
        self.live_refreshes += 1
        run = self._run_state()
        self.query_one(RunPanel).show(self.model, run)
        stored = self._stored_layers()
        self.query_one(CompositionPanel).show(self.model, stored, self._allocation_of(stored))
        self.query_one(LossChart).show(self.model)
        self.query_one(LogTail).show(self.model)
        self._draw_title()

    def _stored_layers(self) -> tuple[int, Any] | None:
        for it in reversed(getattr(self.status, "iterations", [])):
            if getattr(it, "per_layer", None):
                return it.iteration, it.per_layer
        return None

    def _allocation_of(self, stored: tuple[int, Any] | None) -> Any:
        """metrics.json `allocation` of the stored iteration (the composition panel's OWL column)."""
        for it in getattr(self.status, "iterations", []):
            if stored is not None and it.iteration == stored[0] and it.metrics is not None:
                return it.metrics.allocation
        return None

    def _draw_title(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {self.campaign.name} ", style="bold reverse")
        if self.config is not None:
            c = self.config
            t.append(f"  {c.model.name}  b={c.tiers.block_size} k={c.tiers.topk_per_block}", style="")
        else:
            t.append(f"  {self.config_problem}", style=ERROR)
        if self.draft is not None:
            t.append(f"  {len(self.draft.rows)} iterations", style="dim")
        if self._pid is not None:
            step = self.model.running_step
            following = next_step(self.model)
            it = self.model.iteration
            doing = (f"iteration {it} {step}" if step else f"iteration {it} (starting {following})" if following
                     else f"(iteration {it} done)" if it is not None else "(starting)")
            t.append(f"  ● running {doing}", style=f"bold {ACTIVE}")
        elif getattr(self.status, "halt", None) is not None:
            t.append(f"  ■ halted: {self.status.halt.reason}", style=f"bold {WARNING}")
        self.query_one("#campaign-title", Static).update(t)

    # ---- run actions (tierctl.tui.run_actions) ----------------------------------------------------

    def action_run_next(self) -> None:
        self.runs.run_next()

    def action_run_all(self) -> None:
        self.runs.run_all()

    def action_run_iteration(self) -> None:
        self.runs.run_iteration()

    def action_cancel_run(self) -> None:
        self.runs.cancel()

    # ---- navigation -----------------------------------------------------------------------------

    def action_view(self, view: str) -> None:
        for v in VIEWS:
            self.set_class(v == view, f"view-{v}")
        self.query_one(Tabs).active = f"tab-{view}"
        # Focus follows what is visible: the schedule's keys (arrows, enter, x) reach it again when it
        # shows, and never act on it while it is hidden.
        self._focus_visible()
        self.call_after_refresh(self._focus_visible)  # again once the layout (and its breakpoint) is settled

    def _focus_visible(self) -> None:
        if self.schedule_visible:
            self.editor.table.focus()
        elif self.editor.table.has_focus:
            self.set_focus(None)

    @property
    def schedule_visible(self) -> bool:
        """The schedule table is on screen: always on wide terminals, in the schedule view on narrow ones."""
        wide = self.has_class("-wide") or (not self.has_class("-narrow") and self.app.size.width >= WIDE)
        return wide or self.has_class("view-schedule")

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        view = str(event.tab.id).removeprefix("tab-")
        if view in VIEWS and not self.has_class(f"view-{view}"):
            self.action_view(view)

    def action_tier_maps(self) -> None:
        self.tierctl_app.open_tier_maps(self.campaign)

    def action_back(self) -> None:
        """Back to the campaign list; unsaved schedule edits are asked about first."""
        if self.draft is not None and self.draft.dirty:

            def answer(value: str | None) -> None:
                if (value == "save" and self.save_draft()) or value == "discard":
                    self.action_revert()
                    self._leave()

            self.app.push_screen(ChoiceScreen(
                "unsaved schedule edits", "The schedule has edits that are not in schedule.csv.",
                unsaved_choices(), escape_value="stay"), answer)
            return
        self._leave()

    def _leave(self) -> None:
        self.tierctl_app.show_campaigns()
