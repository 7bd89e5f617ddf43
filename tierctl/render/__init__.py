"""Rich renderables shared by the CLI (`run`, `status`, `diff`, `show`) and the dashboard.

Pure functions of plain data (dicts of fractions, numpy tier maps, status objects): they read no
file and import no torch, so the dashboard's live panels and the CLI draw the same pictures.

Conventions the pictures share, so a reader learns them once:
- Tier colours: dense green, 2:4 amber, top-k red. Glyphs `█ ▒ ░` carry the same meaning without
  colour (their ink matches the weights kept: all, half, almost none), so bars stay readable when
  piped or under NO_COLOR.
- Tier maps are drawn with half-block cells: each character is one column of blocks and two rows
  of blocks (upper half = foreground, lower half = background), so blocks come out square.
  Maps wider than the space are downsampled to cells of f x f blocks showing the *most pruned* tier
  of the cell (`reduce="max"`, the default: a top-k block is never hidden) or the most common
  (`reduce="mode"`).
"""


from tierctl.render.bars import (
    allocation_notes,
    comp_bar,
    composition_bar,
    composition_legend,
    composition_percent,
    layer_composition_table,
    map_composition,
    matrix_sort_key,
    split_matrix_name,
)
from tierctl.render.charts import LineChart, ppl_chart, sparkline
from tierctl.render.grids import (
    DIFF_COLORS,
    TierMapDiffGrid,
    TierMapGrid,
    downsample,
    tier_map_diff_grid,
    tier_map_grid,
)
from tierctl.render.tables import (
    IterationsTable,
    iteration_state,
    iterations_table,
    step_state,
    transition_stats,
    transitions_table,
)

__all__ = [
    "allocation_notes",
    "DIFF_COLORS",
    "LineChart",
    "TierMapDiffGrid",
    "TierMapGrid",
    "comp_bar",
    "composition_bar",
    "composition_legend",
    "composition_percent",
    "downsample",
    "IterationsTable",
    "iteration_state",
    "iterations_table",
    "layer_composition_table",
    "map_composition",
    "matrix_sort_key",
    "ppl_chart",
    "sparkline",
    "split_matrix_name",
    "step_state",
    "tier_map_diff_grid",
    "tier_map_grid",
    "transition_stats",
    "transitions_table",
]
