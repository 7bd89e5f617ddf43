"""Run and cancel, for the campaign screen: `RunActions`, the object behind its keys r, i, a, c.

The screen holds the run's state (`launched`, `run_note`, the lock holder's pid `_pid`, the live
panels); this object decides and acts on it, so the screen's run keys are one line each.

A launch is refused here, with the reason, when it cannot do what the user means: unsaved schedule
edits (the run reads schedule.csv, not the table), or a run already active. Everything else (an
iteration whose predecessor is incomplete, a bad campaign.toml) is the runner's to refuse: its
one-line reason comes back from its log when it exits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tierctl.campaign import jobs
from tierctl.campaign.cancel import cancel as cancel_campaign
from tierctl.campaign.resume import resume_point
from tierctl.core.vocab import DONE, STEPS
from tierctl.errors import TierctlError
from tierctl.tui.screens.choice import Choice, ChoiceScreen
from tierctl.tui.screens.prompt import PromptScreen
from tierctl.tui.widgets.log_tail import LogTail

if TYPE_CHECKING:
    from tierctl.tui.screens.campaign import CampaignScreen


def next_incomplete(status: Any) -> int | None:
    """The first iteration with a step that is not done (what `r` runs)."""
    for it in getattr(status, "iterations", []):
        if any(it.steps.get(s) != DONE for s in STEPS):
            return it.iteration
    return None


class RunActions:
    """What the campaign screen's run keys do (r, i, a, c), acting on that screen."""

    def __init__(self, screen: CampaignScreen) -> None:
        self.screen = screen

    def launch(self, iteration: int | None = None, all_iterations: bool = False) -> bool:
        """Start a detached run; False (and the reason shown) when it is refused."""
        screen = self.screen
        if screen.draft is not None and screen.draft.dirty:
            screen.notify("the run reads schedule.csv: save your edits first (ctrl+s) or reload (ctrl+r)",
                          title="unsaved schedule", severity="warning", timeout=6)
            return False
        if screen._pid is not None or screen.launched is not None:
            active = screen._pid or (screen.launched.process.pid if screen.launched is not None else None)
            screen.notify(f"a run is already active (pid {active})", severity="warning")
            return False
        try:
            screen.launched = jobs.launch(screen.campaign, iteration, all_iterations)
        except OSError as e:
            screen.notify(str(e), title="could not start the run", severity="error")
            return False
        what = "every incomplete iteration" if all_iterations else f"iteration {iteration}"
        screen.run_note = f"started: {what}"
        screen.query_one(LogTail).note(f"started tierctl run ({what}), pid {screen.launched.process.pid}")
        if screen.has_class("-narrow"):
            screen.action_view("live")
        screen._draw_live(force=True)
        return True

    def run_next(self) -> None:
        """r: the next incomplete iteration."""
        screen = self.screen
        n = next_incomplete(screen.status)
        if n is None:
            if screen.status is None:
                screen.notify("reading the campaign's state; try again in a moment", severity="warning")
            else:
                screen.notify("every iteration is complete: add one (n) to go on", title="nothing to run")
            return
        self.launch(n)

    def run_all(self) -> None:
        """a: every incomplete iteration."""
        screen = self.screen
        if screen.status is not None and next_incomplete(screen.status) is None:
            screen.notify("every iteration is complete: add one (n) to go on", title="nothing to run")
            return
        self.launch(all_iterations=True)

    def run_iteration(self) -> None:
        """i: an iteration asked for."""
        screen = self.screen
        rows = len(screen.draft.rows) if screen.draft is not None else 0
        cursor = screen.editor.cursor_cell()
        incomplete = next_incomplete(screen.status)
        # The cursor's iteration when it still has work, else the next one that has (never a complete one).
        cursor_open = cursor is not None and cursor[0] >= (incomplete or 1)
        default = cursor[0] if cursor_open and cursor is not None else (incomplete or 1)

        def check(text: str) -> str | None:
            try:
                n = int(text.strip())
            except ValueError:
                return f"{text.strip()!r} is not an iteration number"
            if not 1 <= n <= rows:
                return f"the schedule has iterations 1..{rows}"
            return None

        def go(text: str | None) -> None:
            if text is not None:
                self.launch(int(text.strip()))

        screen.app.push_screen(PromptScreen("run iteration", str(default),
                                            "its prune, fine-tune and eval steps; done steps are skipped",
                                            check=check), go)

    def cancel(self) -> None:
        """c: stop the running step, once confirmed."""
        screen = self.screen
        if screen._pid is None:
            screen.notify("no run is active", severity="warning")
            return
        pid = screen._pid

        def answer(value: str | None) -> None:
            if value == "cancel":
                self.cancel_now()

        n, step = screen.model.iteration, screen.model.running_step
        where = (f" run it again: iteration {n}: {resume_point(screen.campaign, n, step)}." if n and step else
                 " run it again to go on with it.")
        screen.app.push_screen(ChoiceScreen(
            "cancel the run?",
            f"The running step of {screen.campaign.name} (pid {pid}) is stopped. Its iteration stays resumable:"
            + where,
            [Choice("y", "Cancel the run", "cancel", "error"), Choice("n", "Keep it running", "keep")],
            escape_value="keep"), answer)

    def cancel_now(self) -> None:
        """SIGTERM the run now (the runner stops the step's process group)."""
        screen = self.screen
        try:
            done = cancel_campaign(screen.campaign)
        except TierctlError as e:
            screen.notify(str(e), title="not cancelled", severity="error")
            return
        screen.run_note = f"SIGTERM sent to pid {done.holder.pid}" if done.holder is not None else "no run is active"
        screen.query_one(LogTail).note(f"cancel: {done.message}", "warning")
        screen._draw_live(force=True)
