"""The schedule table: a ScheduleDraft drawn as a DataTable, invalid cells marked, and a message line
that says what the cursor's cell means, why it is wrong, or why its row is read-only."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable, Static

from tierctl.render.outcome import Outcome
from tierctl.render.styles import ERROR, OK, WARNING
from tierctl.tui.schedule_draft import COLUMNS, MEANING, ScheduleDraft, format_cell

HEADERS = {"iteration": "iter", "dense": "dense", "mid_2_4": "2:4", "topk": "top-k", "dense_to_2_4": "d→2:4",
           "mid_2_4_to_topk": "2:4→tk", "epochs": "ep", "lr": "lr", "tokens_per_epoch": "tok/ep",
           "sparsity": "sparsity", "reached": "reached", "ppl": "ppl", "state": "state"}
OUTCOME = ("reached", "ppl", "state")  # what the iteration came to (render.outcome), beside its plan
KEYS = ("iteration", *COLUMNS, "sparsity", *OUTCOME)  # plus the draft's knob columns after epochs
OUTCOME_MEANING = {"reached": "weight sparsity the prune reached (metrics.json)",
                   "ppl": "perplexity after the prune → after the fine-tune"}
INVALID = "bold #ffffff on #b71c1c"
LOCKED = "#8a8a8a"


class ScheduleEditor(Vertical):
    """Shows a draft; the screen owns the actions (edit, add, remove, save) and calls `redraw`."""

    class EditRequested(Message):
        """Enter (or a click) on a cell: the screen opens the editor for it."""

        def __init__(self, iteration: int, column: str) -> None:
            super().__init__()
            self.iteration, self.column = iteration, column

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.draft: ScheduleDraft | None = None
        self.outcomes: dict[int, Outcome] = {}  # iteration -> what it came to (the last columns)
        self.problem: str | None = None  # the schedule could not be loaded at all
        self.note: str = ""  # the outcome of the last action (saved, refused, ...)
        self.keys: tuple[str, ...] = KEYS  # the table's columns: KEYS with the draft's knob columns

    def compose(self) -> ComposeResult:
        table: DataTable[Text] = DataTable(id="schedule-table", cursor_type="cell", zebra_stripes=True)
        for key in KEYS:
            table.add_column(HEADERS[key], key=key)
        yield table
        yield Static(id="schedule-message")

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#schedule-table", DataTable)

    def load(self, draft: ScheduleDraft | None, outcomes: dict[int, Outcome], problem: str | None = None) -> None:
        self.draft, self.outcomes, self.problem = draft, outcomes, problem
        keys = ("iteration", *COLUMNS, *(draft.knobs if draft is not None else ()), "sparsity", *OUTCOME)
        if keys != self.keys:  # a schedule with lr / tokens_per_epoch columns shows them after epochs
            self.keys = keys
            self.table.clear(columns=True)
            for key in keys:
                self.table.add_column(HEADERS[key], key=key)
        self.redraw()

    def cursor_cell(self) -> tuple[int, str] | None:
        """(iteration, column) under the cursor, or None on an empty table."""
        if self.draft is None or not self.draft.rows:
            return None
        row, col = self.table.cursor_coordinate
        row = min(row, len(self.draft.rows) - 1)
        return self.draft.rows[row].iteration, self.keys[min(col, len(self.keys) - 1)]

    def redraw(self) -> None:
        table = self.table
        cursor = table.cursor_coordinate
        table.clear()
        if self.draft is not None:
            proj = self.draft.projection()
            for r, p in zip(self.draft.rows, proj, strict=False):
                table.add_row(*self._cells(r, p), key=str(r.iteration))
        if table.row_count:
            table.move_cursor(row=min(cursor.row, table.row_count - 1), column=cursor.column, animate=False)
        self.update_message()

    def _cells(self, row, proj) -> list[Text]:  # noqa: ANN001  (ScheduleRow, projection dict | None)
        draft = self.draft
        assert draft is not None
        locked = draft.lock_reason(row.iteration) is not None
        out = [Text(str(row.iteration), style="bold" if not locked else LOCKED, justify="right")]
        for col in (*COLUMNS, *draft.knobs):
            text = Text(format_cell(col, getattr(row, col)), justify="right")
            if draft.errors_at(row.iteration, col):
                text.stylize(INVALID)
            elif draft.lock_reason(row.iteration, col) is not None:
                text.stylize(LOCKED)
            out.append(text)
        sparsity = Text(f"{100 * proj['sparsity']:.1f}%" if proj else "-", justify="right")
        if draft.errors_at(row.iteration, "iteration") or (draft.errors_at(row.iteration) and not proj):
            sparsity.stylize("dim")
        out.append(sparsity)
        outcome = self.outcomes.get(row.iteration)
        if outcome is None:
            out.extend(Text("") for _ in OUTCOME)
        else:
            out.extend((outcome.sparsity, outcome.ppl, outcome.state))
        return out

    def update_message(self) -> None:
        msg = self.query_one("#schedule-message", Static)
        if self.problem:
            msg.update(Text(self.problem, style=f"bold {ERROR}"))
            return
        draft = self.draft
        if draft is None:
            msg.update("")
            return
        out = Text()
        where = self.cursor_cell()
        cursor_errors: list[str] = []
        if where is not None:
            iteration, column = where
            editable = (*COLUMNS, *draft.knobs)
            cursor_errors = draft.errors_at(iteration, column) if column in editable else []
            lock = draft.lock_reason(iteration, column if column in editable else None)
            if cursor_errors:
                out.append(f"✗ iteration {iteration} {column}: ", style=f"bold {ERROR}")
                out.append("; ".join(cursor_errors))
            elif lock:
                out.append("read-only: ", style="bold").append(lock, style=LOCKED)
            elif column in MEANING:
                out.append(f"{column}: ", style="bold").append(MEANING[column], style="dim")
            elif column == "sparsity":
                out.append("sparsity: ", style="bold").append(
                    f"projected weight sparsity (b={draft.block_size}, k={draft.k})", style="dim")
            elif column in OUTCOME_MEANING:
                out.append(f"{column}: ", style="bold").append(OUTCOME_MEANING[column], style="dim")
            out.append("\n")
        if draft.errors:
            n = len(draft.errors)
            out.append(f"{n} problem{'s' if n > 1 else ''} marked red", style=f"bold {ERROR}")
            if not cursor_errors:
                first = draft.errors[0]
                where_ = f"iteration {first.iteration}" + (f" {first.column}" if first.column else "")
                out.append(f" ({where_}: {first.message})", style=ERROR)
            out.append(": not saved until fixed; f fills the transition columns from dense / 2:4 / top-k",
                       style="dim")
        elif draft.dirty:
            out.append("valid, not saved: ctrl+s saves schedule.csv", style=WARNING)
        else:
            out.append("schedule.csv saved and valid", style=OK)
        if self.note:
            out.append("  " + self.note, style="italic")
        msg.update(out)

    def on_data_table_cell_highlighted(self, event: DataTable.CellHighlighted) -> None:
        self.update_message()

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        where = self._at(event.coordinate)
        if where is not None:
            self.post_message(self.EditRequested(*where))

    def _at(self, coord: Coordinate) -> tuple[int, str] | None:
        if self.draft is None or coord.row >= len(self.draft.rows):
            return None
        return self.draft.rows[coord.row].iteration, self.keys[coord.column]
