"""A one-line input in a modal: editing a schedule cell, choosing an iteration to run.

The value is checked on Enter; a refused value keeps the prompt open with the reason under it, so
the user fixes it there instead of losing what they typed.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


class PromptScreen(ModalScreen[str | None]):
    """Dismisses with the accepted text, or None on Escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str = "", hint: str = "",
                 check: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.title_text, self.value, self.hint = title, value, hint
        self.check = check
        self.refusals: list[str] = []  # every reason given, for whoever asks (tests, logs)

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box", classes="modal-box"):
            yield Label(self.title_text, id="prompt-title", classes="modal-title")
            if self.hint:
                yield Static(self.hint, id="prompt-hint", classes="modal-hint")
            yield Input(self.value, id="prompt-input", select_on_focus=True)
            yield Static("enter: accept   escape: cancel", id="prompt-error", classes="modal-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        reason = self.check(event.value) if self.check else None
        if reason is None:
            self.dismiss(event.value)
            return
        self.refusals.append(reason)
        error = self.query_one("#prompt-error", Static)
        error.update(f"refused: {reason}")
        error.add_class("-error")
        self.query_one("#prompt-input", Input).add_class("-invalid")
        self.app.bell()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#prompt-input", Input).remove_class("-invalid")

    def action_cancel(self) -> None:
        self.dismiss(None)
