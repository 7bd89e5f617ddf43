"""An edited, not yet saved schedule (the dashboard's schedule table), without Textual.

Two kinds of wrong input, treated differently on purpose:
- a value that can never be right in its cell (not a number, a fraction outside [0, 1], a
  fractional or negative epoch count) is refused: the edit does not happen, and the reason is given;
- a value that is fine on its own but disagrees with its row or its neighbours (a row that no longer
  sums to 1, a transition that no longer matches) is kept and marked, because fixing a schedule
  takes several edits and the intermediate states are inconsistent. `validate_rows` (docs/tiers.md, The schedule)
  marks them after every edit; saving is refused while any is left.
Rows of iterations that already ran are read-only: changing them would make the campaign's files
disagree with the schedule that produced them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierctl.core.schedule import CellError, Schedule, ScheduleRow, project, save_schedule, validate_rows
from tierctl.core.schedule_knobs import KNOBS, format_knob, parse_knob
from tierctl.core.schedule_knobs import MEANING as KNOB_MEANING
from tierctl.errors import BadInput

FRACTIONS = ("dense", "mid_2_4", "topk", "dense_to_2_4", "mid_2_4_to_topk")
COLUMNS = (*FRACTIONS, "epochs")
CUMULATIVE = ("dense", "mid_2_4", "topk")

MEANING = {
    "iteration": "the iteration number: 1..N in order",
    "dense": "fraction of blocks still DENSE after this iteration (cumulative)",
    "mid_2_4": "fraction of blocks in 2:4 (SEMI) after this iteration (cumulative)",
    "topk": "fraction of blocks in TOPK after this iteration (cumulative)",
    "dense_to_2_4": "fraction of all blocks moved DENSE -> 2:4 in this iteration",
    "mid_2_4_to_topk": "fraction of all blocks moved 2:4 -> TOPK in this iteration",
    "epochs": "fine-tune epochs after pruning (0 skips the fine-tune)",
    **KNOB_MEANING,
}


@dataclass(frozen=True)
class RowLock:
    """Why a row is read-only, and the columns of it that may still change."""

    reason: str
    open_columns: frozenset[str] = frozenset()


def row_locks(status: Any) -> dict[int, RowLock]:
    """Rows that already ran, from a CampaignStatus (the same rule `tierctl run` enforces on the file).

    A row is read-only once a step of its iteration is done or running. Its epochs stay editable
    while the prune is done and the fine-tune has not started: the fine-tune has not consumed them.
    """
    out: dict[int, RowLock] = {}
    for it in getattr(status, "iterations", []) or []:
        st = it.steps
        ran = [f"{s} {st.get(s)}" for s in ("prune", "finetune", "eval") if st.get(s) in ("done", "running")]
        if not ran:
            continue
        open_cols = frozenset({"epochs", *KNOBS}) if st.get("prune") == "done" and st.get("finetune") in (
            "pending", "failed", "interrupted") else frozenset()
        running = any(st.get(s) == "running" for s in ("prune", "finetune", "eval"))
        did = "is being run" if running else "already ran"
        reason = (f"iteration {it.iteration} {did} ({', '.join(ran)}): its files are made with this row, so "
                  "changing it would make the campaign lie. Add an iteration (n) to change what follows.")
        if open_cols:
            reason += " (Its epochs, lr and tokens_per_epoch can still change: the fine-tune has not used them yet.)"
        out[it.iteration] = RowLock(reason, open_cols)
    return out


def check_cell(column: str, text: str) -> tuple[float | int | None, str | None]:
    """(value, None) when `text` can stand in `column` at all, else (None, reason)."""
    s = text.strip()
    if column in KNOBS:  # blank (or the table's "-") = the campaign.toml value
        value, why = parse_knob(column, "" if s == "-" else s)
        return (None, f"{column}: {why}") if why else (value, None)
    if column == "epochs":
        try:
            v = float(s)
        except ValueError:
            return None, f"epochs: {s!r} is not a number"
        if not math.isfinite(v) or v != int(v) or v < 0:
            return None, f"epochs: {s!r} must be a whole number >= 0"
        return int(v), None
    if column not in FRACTIONS:
        return None, f"{column}: this column is not editable"
    try:
        v = float(s)
    except ValueError:
        return None, f"{column}: {s!r} is not a number"
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        return None, f"{column}: {s!r} must be a fraction in [0, 1]"
    return v, None


def format_cell(column: str, value: float | int | None) -> str:
    if column in KNOBS:
        return format_knob(column, value) or "-"
    if column == "epochs":
        return str(int(value))
    v = float(value)
    return f"{v:.2f}" if abs(v * 100 - round(v * 100)) < 1e-9 else f"{v:.4g}"


class ScheduleDraft:
    """Rows being edited, which of them are read-only and why, and what is wrong with them now."""

    def __init__(self, schedule: Schedule, path: Path, locked: Mapping[int, RowLock] | None = None,
                 block_size: int = 16, k: int = 10) -> None:
        self.path = Path(path)
        self.block_size, self.k = block_size, k
        self.rows: list[ScheduleRow] = [dataclasses.replace(r) for r in schedule.rows]
        self.knobs: tuple[str, ...] = schedule.knobs  # the knob columns the file sets: shown and editable
        self.locked: dict[int, RowLock] = dict(locked or {})
        self.dirty = False
        self.errors: list[CellError] = []
        self._revalidate()

    # ---- reading ------------------------------------------------------------------------------

    def lock_reason(self, iteration: int, column: str | None = None) -> str | None:
        """Why this row (or this cell of it) cannot be edited, or None."""
        lock = self.locked.get(iteration)
        if lock is None or (column is not None and column in lock.open_columns):
            return None
        return lock.reason

    def errors_at(self, iteration: int, column: str | None = None) -> list[str]:
        """Problems of a cell (or of the whole row when `column` is None). A problem of the row as a
        whole (its fractions do not sum to 1) belongs to each of its cumulative cells."""
        return [e.message for e in self.errors
                if e.iteration == iteration and (column is None or e.column == column
                                                 or (e.column is None and column in CUMULATIVE))]

    def projection(self) -> list[dict[str, float] | None]:
        """Projected composition and sparsity per row (None for a row that cannot be projected)."""
        try:
            return list(project(Schedule(self.rows), self.block_size, self.k))
        except (BadInput, ValueError, ZeroDivisionError):
            return [None] * len(self.rows)

    @property
    def valid(self) -> bool:
        return not self.errors

    # ---- editing ------------------------------------------------------------------------------

    def edit(self, iteration: int, column: str, text: str) -> str | None:
        """Apply an edit; return the reason it was refused, or None."""
        reason = self.refusal(iteration, column, text)
        if reason is not None:
            return reason
        value, _ = check_cell(column, text)
        i = self._index(iteration)
        self.rows[i] = dataclasses.replace(self.rows[i], **{column: value})
        self._changed()
        return None

    def refusal(self, iteration: int, column: str, text: str) -> str | None:
        """Why an edit cannot happen (read-only row, impossible value), or None."""
        lock = self.lock_reason(iteration, column)
        if lock is not None:
            return lock
        if column == "iteration":
            return "iteration numbers follow the row order: add or remove rows instead"
        if column in KNOBS and column not in self.knobs:
            return f"{column}: not a column of this schedule (add it to schedule.csv to set it per iteration)"
        return check_cell(column, text)[1]

    def add_row(self) -> ScheduleRow:
        """Append iteration N+1 that moves nothing yet (valid as it stands; edit it to move blocks)."""
        if self.rows:
            last = self.rows[-1]
            row = ScheduleRow(iteration=last.iteration + 1, dense=last.dense, mid_2_4=last.mid_2_4,
                              topk=last.topk, dense_to_2_4=0.0, mid_2_4_to_topk=0.0, epochs=last.epochs)
        else:
            row = ScheduleRow(iteration=1, dense=1.0, mid_2_4=0.0, topk=0.0, dense_to_2_4=0.0,
                              mid_2_4_to_topk=0.0, epochs=1)
        self.rows.append(row)
        self._changed()
        return row

    def removal_refusal(self, iteration: int) -> str | None:
        """Why the row cannot be removed (it or a row after it ran, or it is the last one), or None."""
        i = self._index(iteration)
        for r in self.rows[i:]:
            lock = self.lock_reason(r.iteration)
            if lock is not None:
                return lock if r.iteration == iteration else f"iteration {r.iteration} after it already ran"
        if len(self.rows) == 1:
            return "a schedule needs at least one iteration"
        return None

    def remove_row(self, iteration: int) -> str | None:
        """Remove a row and renumber the ones after it; return the reason it was refused, or None."""
        refusal = self.removal_refusal(iteration)
        if refusal is not None:
            return refusal
        i = self._index(iteration)
        del self.rows[i]
        self.rows[i:] = [dataclasses.replace(r, iteration=r.iteration - 1) for r in self.rows[i:]]
        self._changed()
        return None

    def derive_transitions(self) -> int:
        """Recompute the transition columns of editable rows from the cumulative ones (docs/tiers.md, The schedule).

        The quick way to a consistent schedule after changing where each iteration should end up.
        Returns how many rows changed.
        """
        changed = 0
        prev_dense, prev_topk = 1.0, 0.0
        for i, r in enumerate(self.rows):
            if r.iteration not in self.locked:
                d2s = round(prev_dense - r.dense, 10)
                s2t = round(r.topk - prev_topk, 10)
                if (d2s, s2t) != (r.dense_to_2_4, r.mid_2_4_to_topk):
                    self.rows[i] = dataclasses.replace(r, dense_to_2_4=d2s, mid_2_4_to_topk=s2t)
                    changed += 1
            prev_dense, prev_topk = r.dense, r.topk
        if changed:
            self._changed()
        return changed

    def save(self) -> Schedule:
        """Write schedule.csv atomically; BadInput (naming the first problem) while rows are invalid."""
        if self.errors:
            e = self.errors[0]
            more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            where = f"iteration {e.iteration}" + (f" {e.column}" if e.column else "")
            raise BadInput(f"not saved: {where}: {e.message}{more}")
        schedule = Schedule(list(self.rows))
        save_schedule(schedule, self.path)
        self.dirty = False
        return schedule

    # ---- internals ----------------------------------------------------------------------------

    def _index(self, iteration: int) -> int:
        for i, r in enumerate(self.rows):
            if r.iteration == iteration:
                return i
        raise KeyError(iteration)

    def _changed(self) -> None:
        self.dirty = True
        self._revalidate()

    def _revalidate(self) -> None:
        self.errors = list(validate_rows(self.rows, str(self.path)))
