"""The schedule editor's actions on the campaign screen: edit a cell, add, remove, derive, save, revert.

A mixin of CampaignScreen (tierctl/tui/screens/campaign.py), which owns the draft (`self.draft`), the
campaign and the status reload; these methods only turn keys into draft edits and say what happened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tierctl.errors import TierctlError
from tierctl.tui.schedule_draft import MEANING, format_cell
from tierctl.tui.screens.choice import removal_question
from tierctl.tui.screens.prompt import PromptScreen
from tierctl.tui.widgets.schedule_editor import ScheduleEditor

if TYPE_CHECKING:
    from textual.screen import Screen

    from tierctl.campaign.layout import CampaignLayout
    from tierctl.tui.schedule_draft import ScheduleDraft

    _Base = Screen[None]
else:
    _Base = object


class ScheduleActions(_Base):
    """Key actions on the schedule draft (needs `draft`, `campaign`, `schedule_visible`, `load_status`,
    `load_schedule` from the screen it is mixed into)."""

    draft: ScheduleDraft | None
    campaign: CampaignLayout

    @property
    def editor(self) -> ScheduleEditor:
        return self.query_one(ScheduleEditor)

    def _say(self, note: str) -> None:
        self.editor.note = note
        self.editor.update_message()

    def on_schedule_editor_edit_requested(self, message: ScheduleEditor.EditRequested) -> None:
        self.edit(message.iteration, message.column)

    def action_edit_cell(self) -> None:
        where = self.editor.cursor_cell()
        if where is not None:
            self.edit(*where)

    def edit(self, iteration: int, column: str) -> None:
        draft = self.draft
        if draft is None:
            return
        if column not in MEANING or column == "iteration":
            self._say(f"{column}: not editable (it follows from the other columns)"
                      if column != "iteration" else "iteration numbers follow the row order")
            return
        lock = draft.lock_reason(iteration, column)
        if lock is not None:
            self._say("")
            self.notify(lock, title="read-only row", severity="warning")
            return
        row = draft.rows[[r.iteration for r in draft.rows].index(iteration)]

        def apply(value: str | None) -> None:
            if value is not None:
                draft.edit(iteration, column, value)
                self._say(f"iteration {iteration} {column} = {value.strip()}")
                self.editor.redraw()

        self.app.push_screen(
            PromptScreen(f"iteration {iteration} · {column}", format_cell(column, getattr(row, column)),
                         MEANING[column], check=lambda text: draft.refusal(iteration, column, text)),
            apply,
        )

    def action_add_row(self) -> None:
        if self.draft is not None:
            row = self.draft.add_row()
            self.editor.redraw()
            self.editor.table.move_cursor(row=len(self.draft.rows) - 1, column=1)
            self._say(f"added iteration {row.iteration} (moves nothing yet: edit dense / 2:4 / top-k)")

    def action_remove_row(self) -> None:
        where = self.editor.cursor_cell()
        if self.draft is None or where is None:
            return
        if not self.schedule_visible:  # act only on what the user sees selected
            self.notify("x removes the selected iteration of the schedule: show it first (1)",
                        severity="warning")
            return
        draft, iteration = self.draft, where[0]
        reason = draft.removal_refusal(iteration)
        if reason:  # refused outright: nothing to ask
            self.notify(reason, title="not removed", severity="warning")
            return

        def answer(value: str | None) -> None:
            if value != "remove":
                self._say(f"kept iteration {iteration}")
                return
            refused = draft.remove_row(iteration)
            if refused:
                self.notify(refused, title="not removed", severity="warning")
                return
            self.editor.redraw()
            self._say(f"removed iteration {iteration}")

        row = draft.rows[[r.iteration for r in draft.rows].index(iteration)]
        self.app.push_screen(removal_question(row, renumbered=len(draft.rows) - iteration), answer)

    def action_derive(self) -> None:
        if self.draft is not None:
            n = self.draft.derive_transitions()
            self.editor.redraw()
            self._say(f"transition columns filled in on {n} row{'s' if n != 1 else ''}")

    def action_save(self) -> None:
        self.save_draft()

    def save_draft(self) -> bool:
        """Save the schedule; False (and the reason shown) when it was refused."""
        if self.draft is None:
            return False
        try:
            self.draft.save()
        except TierctlError as e:
            self.notify(str(e), title="schedule not saved", severity="error", timeout=8)
            self._say("")
            return False
        self._say(f"saved {self.campaign.schedule}")
        self.notify(f"saved {self.campaign.schedule}", timeout=3)
        self.load_status()
        return True

    def action_revert(self) -> None:
        self.load_schedule()
        self._say("reloaded schedule.csv")
