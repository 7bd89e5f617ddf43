"""Small terminal charts: a sparkline (loss during fine-tune) and a line chart (ppl against iteration)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text

from tierctl.render.styles import ACTIVE

SPARK = "▁▂▃▄▅▆▇█"
SERIES_STYLES = ("#42a5f5", "#ef5350", "#66bb6a", "#ab47bc", "#ffa726", "#26c6da")
SERIES_MARKERS = ("●", "◆", "■", "▲", "✚", "○")


def _finite(v: Any) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _buckets(values: Sequence[float | None], width: int) -> list[float | None]:
    """`values` squeezed into `width` buckets by their mean (missing values ignored)."""
    if len(values) <= width:
        return list(values)
    out: list[float | None] = []
    for i in range(width):
        lo, hi = i * len(values) // width, (i + 1) * len(values) // width
        part = [float(v) for v in values[lo:hi] if _finite(v)]
        out.append(sum(part) / len(part) if part else None)
    return out


def sparkline(values: Sequence[float | None], width: int | None = None, style: str = ACTIVE) -> Text:
    """One character per value (bucket means when there are more values than `width`).

    Scaled from the minimum (`▁`) to the maximum (`█`) of what is shown; a flat series is drawn at
    mid height; missing or non-finite values are blanks.
    """
    shown = _buckets(values, width) if width else list(values)
    finite = [float(v) for v in shown if _finite(v)]
    text = Text(no_wrap=True, overflow="crop")
    if not finite:
        return text.append(" " * len(shown))
    lo, hi = min(finite), max(finite)
    chars = []
    for v in shown:
        if not _finite(v):
            chars.append(" ")
        elif hi == lo:
            chars.append(SPARK[3])
        else:
            chars.append(SPARK[round((float(v) - lo) / (hi - lo) * (len(SPARK) - 1))])
    return text.append("".join(chars), style=style)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class LineChart:
    """Series of (x, y) points on a character grid, markers joined by dots, y labels at top and bottom.

    `series` maps a label to points; a plain list of numbers means x = 0, 1, 2, ... `log_y` positions
    points by log10(y) (perplexities span orders of magnitude across a campaign); labels stay in y.
    Points with a missing or non-finite coordinate (or y <= 0 under log_y) are skipped.
    """

    def __init__(self, series: Mapping[str, Sequence[Any]], width: int | None = None, height: int = 8,
                 title: str | None = None, log_y: bool = False, x_label: str = "") -> None:
        self.series = {k: self._points(v, log_y) for k, v in series.items()}
        self.width, self.height, self.title, self.log_y, self.x_label = width, max(2, height), title, log_y, x_label

    @staticmethod
    def _points(values: Sequence[Any], log_y: bool) -> list[tuple[float, float]]:
        # A point whose x or y is not known yet (None: an iteration not measured yet) is skipped.
        pts = [tuple(p) if isinstance(p, (tuple, list)) else (float(i), p) for i, p in enumerate(values)]
        return [
            (float(x), float(y)) for x, y in pts
            if _finite(x) and _finite(y) and not (log_y and float(y) <= 0)
        ]

    def lines(self, width: int) -> list[Text]:
        out: list[Text] = []
        if self.title:
            out.append(Text(self.title, style="bold", no_wrap=True, overflow="ellipsis"))
        pts_all = [p for pts in self.series.values() for p in pts]
        if not pts_all:
            out.append(Text("no data yet", style="dim"))
            return out
        ty = (lambda y: math.log10(y)) if self.log_y else (lambda y: y)
        xs, ys = [p[0] for p in pts_all], [ty(p[1]) for p in pts_all]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        top, bottom = _fmt(max(p[1] for p in pts_all)), _fmt(min(p[1] for p in pts_all))
        lw = max(len(top), len(bottom))
        pw = max(2, width - lw - 1)  # plot width in characters
        h = self.height
        grid: list[list[tuple[str, str] | None]] = [[None] * pw for _ in range(h)]

        def cell(x: float, y: float) -> tuple[int, int]:
            col = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (pw - 1))
            row = h // 2 if y1 == y0 else round((y1 - ty(y)) / (y1 - y0) * (h - 1))
            return row, col

        for si, pts in enumerate(self.series.values()):
            style = SERIES_STYLES[si % len(SERIES_STYLES)]
            pts = sorted(pts)
            for (xa, ya), (xb, yb) in zip(pts, pts[1:], strict=False):  # dots along each segment, column by column
                (ra, ca), (rb, cb) = cell(xa, ya), cell(xb, yb)
                for col in range(ca + 1, cb):
                    row = round(ra + (rb - ra) * (col - ca) / (cb - ca))
                    if grid[row][col] is None:
                        grid[row][col] = ("·", style)
            for x, y in pts:
                r, c = cell(x, y)
                grid[r][c] = (SERIES_MARKERS[si % len(SERIES_MARKERS)], style)
        for r in range(h):
            label = top if r == 0 else bottom if r == h - 1 else ""
            line = Text(no_wrap=True, overflow="crop")
            line.append(label.rjust(lw) + "│", style="dim")
            for c in range(pw):
                g = grid[r][c]
                line.append(g[0] if g else " ", style=g[1] if g else "")
            out.append(line)
        out.append(Text(" " * lw + "└" + "─" * pw, style="dim", no_wrap=True, overflow="crop"))
        xl, xr = _fmt(x0), _fmt(x1)
        mid = self.x_label[: max(0, pw - len(xl) - len(xr) - 2)]
        gap = pw - len(xl) - len(xr) - len(mid)
        axis = xl + " " * (gap // 2) + mid + " " * (gap - gap // 2) + xr if gap >= 0 else xl
        out.append(Text(" " * (lw + 1) + axis, style="dim", no_wrap=True, overflow="crop"))
        legend = Text(no_wrap=True, overflow="ellipsis")
        for si, label in enumerate(self.series):
            legend.append(("  " if si else "") + SERIES_MARKERS[si % len(SERIES_MARKERS)],
                          style=SERIES_STYLES[si % len(SERIES_STYLES)])
            legend.append(f" {label}")
        out.append(legend)
        return out

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from self.lines(min(options.max_width, self.width or options.max_width))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        w = min(options.max_width, self.width or options.max_width)
        return Measurement(min(w, 20), w)


def ppl_chart(status: Any, x: str = "iteration", width: int | None = None, height: int = 8) -> LineChart:
    """Perplexity before and after fine-tune against `iteration` or `sparsity`, from a campaign status.

    `status` is a CampaignStatus (or anything with `.iterations` of IterationStatus-like objects).
    """
    before: list[tuple[Any, Any]] = []
    after: list[tuple[Any, Any]] = []
    for it in getattr(status, "iterations", status):
        # sparsity in percent, as every table shows it (a raw fraction reads 0.05034)
        xv = it.iteration if x == "iteration" else (None if it.sparsity is None else 100 * it.sparsity)
        before.append((xv, it.ppl_pruned))
        after.append((xv, it.ppl))
    return LineChart({"ppl after prune": before, "ppl after fine-tune": after}, width=width, height=height,
                     title=f"perplexity by {x}", log_y=True, x_label=x if x == "iteration" else "sparsity %")
