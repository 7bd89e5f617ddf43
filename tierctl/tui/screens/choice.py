"""A question with a few answers, each on a button and a key (quitting with a run active, cancelling)."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tierctl.core.schedule import ScheduleRow, format_fraction


@dataclass(frozen=True)
class Choice:
    key: str  # the key that picks it
    label: str
    value: str
    variant: str = "default"  # Button variant: default | primary | error | warning | success


class ChoiceScreen(ModalScreen[str]):
    """Dismisses with the value of the chosen answer; Escape picks `escape_value`."""

    def __init__(self, title: str, message: str, choices: list[Choice], escape_value: str) -> None:
        super().__init__()
        self.title_text, self.message, self.choices, self.escape_value = title, message, choices, escape_value
        self._by_key = {c.key: c.value for c in choices}

    def compose(self) -> ComposeResult:
        with Vertical(id="choice-box", classes="modal-box"):
            yield Label(self.title_text, classes="modal-title")
            yield Static(self.message, id="choice-message")
            with Horizontal(id="choice-buttons"):
                for c in self.choices:
                    key = "esc" if c.key == "escape" else c.key
                    yield Button(f"{c.label} ({key})", id=f"choice-{c.value}", variant=c.variant)

    def on_key(self, event: events.Key) -> None:
        """Each answer's key picks it; Escape picks the safe answer."""
        value = self.escape_value if event.key == "escape" else self._by_key.get(event.key)
        if value is not None:
            event.stop()
            self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(str(event.button.id).removeprefix("choice-"))


def quit_choices() -> list[Choice]:
    return [Choice("k", "Keep it running", "keep", "primary"), Choice("c", "Cancel it", "cancel", "error"),
            Choice("escape", "Stay", "stay")]


def unsaved_choices() -> list[Choice]:
    return [Choice("s", "Save", "save", "primary"), Choice("d", "Discard", "discard", "error"),
            Choice("escape", "Stay", "stay")]


def removal_question(row: ScheduleRow, renumbered: int) -> ChoiceScreen:
    """Asks before `x` removes a schedule row, naming the iteration and what it planned (value "remove" or "keep")."""
    n = row.iteration
    message = (f"Iteration {n} (dense {format_fraction(row.dense)}, 2:4 {format_fraction(row.mid_2_4)}, "
               f"top-k {format_fraction(row.topk)}) leaves the schedule"
               + (f"; the {renumbered} after it are renumbered." if renumbered else ".")
               + " Nothing is saved until ctrl+s.")
    return ChoiceScreen(f"remove iteration {n}?", message,
                        [Choice("y", f"Remove iteration {n}", "remove", "error"), Choice("escape", "Keep it", "keep")],
                        escape_value="keep")
