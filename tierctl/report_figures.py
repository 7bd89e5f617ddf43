"""The figures of `tierctl report` (matplotlib, Agg, imported only when a report is written).

- ppl after prune (dashed) and after fine-tune (solid) against iteration and against sparsity, every
  campaign in one figure, the unpruned reference as a dotted line when the campaign measured one, and
  the evaluation (dataset, windows, protocol) under the title;
- the block composition by decoder layer and by matrix kind (q, k, v, o, gate, up, down) of each
  campaign's last pruned iteration: where campaigns and layers differ, which a per-matrix bar of a
  uniform allocation never shows;
- per campaign, the tier maps of a few matrices across iterations, with block-row / block-column ticks
  and the matrix shape.

Tier colours come from the one tier table in core (the terminal and the dashboard use the same).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from tierctl.core.vocab import TIER_COLORS, TIER_KEYS, TIER_LABELS
from tierctl.render.bars import KIND_ORDER, matrix_sort_key, split_matrix_name

if TYPE_CHECKING:
    from tierctl.report import CampaignData

DPI = 110


def new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plain_log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis from `lo` to `hi`: every decade and 2x, 5x in between; when that
    gives fewer than three ticks (a narrow range), every integer multiple of the decade instead."""
    if not (lo > 0 and hi > lo):
        return []
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for subs in ((1, 2, 5), tuple(range(1, 10))):
        ticks = [s * 10.0 ** d for d in decades for s in subs if lo <= s * 10.0 ** d <= hi]
        if len(ticks) >= 3:
            return ticks
    return ticks


def log_y(ax: Any) -> None:
    """Log y axis labelled in plain numbers (10, 20, 50, 100, ...), never only the one decade inside."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()
    ax.yaxis.set_major_locator(FixedLocator(plain_log_ticks(lo, hi)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(lo, hi)


def evaluation_note(campaigns: list[CampaignData]) -> str:
    """`eval: pydoc, 16 windows x 256 tokens, exp(mean over windows of mean token NLL)` (one line per
    distinct evaluation when campaigns differ)."""
    seen: dict[str, list[str]] = {}
    for c in campaigns:
        info = next((it.eval_info for it in reversed(c.iterations) if it.eval_info), None) or {}
        source = info.get("source", c.config.data.eval)
        windows = info.get("windows")
        seqlen = info.get("seqlen", c.config.data.seqlen)
        protocol = info.get("protocol", "")
        text = f"eval: {source}, {windows if windows is not None else '?'} windows x {seqlen} tokens" + (
            f", {protocol}" if protocol else "")
        seen.setdefault(text, []).append(c.name)
    if len(seen) == 1:
        return next(iter(seen))
    return "\n".join(f"{', '.join(who)}: {text}" for text, who in seen.items())


def ppl_figure(campaigns: list[CampaignData], x: str = "iteration") -> Any:
    """ppl after prune (dashed, hollow) and after fine-tune (solid) of every campaign, against `x`,
    with each campaign's unpruned reference (iteration 0) as a dotted horizontal line."""
    fig = new_figure(7.5, 4.4)
    ax = fig.add_subplot()
    for i, c in enumerate(campaigns):
        color = f"C{i % 10}"  # matplotlib's default cycle: one colour per campaign in both ppl figures
        for attr, style, label in (("ppl_pruned", "--", "after prune"), ("ppl", "-", "after fine-tune")):
            pts = [(it.iteration if x == "iteration" else 100 * it.sparsity, getattr(it, attr))
                   for it in c.iterations
                   if getattr(it, attr) is not None and (x == "iteration" or it.sparsity is not None)]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, marker="o", color=color, label=f"{c.name}: {label}",
                        markerfacecolor="white" if style == "--" else color)
        if c.reference_ppl is not None:
            ax.axhline(c.reference_ppl, linestyle=":", color=color, linewidth=1.2,
                       label=f"{c.name}: unpruned ({c.reference_ppl:.4g})")
    log_y(ax)
    ax.set_xlabel("iteration" if x == "iteration" else "sparsity of prunable matrices (%)")
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title(f"Perplexity against {x}\n{evaluation_note(campaigns)}", fontsize=9)
    if x == "iteration":
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# --- composition by depth and kind -----------------------------------------------------------------


