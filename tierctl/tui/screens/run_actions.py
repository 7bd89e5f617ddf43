"""Run and cancel, for the campaign screen (a mixin: the screen holds the state these use).

A launch is refused here, with the reason, when it cannot do what the user means: unsaved schedule
edits (the run reads schedule.csv, not the table), or a run already active. Everything else (an
iteration whose predecessor is incomplete, a bad campaign.toml) is the runner's to refuse: its
one-line reason comes back from its log when it exits.
"""

from __future__ import annotations

from typing import Any

from tierctl.campaign.cancel import cancel
from tierctl.campaign.resume import resume_point
from tierctl.errors import TierctlError
from tierctl.tui import jobs
from tierctl.tui.screens.choice import Choice, ChoiceScreen
from tierctl.tui.screens.prompt import PromptScreen

STEPS_DONE = ("prune", "finetune", "eval")


def next_incomplete(status: Any) -> int | None:
    """The first iteration with a step that is not done (what `r` runs)."""
    for it in getattr(status, "iterations", []):
        if any(it.steps.get(s) != "done" for s in STEPS_DONE):
            return it.iteration
    return None


class RunActions:
    """Actions bound on the campaign screen: r, i, a, c."""

    def launch(self: Any, iteration: int | None = None, all_iterations: bool = False) -> bool:
        if self.draft is not None and self.draft.dirty:
            self.notify("the run reads schedule.csv: save your edits first (ctrl+s) or reload (ctrl+r)",
                        title="unsaved schedule", severity="warning", timeout=6)
            return False
        if self._pid is not None or self.launched is not None:
            self.notify(f"a run is already active (pid {self._pid or self.launched.process.pid})",
                        severity="warning")
            return False
        try:
            self.launched = jobs.launch(self.campaign, iteration, all_iterations)
        except OSError as e:
            self.notify(str(e), title="could not start the run", severity="error")
            return False
        what = "every incomplete iteration" if all_iterations else f"iteration {iteration}"
        self.run_note = f"started: {what}"
        self.query_one("LogTail").note(f"started tierctl run ({what}), pid {self.launched.process.pid}")
        if self.has_class("-narrow"):
            self.action_view("live")
        self._draw_live(force=True)
        return True

    def action_run_next(self: Any) -> None:
        n = next_incomplete(self.status)
        if n is None:
            if self.status is None:
                self.notify("reading the campaign's state; try again in a moment", severity="warning")
            else:
                self.notify("every iteration is complete: add one (n) to go on", title="nothing to run")
            return
        self.launch(n)

    def action_run_all(self: Any) -> None:
        if self.status is not None and next_incomplete(self.status) is None:
            self.notify("every iteration is complete: add one (n) to go on", title="nothing to run")
            return
        self.launch(all_iterations=True)

    def action_run_iteration(self: Any) -> None:
        rows = len(self.draft.rows) if self.draft is not None else 0
        cursor = self.editor.cursor_cell()
        default = cursor[0] if cursor else (next_incomplete(self.status) or 1)

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

        self.app.push_screen(PromptScreen("run iteration", str(default),
                                          "its prune, fine-tune and eval steps; done steps are skipped",
                                          check=check), go)

    def action_cancel_run(self: Any) -> None:
        if self._pid is None:
            self.notify("no run is active", severity="warning")
            return
        pid = self._pid

        def answer(value: str | None) -> None:
            if value == "cancel":
                self.cancel_now()

        n, step = self.model.iteration, self.model.running_step
        where = (f" run it again: iteration {n}: {resume_point(self.campaign, n, step)}." if n and step else
                 " run it again to go on with it.")
        self.app.push_screen(ChoiceScreen(
            "cancel the run?",
            f"The running step of {self.campaign.name} (pid {pid}) is stopped. Its iteration stays resumable:"
            + where,
            [Choice("y", "Cancel the run", "cancel", "error"), Choice("n", "Keep it running", "keep")],
            escape_value="keep"), answer)

    def cancel_now(self: Any) -> None:
        try:
            done = cancel(self.campaign)
        except TierctlError as e:
            self.notify(str(e), title="not cancelled", severity="error")
            return
        self.run_note = f"SIGTERM sent to pid {done.holder.pid}" if done.holder is not None else "no run is active"
        self.query_one("LogTail").note(f"cancel: {done.message}", "warning")
        self._draw_live(force=True)
