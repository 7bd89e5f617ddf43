"""The tail of the followed iteration's `log` events (and what a failed step left in its log file)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from tierctl.core.live_model import LiveModel, LogLine
from tierctl.render.styles import ERROR, WARNING

LEVEL_STYLES = {"debug": "dim", "info": "", "warning": WARNING, "warn": WARNING, "error": f"bold {ERROR}"}


def log_text(line: LogLine) -> Text:
    """`prune  pruned layer 3 (…)`: the step in a fixed-width column, the message styled by level."""
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(f"{line.step:<8} ", style="dim")
    out.append(line.msg, style=LEVEL_STYLES.get(line.level, ""))
    return out


class LogTail(RichLog):
    """Appends only the lines it has not shown yet; starts over when the model is a new one."""

    def __init__(self, *, max_lines: int = 500, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, wrap=False, markup=False, highlight=False, id=id)
        self._model_id: int | None = None
        self._shown = 0  # model.log_count when last drawn

    def show(self, model: LiveModel) -> None:
        if id(model) != self._model_id:
            self.clear()
            self._model_id, self._shown = id(model), 0
        new = model.log_count - self._shown
        if new <= 0:
            return
        lines = list(model.log)[-min(new, len(model.log)) :]
        for line in lines:
            self.write(log_text(line))
        self._shown = model.log_count

    def note(self, msg: str, level: str = "info") -> None:
        """A line from the dashboard itself (a launch refused, a cancel sent)."""
        self.write(log_text(LogLine("tierctl", level, msg)))