def composition_by(per_layer: dict[str, dict[str, float]], tiers: dict[str, np.ndarray] | None,
                   group: str) -> dict[Any, dict[str, float]]:
    """Block fractions per decoder layer (`group` = "depth") or per matrix kind ("kind"), each matrix
    weighted by its number of blocks when the tier maps are known (unweighted otherwise)."""
    sums: dict[Any, np.ndarray] = {}
    for name, entry in per_layer.items():
        layer, kind = split_matrix_name(name)
        key = layer if group == "depth" else kind
        if key is None:
            continue
        weight = float(tiers[name].size) if tiers is not None and name in tiers else 1.0
        vec = np.array([float(entry.get(k) or 0.0) for k in TIER_KEYS] + [1.0]) * weight
        sums[key] = sums.get(key, 0.0) + vec
    order = sorted(sums, key=lambda k: k if group == "depth" else (
        KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))
    return {k: {t: float(sums[k][i] / sums[k][-1]) for i, t in enumerate(TIER_KEYS)} for k in order}


def _stacked(ax: Any, groups: dict[Any, dict[str, float]]) -> None:
    xs = np.arange(len(groups))
    bottom = np.zeros(len(groups))
    for t, key in enumerate(TIER_KEYS):
        vals = np.array([g[key] for g in groups.values()])
        ax.bar(xs, vals, bottom=bottom, width=0.85, color=TIER_COLORS[t], label=TIER_LABELS[t], linewidth=0)
        bottom += vals
    ax.set_ylim(0, 1)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1], ["0", "25%", "50%", "75%", "100%"])


def _owl_overlay(ax: Any, layers: list[Any], allocation: Any) -> None:
    """An OWL iteration's per-layer allocation on its by-layer bars: each layer's DENSE target (black tick)
    and outlier ratio (grey dots, right axis, %)."""
    if not isinstance(allocation, dict) or allocation.get("method") != "owl":
        return
    rows = {r["layer"]: r for r in allocation.get("layers", []) if isinstance(r, dict) and "layer" in r}
    xs = [x for x, layer in enumerate(layers) if layer in rows]
    if not xs:
        return
    for x in xs:
        if "dense" in rows[layers[x]]:
            ax.hlines(float(rows[layers[x]]["dense"]), x - 0.42, x + 0.42, color="black", linewidth=1.2)
    twin = ax.twinx()
    twin.plot(xs, [100 * float(rows[layers[x]].get("outlier_ratio", 0.0)) for x in xs], "o", color="#555555",
              markersize=3)
    twin.set_ylim(bottom=0)
    twin.set_ylabel("OWL outliers %\n(black: dense target)", fontsize=7)
    twin.tick_params(labelsize=7)


