"""The schedule (docs/tiers.md, The schedule): load, validate, derive, save and project `schedule.csv`.

A schedule is edited by hand, so every way a CSV goes wrong gets one precise line naming the file,
the iteration (or line) and the column. `validate_rows` returns *all* problems of a table of cells,
for the dashboard's live marking; `parse_schedule` raises BadInput with the first one.

Decisions beyond docs/tiers.md:
- `dense_to_2_4` and `mid_2_4_to_topk` may be left out (as whole columns); they are derived from the
  cumulative columns. A blank cell in a column that is present is an error, never silently derived.
- `epochs` is required: a default would silently skip or multiply hours of fine-tuning.
- Header names are matched after stripping spaces and case; columns may come in any order.
  Fully blank lines (also lines of bare commas, as spreadsheets export) and nameless trailing
  columns that hold no value are ignored. A UTF-8 BOM is fine; UTF-16, NUL bytes and other
  binary data are refused.
- Whole-number spellings such as `2.0` are accepted for `iteration` and `epochs`.
The file itself (encoding, lines, header) is read by tierctl.core.schedule_csv with the plain `csv`
module, so `tierctl schedule validate` starts fast (no pandas at import).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tierctl.core.atomic import atomic_write_text
from tierctl.core.schedule_csv import COLUMNS, DERIVABLE, KNOBS, NUMBER, REQUIRED, decode_schedule, read_cells
from tierctl.core.schedule_knobs import format_knob, parse_knob
from tierctl.errors import BadInput

TOL = 1e-3  # docs/tiers.md: sums and recurrences hold within 1e-3
_SLOP = 1e-9  # float noise allowed at the edges of [0, 1]

SEED_SCHEDULE_CSV = """iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs
1,0.90,0.10,0.00,0.10,0.00,2
2,0.80,0.10,0.10,0.10,0.10,2
3,0.65,0.20,0.15,0.15,0.05,2
4,0.50,0.30,0.20,0.15,0.05,2
5,0.35,0.45,0.20,0.15,0.00,3
"""

_NAN = {"nan", "+nan", "-nan", "na", "n/a", "null", "none", "#n/a", "#value!"}
_INF = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


@dataclass
class ScheduleRow:
    """One iteration: cumulative block fractions after it, the fractions moved in it, its epochs, and
    its optional fine-tune knobs (None = the campaign.toml value; tierctl.core.schedule_knobs)."""

    iteration: int
    dense: float
    mid_2_4: float
    topk: float
    dense_to_2_4: float
    mid_2_4_to_topk: float
    epochs: int
    lr: float | None = None
    tokens_per_epoch: int | None = None


@dataclass
class Schedule:
    """Validated rows, iterations 1..N in order. `derived` names the columns the file left out."""

    rows: list[ScheduleRow]
    derived: tuple[str, ...] = field(default=())

    def row(self, n: int) -> ScheduleRow:
        if not 1 <= n <= len(self.rows):
            raise BadInput(f"iteration {n}: the schedule has iterations 1..{len(self.rows)}")
        return self.rows[n - 1]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ScheduleRow]:
        return iter(self.rows)

    def to_records(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]

    @property
    def knobs(self) -> tuple[str, ...]:
        """The knob columns some row sets (the ones to_csv writes)."""
        return tuple(k for k in KNOBS if any(getattr(r, k) is not None for r in self.rows))

    def to_csv(self) -> str:
        """Every column, derived ones included, in the documented order, then the knob columns some row
        sets (what save_schedule writes)."""
        knobs = self.knobs
        lines = [",".join((*COLUMNS, *knobs))]
        for r in self.rows:
            lines.append(",".join([str(r.iteration), *(format_fraction(getattr(r, c)) for c in COLUMNS[1:-1]),
                                   str(r.epochs), *(format_knob(k, getattr(r, k)) for k in knobs)]))
        return "\n".join(lines) + "\n"

    def to_frame(self) -> Any:
        """A pandas DataFrame of the rows (pandas imported here only, for reports and notebooks)."""
        import pandas as pd

        return pd.DataFrame(self.to_records(), columns=[*COLUMNS, *self.knobs])


@dataclass(frozen=True)
class CellError:
    """One problem. `iteration` is the row's declared iteration when it parses, else None; `row` is
    the 0-based position among the data rows (None for header and file problems); `column` is None
    for problems of a whole row or file; `line` is the 1-based line of the file when known."""

    iteration: int | None
    column: str | None
    message: str
    row: int | None = None
    line: int | None = None

    def format(self, source: str) -> str:
        """`<file>: iteration 3, column dense: <message>` (the one line the CLI prints)."""
        where = []
        if self.iteration is not None:
            where.append(f"iteration {self.iteration}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        elif self.row is not None:
            where.append(f"row {self.row + 1}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{source}: {', '.join(where)}: {self.message}" if where else f"{source}: {self.message}"


# --- cells ------------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def format_fraction(x: float, places: int = 6) -> str:
    """0.9 -> "0.90", 0.125 -> "0.125": as a schedule file writes it (at least two decimals, at most
    `places`, no float noise). The file and the on-screen table use the same form."""
    s = f"{round(x, places):.{places}f}".rstrip("0")
    whole, _, frac = s.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _text(raw: Any) -> str | None:
    """The cell as stripped text, None when blank (missing, None, empty or spaces)."""
    if raw is None:
        return None
    if isinstance(raw, float) and math.isnan(raw):
        return "nan"
    s = str(raw).strip()
    return s or None


def _parse_fraction(raw: Any) -> tuple[float | None, str | None]:
    """(value, None) or (None, message) for a cell that must hold a fraction in [0, 1]."""
    s = _text(raw)
    if s is None:
        return None, "blank cell, expected a fraction in [0, 1]"
    low = s.lower()
    if low in _NAN:
        return None, f"'{s}' is not a number (NaN), expected a fraction in [0, 1]"
    if low in _INF:
        return None, f"'{s}' is infinite, expected a fraction in [0, 1]"
    if s.endswith("%") and NUMBER.fullmatch(s[:-1].strip()):
        return None, f"'{s}' is a percentage; write the fraction {_fmt(float(s[:-1]) / 100)}"
    if "," in s and NUMBER.fullmatch(s.replace(",", ".")):
        return None, f"'{s}' has a decimal comma; write {s.replace(',', '.')}"
    if not NUMBER.fullmatch(s):
        return None, f"'{s}' is not a number, expected a fraction in [0, 1]"
    x = float(s)
    if x < -_SLOP or x > 1 + _SLOP:
        hint = f" (a percentage? write {_fmt(x / 100)})" if 1 < x <= 100 else ""
        return None, f"{s} is outside [0, 1]{hint}"
    return min(1.0, max(0.0, x)), None


def _parse_count(raw: Any, expected: str) -> tuple[int | None, str | None]:
    """(value, None) or (None, message) for a whole-number cell (`2.0` counts as 2)."""
    s = _text(raw)
    if s is None:
        return None, f"blank cell, expected {expected}"
    if s.lower() in _NAN:
        return None, f"'{s}' is not a number (NaN), expected {expected}"
    if s.lower() in _INF:
        return None, f"'{s}' is infinite, expected {expected}"
    if not NUMBER.fullmatch(s):
        return None, f"'{s}' is not an integer, expected {expected}"
    x = float(s)
    if not x.is_integer():
        return None, f"'{s}' is not a whole number, expected {expected}"
    return int(x), None


# --- rows -------------------------------------------------------------------------------------------


def _as_mapping(raw: Mapping[str, Any] | ScheduleRow) -> Mapping[str, Any]:
    return asdict(raw) if isinstance(raw, ScheduleRow) else raw


def _check_moves(prev: tuple[float, float, float] | None, cur: tuple[float, float, float], vals: dict[str, float],
                 err: Callable[[str | None, str], None]) -> None:
    """Row sum, promotions and the recurrences of docs/tiers.md, The schedule; fills in derived transitions.

    `prev` is the previous row's (dense, mid_2_4, topk), (1, 0, 0) before iteration 1, None when the
    previous row's fractions did not parse (nothing to compare with).
    """
    d, m, t = cur
    mark = _Counter(err)
    total = d + m + t
    if abs(total - 1) > TOL:
        mark(None, f"dense + mid_2_4 + topk = {_fmt(total)}, expected 1 (within {TOL:g})")
    if prev is None:
        return
    pd_, pm, pt = prev
    if d > pd_ + TOL:
        mark("dense", f"dense rises from {_fmt(pd_)} to {_fmt(d)}: a promotion (blocks only move down: "
                      "dense -> 2:4 -> top-k)")
    if t < pt - TOL:
        mark("topk", f"topk falls from {_fmt(pt)} to {_fmt(t)}: a promotion (blocks only move down: "
                     "dense -> 2:4 -> top-k)")
    moved_d, moved_t = round(pd_ - d, 9), round(t - pt, 9)
    g = vals.get("dense_to_2_4")
    if g is not None and abs(g - moved_d) > TOL:
        mark("dense_to_2_4", f"dense_to_2_4 is {_fmt(g)} but dense goes {_fmt(pd_)} -> {_fmt(d)} "
                             f"(moves {_fmt(moved_d)})")
    g = vals.get("mid_2_4_to_topk")
    if g is not None and abs(g - moved_t) > TOL:
        mark("mid_2_4_to_topk", f"mid_2_4_to_topk is {_fmt(g)} but topk goes {_fmt(pt)} -> {_fmt(t)} "
                                f"(moves {_fmt(moved_t)})")
    # Follows from the checks above when they pass (within their tolerances); said only when it is news.
    d2s = vals.get("dense_to_2_4", moved_d)
    s2t = vals.get("mid_2_4_to_topk", moved_t)
    if not mark.count and abs(pm + d2s - s2t - m) > TOL:
        mark("mid_2_4", f"mid_2_4 is {_fmt(m)} but the previous {_fmt(pm)} + dense_to_2_4 {_fmt(d2s)} "
                        f"- mid_2_4_to_topk {_fmt(s2t)} = {_fmt(pm + d2s - s2t)}")
    vals.setdefault("dense_to_2_4", max(0.0, moved_d))
    vals.setdefault("mid_2_4_to_topk", max(0.0, moved_t))


class _Counter:
    """Passes errors on and counts them (so a consequence is not reported beside its cause)."""

    def __init__(self, err: Callable[[str | None, str], None]) -> None:
        self.err, self.count = err, 0

    def __call__(self, column: str | None, message: str) -> None:
        self.count += 1
        self.err(column, message)


def _check_rows(rows: Sequence[Mapping[str, Any] | ScheduleRow],
                lines: Sequence[int] | None = None) -> tuple[list[CellError], list[ScheduleRow]]:
    """Every problem of `rows` in reading order, and the rows (derived columns filled) if none."""
    errors: list[CellError] = []
    out: list[ScheduleRow] = []
    prev: tuple[float, float, float] | None = (1.0, 0.0, 0.0)  # iteration 0: all dense
    prev_it = 0
    seen: dict[int, int] = {}

    def place(pos: int) -> str:
        return f"line {lines[pos]}" if lines is not None else f"row {pos + 1}"

    for pos, raw in enumerate(rows):
        cells = _as_mapping(raw)
        line = lines[pos] if lines is not None else None
        it, msg = _parse_count(cells.get("iteration"), "an iteration number 1, 2, ...")
        if "iteration" not in cells:
            msg = "missing column"

        def err(column: str | None, message: str, _it: int | None = it, _pos: int = pos,
                _line: int | None = line) -> None:
            errors.append(CellError(_it, column, message, _pos, _line))

        if msg:
            err("iteration", msg)
        elif it in seen:
            err("iteration", f"iteration {it} appears twice (also on {place(seen[it])})")
        elif it != prev_it + 1:
            if prev_it == 0:
                err("iteration", f"iterations start at 1, not {it}")
            elif it > prev_it + 1:
                missing = f"{prev_it + 1}" if it == prev_it + 2 else f"{prev_it + 1}..{it - 1}"
                err("iteration", f"iteration {missing} is missing (iteration {it} follows {prev_it})")
            else:
                err("iteration", f"iteration {it} follows iteration {prev_it}; iterations must be 1..N in order")
        if it is not None:
            seen.setdefault(it, pos)
            prev_it = it
        else:
            prev_it += 1  # judge the next row as if this one held the iteration it should

        vals: dict[str, float] = {}
        for col in ("dense", "mid_2_4", "topk", *DERIVABLE):
            if col in DERIVABLE and col not in cells:
                continue
            if col not in cells:
                err(col, "missing column")
                continue
            x, msg = _parse_fraction(cells[col])
            if msg and col in DERIVABLE and _text(cells[col]) is None:
                msg += " (leave out the whole column to derive it)"
            if msg:
                err(col, msg)
            else:
                vals[col] = x  # type: ignore[assignment]

        cur = None
        if all(c in vals for c in ("dense", "mid_2_4", "topk")):
            cur = (vals["dense"], vals["mid_2_4"], vals["topk"])
            _check_moves(prev, cur, vals, err)
        prev = cur

        epochs, msg = _parse_count(cells.get("epochs"), "a whole number of epochs >= 0")
        if "epochs" not in cells:
            err("epochs", "missing column")
        elif msg:
            err("epochs", msg)
        elif epochs is not None and epochs < 0:
            err("epochs", f"{epochs} is negative, expected a whole number of epochs >= 0")

        knobs: dict[str, Any] = {}
        for col in KNOBS:
            knobs[col], msg = parse_knob(col, cells.get(col))
            if msg:
                err(col, msg)

        if not errors and it is not None and epochs is not None:
            out.append(ScheduleRow(it, vals["dense"], vals["mid_2_4"], vals["topk"], vals["dense_to_2_4"],
                                   vals["mid_2_4_to_topk"], epochs, **knobs))
    return errors, out


def validate_rows(rows: Sequence[Mapping[str, Any] | ScheduleRow], source: str = "schedule.csv") -> list[CellError]:
    """All problems of a table of cells (column name -> text or number), in reading order.

    For live validation in the dashboard: each error names the row and the cell to mark. A row
    mapping without a transition column derives it; `source` is unused but kept so callers format
    the messages consistently (`err.format(source)`).
    """
    del source
    if not rows:
        return [CellError(None, None, "no iterations")]
    return _check_rows(rows)[0]


def schedule_from_rows(rows: Sequence[Mapping[str, Any] | ScheduleRow], source: str = "schedule.csv") -> Schedule:
    """A Schedule from a table of cells (the dashboard's editor); BadInput with the first problem."""
    if not rows:
        raise BadInput(f"{source}: no iterations")
    errors, out = _check_rows(rows)
    if errors:
        raise BadInput(errors[0].format(source))
    present = set().union(*(_as_mapping(r).keys() for r in rows))
    return Schedule(out, tuple(c for c in DERIVABLE if c not in present))


# --- files ------------------------------------------------------------------------------------------


def parse_schedule(text: str, source: str = "schedule.csv") -> Schedule:
    """A validated Schedule from CSV text; BadInput with the first problem as one line."""
    rows, lines, present = read_cells(text, source)
    errors, out = _check_rows(rows, lines)
    if errors:
        raise BadInput(errors[0].format(source))
    return Schedule(out, tuple(c for c in DERIVABLE if c not in present))


def load_schedule(path: str | Path) -> Schedule:
    """Read and validate a schedule file; BadInput for a missing, unreadable or invalid file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such schedule file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, expected a schedule CSV file") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_schedule(decode_schedule(data, str(path)), str(path))


def save_schedule(schedule: Schedule, path: str | Path) -> None:
    """Write every column atomically; an invalid schedule is refused and nothing is written."""
    errors = validate_rows(schedule.rows, str(path))
    if errors:
        raise BadInput(errors[0].format(str(path)))
    atomic_write_text(Path(path), schedule.to_csv())


# --- projection -------------------------------------------------------------------------------------


def tier_sparsities(block_size: int = 16, k: int = 10) -> tuple[float, float, float]:
    """Fraction of zero weights in a DENSE, SEMI (2:4) and TOPK block (docs/tiers.md)."""
    if block_size < 1:
        raise BadInput(f"block_size {block_size}: expected an integer >= 1")
    if not 0 <= k <= block_size * block_size:
        raise BadInput(f"topk_per_block {k}: expected 0..{block_size * block_size} for block_size {block_size}")
    return 0.0, 0.5, 1.0 - k / (block_size * block_size)


def project(schedule: Schedule | Iterable[ScheduleRow], block_size: int = 16, k: int = 10) -> list[dict[str, Any]]:
    """Per iteration: the block composition and the expected weight sparsity of the prunable matrices.

    Full blocks only: trailing partial blocks stay dense, so a model whose dims are not multiples of
    `block_size` ends slightly below this figure.
    """
    _, s_semi, s_topk = tier_sparsities(block_size, k)
    return [{"iteration": r.iteration, "dense": r.dense, "semi": r.mid_2_4, "topk": r.topk,
             "sparsity": r.mid_2_4 * s_semi + r.topk * s_topk} for r in schedule]


__all__ = [
    "COLUMNS", "DERIVABLE", "KNOBS", "REQUIRED", "SEED_SCHEDULE_CSV", "TOL", "CellError", "Schedule", "ScheduleRow",
    "decode_schedule", "load_schedule", "parse_schedule", "project", "save_schedule", "schedule_from_rows",
    "tier_sparsities", "validate_rows",
]
