"""Reading a hand-edited schedule CSV into cells: encoding, lines, header, cell counts.

Everything that can be wrong with the *file* (rather than with the numbers in it) is refused here
with one line naming the file and the line or column: UTF-16 or binary data, an empty file, a
header-only file, semicolon or tab separators, a missing header, unknown, duplicate or missing
columns, rows with too few or too many cells. The numbers are judged by tierctl.core.schedule.
"""

from __future__ import annotations

import csv
import difflib
import re

from tierctl.errors import BadInput

COLUMNS = ("iteration", "dense", "mid_2_4", "topk", "dense_to_2_4", "mid_2_4_to_topk", "epochs")
DERIVABLE = ("dense_to_2_4", "mid_2_4_to_topk")
REQUIRED = tuple(c for c in COLUMNS if c not in DERIVABLE)
KNOBS = ("lr", "tokens_per_epoch")  # optional per-iteration fine-tune settings (tierctl.core.schedule_knobs)
KNOWN = (*COLUMNS, *KNOBS)
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

# Names people write for a column, offered as "did you mean" (never accepted silently).
_ALIASES = {
    "semi": "mid_2_4", "mid": "mid_2_4", "2:4": "mid_2_4", "2_4": "mid_2_4", "sparse_2_4": "mid_2_4",
    "top_k": "topk", "top-k": "topk", "iter": "iteration", "it": "iteration", "step": "iteration",
    "epoch": "epochs", "dense_to_semi": "dense_to_2_4", "semi_to_topk": "mid_2_4_to_topk",
    "learning_rate": "lr", "tokens": "tokens_per_epoch",
}


def decode_schedule(data: bytes, source: str) -> str:
    """UTF-8 text (a BOM is fine); a precise refusal for UTF-16 and binary files."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise BadInput(f"{source}: is UTF-16 text; save it as UTF-8 CSV")
    if b"\0" in data:
        at = data.index(b"\0")
        line = data.count(b"\n", 0, at) + 1
        raise BadInput(f"{source}: line {line}: not a text file (NUL byte at offset {at}); expected a CSV schedule")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise BadInput(f"{source}: line {line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                       "save it as UTF-8 CSV") from None


def _check_text(text: str, source: str) -> None:
    """Binary junk that survived decoding (control characters a text editor never writes)."""
    bad = next((ch for ch in text if ord(ch) < 32 and ch not in "\t\r\n\f\v"), None)
    if bad is not None:
        at = text.index(bad)
        line = text.count("\n", 0, at) + 1
        what = "NUL byte" if bad == "\0" else f"control character 0x{ord(bad):02x}"
        raise BadInput(f"{source}: line {line}: not a text file ({what}); expected a CSV schedule")


def _split_lines(text: str, source: str) -> list[tuple[int, list[str]]]:
    """(line number, stripped cells) of every line that holds something.

    Blank lines and lines of bare commas (spreadsheets export those) are dropped wherever they are;
    CRLF and lone CR line ends are fine.
    """
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.replace(",", "").strip():
            continue
        try:
            cells = next(csv.reader([line]))
        except csv.Error as e:
            raise BadInput(f"{source}: line {n}: not valid CSV ({e})") from None
        out.append((n, [c.strip() for c in cells]))
    return out


def _header(names: list[str], data: list[tuple[int, list[str]]], source: str) -> dict[str, int]:
    """Column name -> position, or BadInput naming the first problem of the header line."""
    expected = ",".join(COLUMNS)
    if len(names) == 1 and (";" in names[0] or "\t" in names[0]):
        sep = "';'" if ";" in names[0] else "tabs"
        raise BadInput(f"{source}: line 1: columns are separated by {sep}; expected commas ({expected})")
    if names and NUMBER.fullmatch(names[0]):
        raise BadInput(f"{source}: line 1: no header line; the first line must be {expected}")
    index: dict[str, int] = {}
    for pos, raw in enumerate(names):
        name = raw.lower()
        if not name:
            if all(pos >= len(cells) or not cells[pos] for _, cells in data):
                continue  # a trailing comma or an empty spreadsheet column
            raise BadInput(f"{source}: header: column {pos + 1} has no name but holds values")
        if name in index:
            raise BadInput(f"{source}: header: column {name} appears twice (columns {index[name] + 1} and {pos + 1})")
        if name not in KNOWN:
            guess = _ALIASES.get(name) or next(iter(difflib.get_close_matches(name, KNOWN, n=1, cutoff=0.6)), None)
            hint = f"did you mean {guess}?" if guess else f"expected {expected}; optional: {', '.join(KNOBS)}"
            raise BadInput(f"{source}: header: unknown column '{raw}' ({hint})")
        index[name] = pos
    for col in REQUIRED:
        if col not in index:
            why = " (fine-tune epochs per iteration; 0 skips the fine-tune)" if col == "epochs" else ""
            raise BadInput(f"{source}: header: missing column {col}{why}; expected {expected}")
    return index


def _iteration_label(cell: str | None) -> int | None:
    try:
        x = float(cell) if cell is not None and NUMBER.fullmatch(cell) else None
    except ValueError:  # pragma: no cover - NUMBER only matches what float reads
        return None
    return int(x) if x is not None and x.is_integer() else None


def read_cells(text: str, source: str) -> tuple[list[dict[str, str]], list[int], tuple[str, ...]]:
    """(rows as column -> cell text, their line numbers, the columns present) of a schedule CSV."""
    text = text.removeprefix("\ufeff")
    _check_text(text, source)
    lines = _split_lines(text, source)
    if not lines:
        raise BadInput(f"{source}: empty file; expected a header line {','.join(COLUMNS)} and one row per iteration")
    (_, names), data = lines[0], lines[1:]
    index = _header(names, data, source)
    if not data:
        raise BadInput(f"{source}: no iterations (only a header line)")
    width = max(index.values()) + 1
    rows: list[dict[str, str]] = []
    for n, cells in data:
        extra = [c for c in cells[len(names):] if c]
        if len(cells) < width or extra:
            pos = index["iteration"]
            it = _iteration_label(cells[pos] if pos < len(cells) else None)
            where = f"iteration {it}" if it is not None else f"line {n}"
            raise BadInput(f"{source}: {where}: {len(cells)} cells but the header has {len(names)} columns")
        rows.append({col: cells[pos] for col, pos in index.items()})
    present = tuple(c for c in KNOWN if c in index)
    return rows, [n for n, _ in data], present