def composition_figure(campaigns: list[CampaignData]) -> Any | None:
    """One row per campaign (its last pruned iteration): composition by decoder layer, and by kind."""
    from matplotlib.patches import Patch

    rows = []
    for c in campaigns:
        it = next((it for it in reversed(c.iterations) if it.per_layer), None)
        if it is not None:
            rows.append((c, it))
    if not rows:
        return None
    n_layers = max(len(composition_by(it.per_layer, it.tiers, "depth")) for _, it in rows)
    fig = new_figure(min(16.0, 5.0 + 0.18 * n_layers), 0.9 + 2.0 * len(rows))
    axes = fig.subplots(len(rows), 2, squeeze=False, width_ratios=[max(3, n_layers), 7])
    for r, (c, it) in enumerate(rows):
        depth = composition_by(it.per_layer, it.tiers, "depth")
        kind = composition_by(it.per_layer, it.tiers, "kind")
        _stacked(axes[r][0], depth)
        _owl_overlay(axes[r][0], list(depth), it.metrics.allocation if it.metrics is not None else None)
        step = max(1, len(depth) // 16)
        axes[r][0].set_xticks(range(0, len(depth), step), [str(k) for k in list(depth)[::step]])
        axes[r][0].set_ylabel(f"{c.name}\niter {it.iteration}", fontsize=8)
        _stacked(axes[r][1], kind)
        axes[r][1].set_xticks(range(len(kind)), list(kind))
        axes[r][1].set_yticklabels([])
    axes[-1][0].set_xlabel("decoder layer")
    axes[-1][1].set_xlabel("matrix kind")
    axes[0][0].set_title("by decoder layer", fontsize=9)
    axes[0][1].set_title("by matrix kind", fontsize=9)
    fig.suptitle("Block composition (share of blocks per tier, last pruned iteration)", fontsize=10)
    fig.legend(handles=[Patch(color=TIER_COLORS[t], label=TIER_LABELS[t]) for t in range(3)],
               loc="outside lower center", ncols=3, fontsize=8)
    return fig


# --- tier maps -------------------------------------------------------------------------------------


def select_matrices(names: list[str], patterns: list[str] | None) -> list[str]:
    """Matrices for the heat maps: those matching `patterns`, else the first and last kind of the first
    and last decoder layer (attention in and MLP out, at both ends of the network)."""
    import fnmatch

    names = sorted(names, key=matrix_sort_key)
    if patterns:
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    layers = sorted({split_matrix_name(n)[0] for n in names}, key=lambda x: (x is None, x or 0))
    picks: list[str] = []
    for layer in dict.fromkeys([layers[0], layers[-1]]):
        of_layer = [n for n in names if split_matrix_name(n)[0] == layer]
        picks += [n for n in dict.fromkeys([of_layer[0], of_layer[-1]]) if n not in picks]
    return picks


def block_ticks(n: int, most: int = 5) -> list[int]:
    """At most `most` + 1 block indices from 0 to n - 1, at a round step (1, 2, 5, 10, 20, ...)."""
    step = 1
    for s in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000):
        step = s
        if (n - 1) // s <= most:
            break
    return list(range(0, n, step))


def tiermap_figure(c: CampaignData, patterns: list[str] | None) -> Any | None:
    """Heat maps of the selected matrices (rows) at every iteration with a tier map (columns)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    its = [it for it in c.iterations if it.tiers]
    if not its:
        return None
    chosen = select_matrices(list(its[-1].tiers), patterns)
    if not chosen:
        return None
    b = c.config.tiers.block_size
    cmap = ListedColormap(list(TIER_COLORS))
    fig = new_figure(1.4 + 2.4 * len(its), 1.0 + 2.2 * len(chosen))
    axes = fig.subplots(len(chosen), len(its), squeeze=False)
    for r, name in enumerate(chosen):
        for col, it in enumerate(its):
            ax = axes[r][col]
            m = it.tiers.get(name)
            if m is None:
                ax.set_axis_off()
                continue
            ax.imshow(m, cmap=cmap, vmin=0, vmax=2, interpolation="nearest", aspect="equal")
            ax.set_xticks(block_ticks(m.shape[1]))
            ax.set_yticks(block_ticks(m.shape[0]))
            ax.tick_params(labelsize=6, length=2)
            if r == 0:
                ax.set_title(f"iter {it.iteration}", fontsize=9)
            if r == len(chosen) - 1:
                ax.set_xlabel("input block", fontsize=7)
            if col == 0:
                short = re.sub(r"^model\.(layers\.)?", "", name)
                ax.set_ylabel(f"{short}\n{m.shape[0]} x {m.shape[1]} blocks of {b}x{b}\n"
                              f"= {m.shape[0] * b} x {m.shape[1] * b} weights\noutput block", fontsize=7)
    fig.legend(handles=[Patch(color=TIER_COLORS[t], label=TIER_LABELS[t]) for t in range(3)],
               loc="outside lower center", ncols=3, fontsize=8)
    fig.suptitle(f"{c.name}: tier maps (rows: output blocks, columns: input blocks)", fontsize=10)
    return fig
