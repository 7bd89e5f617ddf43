"""Composition of tiers: palette, stacked bars, legends, and the per-layer composition table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from rich.table import Table
from rich.text import Text

from tierctl.core.diff import matrix_depth, matrix_kind
from tierctl.core.vocab import TIER_COLORS, TIER_GLYPHS, TIER_KEYS, TIER_LABELS

# --- composition ----------------------------------------------------------------------------------


def _apportion(fractions: Sequence[float], width: int) -> list[int]:
    """Split `width` cells in proportion to `fractions`, summing exactly to `width`.

    Largest remainder; ties go to the earlier (denser) tier so equal inputs draw the same bar.
    """
    vals = [max(0.0, float(f)) if f is not None and math.isfinite(float(f)) else 0.0 for f in fractions]
    total = sum(vals)
    if total <= 0 or width <= 0:
        return [0] * len(vals)
    exact = [v / total * width for v in vals]
    cells = [int(math.floor(e)) for e in exact]
    order = sorted(range(len(vals)), key=lambda i: (-(exact[i] - cells[i]), i))
    for i in order[: width - sum(cells)]:
        cells[i] += 1
    return cells


def composition_bar(dense: float, semi: float, topk: float, width: int = 20) -> Text:
    """Stacked bar of `width` cells: dense, then 2:4, then top-k, in proportion to the fractions."""
    cells = _apportion((dense, semi, topk), width)
    bar = Text(no_wrap=True, overflow="crop")
    if sum(cells) == 0:
        bar.append("·" * width, style="dim")
        return bar
    for tier, n in enumerate(cells):
        if n:
            bar.append(TIER_GLYPHS[tier] * n, style=TIER_COLORS[tier])
    return bar


def comp_bar(comp: Mapping[str, float] | None, width: int = 20) -> Text:
    """`composition_bar` of a composition dict (`dense`, `semi`, `topk`); a dim placeholder for None."""
    if not comp:
        return Text("·" * width, style="dim", no_wrap=True)
    return composition_bar(comp.get("dense", 0.0), comp.get("semi", 0.0), comp.get("topk", 0.0), width)


def composition_percent(comp: Mapping[str, float] | None) -> str:
    """`60/30/10` (percent of blocks dense / 2:4 / top-k), for tables that also show the bar."""
    if not comp:
        return "-"
    return "/".join(f"{100 * float(comp.get(k, 0.0)):.0f}" for k in TIER_KEYS)


def composition_legend(comp: Mapping[str, float] | None = None, solid: bool = False, blocks: int | None = None) -> Text:
    """`█ dense  ▒ 2:4  ░ top-k`, with percentages when a composition is given.

    `solid` draws colour swatches (for tier-map grids, which use colour only) instead of the glyphs.
    """
    out = Text()
    for tier, key in enumerate(TIER_KEYS):
        if tier:
            out.append("  ")
        out.append(TIER_GLYPHS[0] if solid else TIER_GLYPHS[tier], style=TIER_COLORS[tier])
        out.append(f" {TIER_LABELS[tier]}")
        if comp is not None:
            out.append(f" {100 * float(comp.get(key, 0.0)):.1f}%")
    if blocks is not None:
        out.append(f"  ({blocks} blocks)", style="dim")
    return out


def map_composition(tier_map: np.ndarray) -> dict[str, float]:
    """Block fractions of one tier map (same keys as metrics.json `composition`)."""
    n = int(tier_map.size)
    counts = np.bincount(tier_map.ravel().astype(np.int64), minlength=3)[:3] if n else np.zeros(3)
    return {k: (float(c) / n if n else 0.0) for k, c in zip(TIER_KEYS, counts, strict=True)}


# --- names of prunable matrices ---------------------------------------------------------------------

def split_matrix_name(name: str) -> tuple[int | None, str]:
    """("model.layers.3.mlp.down_proj") -> (3, "down"): decoder layer index and short matrix kind.

    The parsing is core.diff's (matrix_depth, matrix_kind), so tables and diff summaries group alike.
    """
    return matrix_depth(name), matrix_kind(name)


# Matrix kinds in the order a decoder layer applies them (Llama/Mistral/Qwen2, then OPT/GPT-style names).
KIND_ORDER = (
    "q", "k", "v", "qkv", "o", "out", "gate", "up", "gate_up", "down", "fc1", "fc2", "c_attn", "c_proj", "c_fc",
)


def matrix_sort_key(name: str) -> tuple[int, int, int, str]:
    """Sort key putting matrices in model order: by decoder layer, then kind as the layer applies them.

    Tier-map files store their tensors sorted by name ("layers.10" before "layers.2", "down" before "q").
    """
    layer, kind = split_matrix_name(name)
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    return (layer is None, layer or 0, rank, name)


def layer_composition_table(
    per_layer: Mapping[str, Mapping[str, float]], bar_width: int = 6, title: str | None = None,
    notes: tuple[str, Mapping[int, str]] | None = None,
) -> Table:
    """One row per decoder layer, one small composition bar per matrix kind (q, k, v, o, gate, ...).

    Kinds are columns in the order a layer applies them (KIND_ORDER; unknown kinds after, by name);
    a matrix not reported yet (live pruning) is a blank cell. The next column is the mean sparsity of the
    layer's matrices (unweighted). `notes` (column title, layer -> text) adds a last column, e.g. the
    OWL allocation of each layer (allocation_notes).
    """
    rows: dict[int | None, dict[str, Mapping[str, float]]] = {}
    for name, comp in per_layer.items():
        layer, kind = split_matrix_name(name)
        rows.setdefault(layer, {})[kind] = comp
    present = {kind for cells in rows.values() for kind in cells}
    kinds = sorted(present, key=lambda k: (KIND_ORDER.index(k) if k in KIND_ORDER else len(KIND_ORDER), k))
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1), show_edge=False)
    table.add_column("layer", justify="right", style="bold")
    for kind in kinds:
        table.add_column(kind, no_wrap=True, min_width=bar_width)
    table.add_column("sparsity", justify="right")
    if notes is not None:
        table.add_column(notes[0], justify="right", no_wrap=True)
    for layer in sorted(rows, key=lambda x: (x is None, x if x is not None else 0)):
        cells = rows[layer]
        sps = [float(c["sparsity"]) for c in cells.values() if c.get("sparsity") is not None]
        table.add_row(
            "-" if layer is None else str(layer),
            *[comp_bar(cells[k], bar_width) if k in cells else Text("") for k in kinds],
            f"{100 * sum(sps) / len(sps):.1f}%" if sps else "-",
            *([notes[1].get(layer, "") if layer is not None else ""] if notes is not None else []),
        )
    return table


def allocation_notes(allocation: Mapping[str, object] | None) -> tuple[str, dict[int, str]] | None:
    """The OWL allocation a prune recorded (metrics.json `allocation`) as a layer_composition_table column:
    each layer's outlier ratio and its targets (DENSE / TOPK fractions, or the sparsity of a baseline).
    None for the uniform allocation (every layer has the schedule row)."""
    if not allocation or allocation.get("method") != "owl" or not isinstance(allocation.get("layers"), list):
        return None
    out: dict[int, str] = {}
    title = "owl: outliers  target"
    for row in allocation["layers"]:
        if not isinstance(row, Mapping) or not isinstance(row.get("layer"), int):
            continue
        ratio = f"{100 * float(row.get('outlier_ratio', 0.0)):.2f}%"
        if "sparsity" in row:
            out[row["layer"]] = f"{ratio}  {100 * float(row['sparsity']):.1f}% sparse"
        else:
            dense, topk = (100 * float(row.get(k, 0.0)) for k in ("dense", "topk"))
            out[row["layer"]] = f"{ratio}  {dense:.0f}/{topk:.0f}"
            title = "owl: outliers  dense/top-k %"
    return title, out


