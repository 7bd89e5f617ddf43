"""The evidence sections of `tierctl report`: the reference, the intervals, zero-shot accuracy, comparisons.

- `comparison_table`: first on the page when several campaigns are compared. One row per campaign and
  measured point (its reference, iteration 0, then every evaluated iteration): sparsity, ppl with its 95%
  interval, the ratio to that campaign's reference, the mean zero-shot acc, and a mark naming the other
  campaigns whose interval overlaps at equal sparsity (within EQUAL_SPARSITY): their difference is within
  the noise of the evaluation windows.
- `pareto_figure`: ppl after fine-tune against sparsity for every campaign, with error bars, and the
  lower envelope over all of them (the Pareto front: no other point is both sparser and better).
- `evidence_table`: per campaign, iteration 0..N with intervals, ratios and every zero-shot task.

Reads only the metrics the steps wrote (metrics.json: ppl, ppl_interval, zeroshot); matplotlib is
imported only when a figure is drawn.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from tierctl.core.metrics import Metrics

EQUAL_SPARSITY = 0.01  # two points are "at equal sparsity" when their sparsities differ by at most 1 point


@dataclass
class Point:
    """One measured ppl (after fine-tune) of one campaign."""

    campaign: str
    iteration: int  # 0 = the reference
    sparsity: float | None
    ppl: float
    interval: list[float] | None
    ratio: float | None  # ppl / the campaign's reference ppl
    mean_acc: float | None
    zeroshot: dict[str, Any] | None

    @property
    def label(self) -> str:
        return f"{self.campaign}@{self.iteration}"


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def _interval(v: Any) -> list[float] | None:
    if isinstance(v, list) and len(v) == 2 and all(_finite(x) is not None for x in v):
        return [float(v[0]), float(v[1])]
    return None


def _point(name: str, n: int, metrics: Metrics, ref_ppl: float | None) -> Point | None:
    ppl = _finite(metrics.ppl)
    if ppl is None:
        return None
    zs = metrics.zeroshot if isinstance(metrics.zeroshot, dict) else None
    return Point(name, n, _finite(metrics.sparsity), ppl, _interval(metrics.ppl_interval),
                 ppl / ref_ppl if ref_ppl else None, _finite((zs or {}).get("mean_acc")), zs)


def campaign_points(name: str, reference: Metrics | None, iterations: list[Any]) -> list[Point]:
    """The reference (when measured) and every evaluated iteration of one campaign, in order.

    `iterations`: objects with `iteration`, `metrics` (metrics.json) and `steps`.
    """
    ref_ppl = _finite(reference.ppl) if reference is not None else None
    pts = [_point(name, 0, reference, ref_ppl)] if reference else []
    pts += [_point(name, it.iteration, it.metrics, ref_ppl) for it in iterations
            if it.steps.get("eval") == "done"]
    return [p for p in pts if p is not None]


def overlapping(points: list[Point]) -> dict[str, list[str]]:
    """For each point, the points of *other* campaigns at equal sparsity whose 95% intervals overlap it."""
    out: dict[str, list[str]] = {p.label: [] for p in points}
    for a in points:
        for b in points:
            if a.campaign == b.campaign or a.sparsity is None or b.sparsity is None:
                continue
            if abs(a.sparsity - b.sparsity) > EQUAL_SPARSITY or not a.interval or not b.interval:
                continue
            if a.interval[0] <= b.interval[1] and b.interval[0] <= a.interval[1]:
                out[a.label].append(b.label)
    return out


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _n(v: float | None, fmt: str) -> str:
    return "–" if v is None else fmt.format(v)


def _ppl(p: Point) -> str:
    lo_hi = f" [{p.interval[0]:.2f}, {p.interval[1]:.2f}]" if p.interval else ""
    return f"{p.ppl:.2f}{lo_hi}"


def _table(head: list[str], rows: list[list[str]], left: int) -> str:
    th = "".join(f'<th{" class=l" if i < left else ""}>{h}</th>' for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f'<td{" class=l" if i < left else ""}>{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def comparison_table(points: list[Point]) -> str:
    """The comparison of several campaigns (module doc), sorted by sparsity, as HTML."""
    marks = overlapping(points)
    rows = []
    for p in sorted(points, key=lambda p: (p.sparsity if p.sparsity is not None else -1.0, p.campaign, p.iteration)):
        what = "reference" if p.iteration == 0 else f"iteration {p.iteration}"
        overlap = marks[p.label]
        rows.append([_esc(p.campaign), _esc(what), _n(None if p.sparsity is None else 100 * p.sparsity, "{:.1f}%"),
                     _esc(_ppl(p)), _n(p.ratio, "{:.3f}x"), _n(p.mean_acc, "{:.3f}"),
                     ("≈ " + _esc(", ".join(overlap))) if overlap else ""])
    head = ["campaign", "point", "sparsity", "ppl [95% interval]", "x reference", "mean zero-shot acc",
            "intervals overlap (equal sparsity)"]
    return _table(head, rows, left=2) + (
        f"<p>Equal sparsity: within {100 * EQUAL_SPARSITY:g} percentage point. ≈ names the other campaigns' points "
        "whose 95% intervals overlap this one: their difference is within the noise of the evaluation windows.</p>")


def evidence_table(points: list[Point]) -> str:
    """One campaign, iteration 0..N: ppl, interval, ratio and every zero-shot task (acc, acc_norm +- stderr)."""
    tasks: list[str] = []
    for p in points:
        tasks += [t for t in ((p.zeroshot or {}).get("tasks") or {}) if t not in tasks]
    rows = []
    for p in points:
        zs = (p.zeroshot or {}).get("tasks") or {}
        cells = []
        for t in tasks:
            r = zs.get(t, {})
            parts = [f"{m} {r[m]:.3f} ± {r.get(m + '_stderr', 0.0):.3f}" for m in ("acc", "acc_norm") if m in r]
            cells.append(_esc("; ".join(parts)) or "–")
        rows.append(["0 (reference)" if p.iteration == 0 else str(p.iteration),
                     _n(None if p.sparsity is None else 100 * p.sparsity, "{:.1f}%"), _esc(_ppl(p)),
                     _n(p.ratio, "{:.3f}x"), _n(p.mean_acc, "{:.3f}"), *cells])
    head = ["iter", "sparsity", "ppl [95% interval]", "x reference", "mean acc", *[_esc(t) for t in tasks]]
    return _table(head, rows, left=1)


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both axes (sparser or as sparse, and lower ppl), by sparsity."""
    pts = sorted((p for p in points if p.sparsity is not None), key=lambda p: (-p.sparsity, p.ppl))
    front: list[Point] = []
    best = float("inf")
    for p in pts:  # from the sparsest down: a point joins when it beats every sparser one
        if p.ppl < best:
            front.append(p)
            best = p.ppl
    return sorted(front, key=lambda p: p.sparsity or 0.0)


