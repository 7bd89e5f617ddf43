"""Tier-map pictures: the block grid of one map and the grid of blocks that moved between two maps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.text import Text

from tierctl.core.vocab import TIER_COLORS, TIER_GLYPHS
from tierctl.errors import BadInput
from tierctl.render.bars import composition_legend, map_composition

HALF = "▀"

# --- tier-map grids -----------------------------------------------------------------------------------


def downsample(tier_map: np.ndarray, factor: int, reduce: str = "max") -> np.ndarray:
    """Tier map reduced to cells of `factor` x `factor` blocks (edge cells hold fewer blocks).

    `max`: the most pruned tier present in the cell. `mode`: the most common tier, ties to the more
    pruned one. Either way a cell only ever shows a tier that some block of it has.
    """
    if reduce not in ("max", "mode"):
        raise ValueError(f"reduce must be 'max' or 'mode', not {reduce!r}")
    if factor <= 1:
        return tier_map.astype(np.uint8, copy=True)
    r, c = tier_map.shape
    rr, cc = -(-r // factor), -(-c // factor)
    padded = np.full((rr * factor, cc * factor), 255, dtype=np.uint8)  # 255 = outside the map
    padded[:r, :c] = tier_map
    cells = padded.reshape(rr, factor, cc, factor)
    # counts[t] : [rr, cc] number of blocks of tier t in each cell
    counts = np.stack([(cells == t).sum(axis=(1, 3)) for t in range(3)])
    if reduce == "max":
        return np.where(counts[2] > 0, 2, np.where(counts[1] > 0, 1, 0)).astype(np.uint8)
    return (2 - np.argmax(counts[::-1], axis=0)).astype(np.uint8)


def _fit_factor(shape: tuple[int, int], max_width: int, max_height: int | None, rows_per_char: int) -> int:
    r, c = shape
    f = max(1, -(-c // max(1, max_width)))
    if max_height:
        f = max(f, -(-r // max(1, max_height * rows_per_char)))
    return f


def _scale_up_factor(shape: tuple[int, int], width: int, scale_up: int | None, rows_per_char: int) -> int:
    """How many characters wide (and rows tall, so blocks stay square) one block is drawn when a small
    map is scaled up: 1 unless `scale_up` (the lines the map may take) is given; never past the width
    nor those lines."""
    if not scale_up:
        return 1
    r, c = shape
    return max(1, min(width // max(1, c), scale_up * rows_per_char // max(1, r)))


def _enlarge(codes: np.ndarray, s: int) -> np.ndarray:
    """Each block repeated into an s x s patch."""
    return codes if s == 1 else np.repeat(np.repeat(codes, s, axis=0), s, axis=1)


def _paint(codes: np.ndarray, colors: Sequence[str], glyphs: Sequence[str] | None) -> list[Text]:
    """Rows of Text for a code grid: half-block pairs of colours, or one glyph per code (no colour needed)."""
    lines: list[Text] = []
    if glyphs is not None:
        for row in codes:
            t = Text(no_wrap=True, overflow="crop")
            for code in row:
                t.append(glyphs[code], style=colors[code])
            lines.append(t)
        return lines
    for r in range(0, codes.shape[0], 2):
        top = codes[r]
        bottom = codes[r + 1] if r + 1 < codes.shape[0] else None
        t = Text(no_wrap=True, overflow="crop")
        run_style, run_len = None, 0
        for i, code in enumerate(top):
            style = Style(color=colors[code], bgcolor=colors[bottom[i]] if bottom is not None else None)
            if style == run_style:
                run_len += 1
                continue
            if run_len:
                t.append(HALF * run_len, style=run_style)
            run_style, run_len = style, 1
        if run_len:
            t.append(HALF * run_len, style=run_style)
        lines.append(t)
    return lines


def _grid_head(title: str | None, rows: int, cols: int) -> Text:
    """The line above a grid: its title and its size in blocks."""
    head = Text(no_wrap=True, overflow="ellipsis")
    if title:
        head.append(title, style="bold")
        head.append("  ")
    head.append(f"{rows}x{cols} blocks", style="dim")
    return head


def _scale_note(factor: int, reduce: str, glyphs: bool, up: int = 1) -> str:
    if up > 1:
        return f"1 block = {up}x{up} characters" if glyphs else f"1 block = {up} characters x {up} half-rows"
    what = "most pruned tier" if reduce == "max" else "most common tier"
    if glyphs:
        return "1 character = 1 block" if factor == 1 else f"1 character = {factor}x{factor} blocks ({what})"
    if factor == 1:
        return "1 character = 2 blocks (upper, lower half)"
    return f"1 character = 2 cells (upper, lower half) of {factor}x{factor} blocks ({what})"


class TierMapGrid:
    """The block grid of one tier map; fits the width it is given (`max_width` caps it). With
    `scale_up` (a number of lines), a small map is drawn larger, each block an s x s patch, to use the
    width without taking more than those lines."""

    def __init__(self, tier_map: np.ndarray, max_width: int | None = None, max_height: int | None = None,
                 title: str | None = None, reduce: str = "max", glyphs: bool = False,
                 scale_up: int | None = None) -> None:
        if tier_map.ndim != 2:
            raise ValueError(f"tier map must be 2-D, got shape {tier_map.shape}")
        self.tier_map, self.max_width, self.max_height = tier_map, max_width, max_height
        self.title, self.reduce, self.glyphs, self.scale_up = title, reduce, glyphs, scale_up

    def lines(self, width: int) -> list[Text]:
        r, c = self.tier_map.shape
        rows_per_char = 1 if self.glyphs else 2
        width = min(width, self.max_width or width)
        f = _fit_factor((r, c), width, self.max_height, rows_per_char)
        up = _scale_up_factor((r, c), width, self.scale_up if f == 1 else None, rows_per_char)
        cells = _enlarge(downsample(self.tier_map, f, self.reduce), up)
        head = _grid_head(self.title, r, c)
        body = _paint(cells, TIER_COLORS, TIER_GLYPHS if self.glyphs else None)
        note = Text(_scale_note(f, self.reduce, self.glyphs, up), style="dim", no_wrap=True, overflow="ellipsis")
        legend = composition_legend(map_composition(self.tier_map), solid=not self.glyphs, blocks=r * c)
        return [head, *body, note, legend]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        w = min(options.max_width, self.max_width or options.max_width)
        return Measurement(min(w, 20), w)


def tier_map_grid(tier_map: np.ndarray, max_width: int | None = 80, max_height: int | None = None,
                  title: str | None = None, reduce: str = "max", glyphs: bool = False,
                  scale_up: int | None = None) -> TierMapGrid:
    """Block grid of a tier map with a scale note, legend and composition (see module docstring)."""
    return TierMapGrid(tier_map, max_width, max_height, title, reduce, glyphs, scale_up)


# Transition codes 3*a + b. Colour = tier in B: dim when unchanged, bright when it moved there;
# promotions (impossible inside one campaign) in cyan so they cannot be missed.
DIFF_COLORS = ("#1b3d1d", "#ffd54f", "#ff4dff", "#18ffff", "#4d3f0a", "#ff5252", "#18ffff", "#18ffff", "#4a1515")
DIFF_GLYPHS = ("·", "s", "T", "!", "·", "t", "!", "!", "·")
# When a downsampled cell mixes transitions, it shows the one of highest rank: promotions, then moves
# (largest jump first), then unchanged (most pruned first).
_DIFF_RANK = np.array([0, 3, 5, 8, 1, 4, 7, 6, 2])
_RANK_TO_CODE = np.argsort(_DIFF_RANK)
DIFF_LABELS = {1: "dense→2:4", 5: "2:4→top-k", 2: "dense→top-k"}


class TierMapDiffGrid:
    """Which blocks moved between two tier maps of one matrix (A -> B), coloured by transition."""

    def __init__(self, a: np.ndarray, b: np.ndarray, max_width: int | None = None, max_height: int | None = None,
                 title: str | None = None, glyphs: bool = False, scale_up: int | None = None) -> None:
        if a.shape != b.shape:
            raise BadInput(f"tier maps differ in shape: {list(a.shape)} vs {list(b.shape)}")
        self.a, self.b, self.max_width, self.max_height = a, b, max_width, max_height
        self.title, self.glyphs, self.scale_up = title, glyphs, scale_up

    def lines(self, width: int) -> list[Text]:
        codes = self.a.astype(np.int64) * 3 + self.b.astype(np.int64)  # [R, C] in 0..8
        r, c = codes.shape
        width = min(width, self.max_width or width)
        f = _fit_factor((r, c), width, self.max_height, 1 if self.glyphs else 2)
        up = _scale_up_factor((r, c), width, self.scale_up if f == 1 else None, 1 if self.glyphs else 2)
        ranks = _DIFF_RANK[codes]
        if f > 1:
            rr, cc = -(-r // f), -(-c // f)
            padded = np.full((rr * f, cc * f), -1, dtype=np.int64)
            padded[:r, :c] = ranks
            ranks = padded.reshape(rr, f, cc, f).max(axis=(1, 3))
        cells = _enlarge(_RANK_TO_CODE[ranks], up)
        head = _grid_head(self.title, r, c)
        body = _paint(cells, DIFF_COLORS, DIFF_GLYPHS if self.glyphs else None)
        note = _scale_note(f, "max", self.glyphs, up).replace("most pruned tier", "largest move")
        counts = np.bincount(codes.ravel(), minlength=9)
        legend = Text()
        for code, label in DIFF_LABELS.items():
            legend.append(DIFF_GLYPHS[code] if self.glyphs else TIER_GLYPHS[0], style=DIFF_COLORS[code])
            legend.append(f" {label} {counts[code]}  ")
        promoted = int(counts[[3, 6, 7]].sum())
        legend.append(DIFF_GLYPHS[3] if self.glyphs else TIER_GLYPHS[0], style=DIFF_COLORS[3])
        legend.append(f" promoted {promoted}", style="bold red" if promoted else "")
        legend.append(f"  unchanged {int(counts[[0, 4, 8]].sum())} (dim)", style="dim")
        return [head, *body, Text(note, style="dim", no_wrap=True, overflow="ellipsis"), legend]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        w = min(options.max_width, self.max_width or options.max_width)
        return Measurement(min(w, 20), w)


def tier_map_diff_grid(a: np.ndarray, b: np.ndarray, max_width: int | None = 80, max_height: int | None = None,
                       title: str | None = None, glyphs: bool = False, scale_up: int | None = None) -> TierMapDiffGrid:
    """Grid of the blocks that moved from A to B (see DIFF_COLORS); raises BadInput on shape mismatch."""
    return TierMapDiffGrid(a, b, max_width, max_height, title, glyphs, scale_up)