def pareto_figure(points: list[Point], new_figure: Any, log_y: Any) -> Any:
    """ppl after fine-tune against sparsity, one colour per campaign, 95% error bars, the front dashed grey."""
    fig = new_figure(7.5, 4.4)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(p.campaign for p in points))
    for i, name in enumerate(names):
        mine = [p for p in points if p.campaign == name and p.sparsity is not None]
        if not mine:
            continue
        xs = [100 * p.sparsity for p in mine]
        ys = [p.ppl for p in mine]
        err = [[p.ppl - p.interval[0] if p.interval else 0.0 for p in mine],
               [p.interval[1] - p.ppl if p.interval else 0.0 for p in mine]]
        ax.errorbar(xs, ys, yerr=err, fmt="o-", color=f"C{i % 10}", capsize=3, label=name, markersize=4)
    front = pareto_front(points)
    if len(front) > 1:
        ax.plot([100 * p.sparsity for p in front], [p.ppl for p in front], "--", color="grey", linewidth=1,
                label="Pareto front", zorder=0)
    log_y(ax)
    ax.set_xlabel("sparsity of prunable matrices (%)")
    ax.set_ylabel("perplexity after fine-tune (log scale)")
    ax.set_title("Perplexity against sparsity, every campaign (95% intervals)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
