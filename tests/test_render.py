"""The shared Rich renderables, rendered to a recording console: exact text, and colours where they carry meaning."""

from __future__ import annotations

import io
from types import SimpleNamespace as NS

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.panel import Panel

from tierctl.core.events import Event
from tierctl.core.live_model import LiveModel
from tierctl.core.vocab import TIER_COLORS
from tierctl.errors import BadInput
from tierctl.render import (
    DIFF_COLORS,
    LineChart,
    composition_bar,
    composition_legend,
    downsample,
    iteration_state,
    iterations_table,
    layer_composition_table,
    matrix_sort_key,
    ppl_chart,
    sparkline,
    split_matrix_name,
    tier_map_diff_grid,
    tier_map_grid,
    transition_stats,
    transitions_table,
)
from tierctl.render.live import step_line


def render(renderable: object, width: int = 60) -> str:
    console = Console(record=True, width=width, color_system="truecolor", file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def segments(renderable: object, width: int = 60) -> list:
    console = Console(width=width, color_system="truecolor", file=io.StringIO())
    return [s for s in console.render(renderable) if s.text.strip()]


# --- composition bars -----------------------------------------------------------------------------


def test_composition_bar_draws_dense_then_semi_then_topk_in_proportion() -> None:
    assert render(composition_bar(0.5, 0.3, 0.2, 10)) == "█████▒▒▒░░\n"


def test_composition_bar_gives_the_leftover_cell_to_the_largest_remainder_then_the_denser_tier() -> None:
    assert render(composition_bar(1 / 3, 1 / 3, 1 / 3, 10)) == "████▒▒▒░░░\n"
    assert render(composition_bar(0.04, 0.06, 0.9, 10)) == "▒░░░░░░░░░\n"


def test_composition_bar_colours_each_tier() -> None:
    segs = segments(composition_bar(0.5, 0.25, 0.25, 8))
    assert [(s.text, s.style.color.name) for s in segs] == [
        ("████", TIER_COLORS[0]),
        ("▒▒", TIER_COLORS[1]),
        ("░░", TIER_COLORS[2]),
    ]


def test_composition_bar_of_nothing_is_a_dim_placeholder() -> None:
    assert render(composition_bar(0, 0, 0, 6)) == "······\n"


@given(
    st.floats(0, 1, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
    st.floats(0, 1, allow_nan=False),
    st.integers(1, 120),
)
def test_composition_bar_always_fills_exactly_its_width_within_one_cell_per_tier(d, s, t, width) -> None:
    text = composition_bar(d, s, t, width).plain
    assert len(text) == width
    total = d + s + t
    if total > 0:
        for glyph, frac in zip("█▒░", (d, s, t), strict=True):
            assert abs(text.count(glyph) - frac / total * width) < 1


def test_composition_legend_with_and_without_fractions() -> None:
    assert render(composition_legend()) == "█ dense  ▒ 2:4  ░ top-k\n"
    comp = {"dense": 0.5, "semi": 0.3, "topk": 0.2}
    assert render(composition_legend(comp, blocks=40)) == "█ dense 50.0%  ▒ 2:4 30.0%  ░ top-k 20.0%  (40 blocks)\n"


def test_matrix_names_split_into_decoder_layer_and_kind() -> None:
    assert split_matrix_name("model.layers.12.mlp.down_proj") == (12, "down")
    assert split_matrix_name("model.decoder.layers.3.fc1") == (3, "fc1")
    assert split_matrix_name("lm_head") == (None, "lm_head")


def test_matrices_sort_in_model_order_not_by_name() -> None:
    names = ["model.layers.10.self_attn.q_proj", "model.layers.2.mlp.down_proj", "model.layers.2.self_attn.v_proj",
             "model.layers.2.mlp.gate_proj", "lm_head", "model.layers.2.self_attn.q_proj"]
    assert sorted(names, key=matrix_sort_key) == [
        "model.layers.2.self_attn.q_proj", "model.layers.2.self_attn.v_proj", "model.layers.2.mlp.gate_proj",
        "model.layers.2.mlp.down_proj", "model.layers.10.self_attn.q_proj", "lm_head"]


def test_layer_composition_table_has_one_row_per_decoder_layer_and_one_bar_per_matrix() -> None:
    per_layer = {
        f"model.layers.{layer}.{name}": {"dense": d, "semi": s, "topk": t, "sparsity": sp}
        for layer, (d, s, t, sp) in enumerate([(1.0, 0, 0, 0.0), (0.5, 0.5, 0, 0.25), (0.25, 0.25, 0.5, 0.6055)])
        for name in ("self_attn.q_proj", "mlp.down_proj")
    }
    assert render(layer_composition_table(per_layer, bar_width=4)) == (
        "layer  q     down  sparsity\n"
        "    0  ████  ████      0.0%\n"
        "    1  ██▒▒  ██▒▒     25.0%\n"
        "    2  █▒░░  █▒░░     60.6%\n"
    )


def test_layer_composition_table_leaves_matrices_not_yet_pruned_blank() -> None:
    per_layer = {
        "model.layers.0.self_attn.q_proj": {"dense": 1.0, "semi": 0.0, "topk": 0.0, "sparsity": 0.0},
        "model.layers.0.mlp.down_proj": {"dense": 0.0, "semi": 1.0, "topk": 0.0, "sparsity": 0.5},
        "model.layers.1.self_attn.q_proj": {"dense": 0.0, "semi": 0.0, "topk": 1.0, "sparsity": 0.96},
    }
    assert render(layer_composition_table(per_layer, bar_width=4)) == (
        "layer  q     down  sparsity\n"
        "    0  ████  ▒▒▒▒     25.0%\n"
        "    1  ░░░░           96.0%\n"
    )


# --- tier-map grids -------------------------------------------------------------------------------


def test_downsample_max_keeps_the_most_pruned_tier_and_mode_the_most_common() -> None:
    m = np.array([[0, 0, 1, 1], [0, 2, 1, 1], [0, 0, 0, 1], [0, 0, 1, 0], [2, 2, 0, 0]], dtype=np.uint8)
    assert downsample(m, 2, "max").tolist() == [[2, 1], [0, 1], [2, 0]]
    # cell (1, 1) holds 0,1,1,0: a tie goes to the more pruned tier; the edge row holds 2 blocks only
    assert downsample(m, 2, "mode").tolist() == [[0, 1], [0, 1], [2, 0]]


def test_grid_in_glyph_mode_draws_one_glyph_per_block_with_scale_and_legend() -> None:
    m = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    assert render(tier_map_grid(m, title="q_proj", glyphs=True)) == (
        "q_proj  2x3 blocks\n"
        "█▒░\n"
        "░▒█\n"
        "1 character = 1 block\n"
        "█ dense 33.3%  ▒ 2:4 33.3%  ░ top-k 33.3%  (6 blocks)\n"
    )


def test_grid_half_blocks_show_two_block_rows_per_character_in_foreground_and_background() -> None:
    m = np.array([[0, 1, 2], [2, 1, 0], [1, 1, 1]], dtype=np.uint8)
    grid = tier_map_grid(m, title="t")
    assert render(grid) == (
        "t  3x3 blocks\n"
        "▀▀▀\n"
        "▀▀▀\n"
        "1 character = 2 blocks (upper, lower half)\n"
        "█ dense 22.2%  █ 2:4 55.6%  █ top-k 22.2%  (9 blocks)\n"
    )
    cells = [(s.style.color.name, s.style.bgcolor.name if s.style.bgcolor else None)
             for s in segments(grid) if "▀" in s.text for _ in s.text]
    c = TIER_COLORS
    assert cells == [(c[0], c[2]), (c[1], c[1]), (c[2], c[0]), (c[1], None), (c[1], None), (c[1], None)]


def test_grid_wider_than_the_space_is_downsampled_and_says_so() -> None:
    m = np.zeros((4, 8), dtype=np.uint8)
    m[3, 7] = 2
    text = render(tier_map_grid(m, max_width=4, glyphs=True), width=80)
    assert text.splitlines()[1:4] == [
        "████",
        "███░",
        "1 character = 2x2 blocks (most pruned tier)",
    ]


def test_grid_fits_the_console_when_no_width_is_given() -> None:
    m = np.ones((2, 100), dtype=np.uint8)
    body = render(tier_map_grid(m, max_width=None, glyphs=True), width=30).splitlines()[1]
    assert body == "▒" * 25  # 100 blocks in cells of 4 columns


def test_diff_grid_marks_each_moved_block_and_counts_transitions() -> None:
    a = np.array([[0, 0, 1, 2], [1, 1, 0, 2]], dtype=np.uint8)
    b = np.array([[0, 1, 2, 2], [2, 1, 0, 1]], dtype=np.uint8)
    assert render(tier_map_diff_grid(a, b, title="d", glyphs=True), width=80) == (
        "d  2x4 blocks\n"
        "·st·\n"
        "t··!\n"
        "1 character = 1 block\n"
        "s dense→2:4 1  t 2:4→top-k 2  T dense→top-k 0  ! promoted 1  unchanged 4 (dim)\n"
    )


def test_diff_grid_colours_unchanged_blocks_dim_and_promotions_cyan() -> None:
    a = np.array([[0, 2]], dtype=np.uint8)
    b = np.array([[0, 1]], dtype=np.uint8)
    segs = [s for s in segments(tier_map_diff_grid(a, b, glyphs=True), width=80)]
    assert [(s.text, s.style.color.name) for s in segs[1:3]] == [("·", DIFF_COLORS[0]), ("!", DIFF_COLORS[7])]


def test_diff_grid_refuses_maps_of_different_shapes() -> None:
    with pytest.raises(BadInput, match=r"\[2, 2\] vs \[2, 3\]"):
        tier_map_diff_grid(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))


# --- tables and charts ----------------------------------------------------------------------------


ITERATIONS = [
    NS(iteration=1, steps={"prune": "done", "finetune": "done", "eval": "done"},
       composition={"dense": 0.9, "semi": 0.1, "topk": 0.0}, sparsity=0.05, ppl_pruned=41.234, ppl=30.5),
    NS(iteration=2, steps={"prune": "done", "finetune": "running", "eval": "pending"},
       composition={"dense": 0.8, "semi": 0.1, "topk": 0.1}, sparsity=0.1461, ppl_pruned=80.0, ppl=None),
    NS(iteration=3, steps={"prune": "failed", "finetune": "pending", "eval": "pending"},
       composition=None, sparsity=None, ppl_pruned=None, ppl=None),
]


def lines(renderable: object, width: int) -> list[str]:
    """Rendered lines without trailing blanks (table padding), so expectations stay visible in the source."""
    return [line.rstrip() for line in render(renderable, width).splitlines()]


def test_wide_iterations_table_has_a_column_per_step_composition_sparsity_and_both_perplexities() -> None:
    assert lines(iterations_table(NS(iterations=ITERATIONS), bar_width=10), 100) == [
        "iter  prune     finetune   eval       dense/2:4/top-k %    sparsity  ppl pruned    ppl",
        "─" * 86,
        "   1  ✓ done    ✓ done     ✓ done     █████████▒ 90/10/0       5.0%       41.23  30.50",
        "   2  ✓ done    ▶ running  · pending  ████████▒░ 80/10/10     14.6%       80.00      -",
        "   3  ✗ failed  · pending  · pending  ·········· -                -           -      -",
    ]


def test_iterations_table_at_80_columns_sums_the_steps_up_in_one_column() -> None:
    assert lines(iterations_table(ITERATIONS), 80) == [
        "iter  steps       dense/2:4/top-k %          sparsity  ppl pruned    ppl",
        "─" * 72,
        "   1  ✓ done      ██████████████▒▒ 90/10/0       5.0%       41.23  30.50",
        "   2  ▶ finetune  █████████████▒▒░ 80/10/10     14.6%       80.00      -",
        "   3  ✗ prune     ················ -                -           -      -",
    ]


def test_iterations_table_at_60_columns_keeps_every_number() -> None:
    assert lines(iterations_table(ITERATIONS), 60) == [
        "iter  steps       D/2:4/T %        sparse  pruned    ppl",
        "─" * 56,
        "   1  ✓ done      █████▒ 90/10/0     5.0%   41.23  30.50",
        "   2  ▶ finetune  █████▒ 80/10/10   14.6%   80.00      -",
        "   3  ✗ prune     ······ -              -       -      -",
    ]


@pytest.mark.parametrize(
    ("steps", "text", "style"),
    [
        (("done", "done", "done"), "✓ done", "green"),
        (("done", "done", "pending"), "✓ finetune", "yellow"),
        (("done", "running", "pending"), "▶ finetune", "bold yellow"),
        (("done", "failed", "pending"), "✗ finetune", "bold red"),
        (("pending", "pending", "pending"), "· pending", "dim"),
    ],
)
def test_iteration_state_names_the_step_that_matters(steps: tuple[str, ...], text: str, style: str) -> None:
    cell = iteration_state(dict(zip(("prune", "finetune", "eval"), steps, strict=True)))
    assert (cell.plain, str(cell.style)) == (text, style)


def test_transition_stats_count_moves_agreement_and_promotions() -> None:
    m = [[5, 2, 1], [1, 3, 2], [0, 1, 4]]
    assert transition_stats(m) == {"blocks": 19, "moved": 7, "agreement": 12 / 19, "promoted": 2}


def test_transitions_table_flags_promotions_in_red_and_sums_a_total() -> None:
    rows = {"l0.q": [[5, 2, 1], [0, 3, 2], [0, 0, 4]], "l0.k": [[1, 0, 0], [1, 0, 0], [0, 0, 0]]}
    table = transitions_table(rows)
    assert lines(table, 100) == [
        "matrix  D=D  D→S  D→T  S=S  S→T  T=T  promoted  moved   agree",
        "─" * 61,
        "l0.q      5    2    1    3    2    4         0      5   70.6%",
        "l0.k      1    0    0    0    0    0         1      1   50.0%",
        "",
        "total     6    2    1    3    2    4         1      6   68.4%",
    ]
    segs = segments(table, width=100)
    red = {s.text.strip() for s in segs if s.style and s.style.color and s.style.color.name == "red"}
    assert red == {"l0.k", "1", "total"}


def test_transitions_table_folds_long_names_and_keeps_every_count_whole() -> None:
    rows = {"model.layers.0.self_attn.q_proj": [[10, 4, 0], [0, 0, 2], [0, 0, 0]]}
    assert lines(transitions_table(rows), 80) == [
        "matrix                     D=D  D→S  D→T  S=S  S→T  T=T  promoted  moved   agree",
        "─" * 80,
        "model.layers.0.self_attn.   10    4    0    0    2    0         0      6   62.5%",
        "q_proj",
    ]


def test_sparkline_scales_from_lowest_to_highest_value() -> None:
    assert render(sparkline([1, 2, 3, 4, 5, 6, 7, 8])) == "▁▂▃▄▅▆▇█\n"
    assert render(sparkline([2.0, 2.0, 2.0])) == "▄▄▄\n"
    assert render(sparkline([1.0, None, float("nan"), 3.0])) == "▁  █\n"


def test_sparkline_averages_buckets_when_there_are_more_values_than_width() -> None:
    # buckets of two: means 1, 2.5, 8 -> bottom, a third of the way, top
    assert sparkline([0, 2, 2, 3, 8, 8], width=3).plain == "▁▃█"


def test_line_chart_places_markers_joins_them_and_labels_the_axes() -> None:
    chart = LineChart({"a": [(1, 10), (2, 20), (3, 30)], "b": [5, 15]}, height=4, title="t", x_label="it")
    assert render(chart, width=30) == (
        "t\n"
        "30│                      ····●\n"
        "  │              ···●····     \n"
        "  │     ····◆····             \n"
        " 5│◆····                      \n"
        "  └───────────────────────────\n"
        "   0           it            3\n"
        "● a  ◆ b\n"
    )


def test_line_chart_without_points_says_so() -> None:
    assert render(LineChart({"ppl": [None, None]}, title="ppl")) == "ppl\nno data yet\n"


def test_a_matrix_smaller_than_one_block_draws_an_empty_grid() -> None:
    empty = np.zeros((0, 4), dtype=np.uint8)
    assert render(tier_map_grid(empty, title="tiny", glyphs=True)) == (
        "tiny  0x4 blocks\n1 character = 1 block\n█ dense 0.0%  ▒ 2:4 0.0%  ░ top-k 0.0%  (0 blocks)\n"
    )
    assert "promoted 0" in render(tier_map_diff_grid(empty, empty), width=100)


def test_line_chart_skips_points_whose_x_is_not_known_yet() -> None:
    chart = LineChart({"ppl": [(0.05, 20.0), (None, 18.0)]}, height=2)
    assert chart.series["ppl"] == [(0.05, 20.0)]


def test_iterations_table_puts_the_reference_first_and_adds_ratio_acc_and_interval_as_width_allows(tmp_path) -> None:
    import json

    from tests.tui.fixtures import demo_campaign
    from tierctl.campaign.state import campaign_status

    layout = demo_campaign(tmp_path)  # reference ppl 30.25 [28.5, 32.1]; iteration 1: 41.5 [39.2, 43.9]
    for n, acc in ((0, 0.41), (1, 0.43)):
        m = json.loads(layout.metrics(n).read_text())
        layout.metrics(n).write_text(json.dumps({**m, "zeroshot": {"tasks": {}, "mean_acc": acc}}))
    status = campaign_status(layout)
    heads = {w: lines(iterations_table(status), w)[0].split() for w in (130, 96, 80, 60)}
    assert heads[130][-4:] == ["interval", "x", "ref", "acc"] and "finetune" in heads[130]
    assert heads[96][1] == "steps" and heads[96][-4:] == ["interval", "x", "ref", "acc"]
    assert heads[80][-3:] == ["ppl", "x", "ref"]
    assert heads[60][-1] == "ppl"
    row0, row1 = lines(iterations_table(status), 96)[2:4]
    assert row0.split() == ["0", "✓", "done", "reference", "0.0%", "-", "30.25", "28.50-32.10", "1.00x", "0.410"]
    assert row1.split()[-4:] == ["41.50", "39.20-43.90", "1.37x", "0.430"]


def test_the_ppl_chart_by_sparsity_reads_percent_not_fractions() -> None:
    its = [NS(iteration=1, sparsity=0.05034, ppl_pruned=40.0, ppl=30.0),
           NS(iteration=2, sparsity=0.1450, ppl_pruned=60.0, ppl=45.0)]
    out = Console(width=60, color_system=None, record=True)
    out.print(ppl_chart(its, x="sparsity", height=6))
    text = out.export_text()
    assert "sparsity %" in text and "0.05" not in text


def _failed_prune_then_finetune() -> LiveModel:
    """A prune that failed, then a fine-tune a third of the way (12,000 of 40,000 steps)."""
    def ev(step: str, event: str, t: float, **data: object) -> Event:
        return Event(t=t, iter=2, step=step, event=event, data=data)

    m = LiveModel()
    m.apply([ev("prune", "start", 1.0), ev("prune", "end", 3.0, status="failed", error="out of memory at layer 3"),
             ev("finetune", "start", 4.0), ev("finetune", "progress", 5.0, done=12000, total=40000, unit="steps")])
    return m


@pytest.mark.parametrize("width", [100, 80, 60])
def test_step_names_and_counts_are_never_cut_in_a_narrow_panel(width: int) -> None:
    text = render(Panel(step_line(_failed_prune_then_finetune(), width, now=10.0)), width=width)
    lines = [line.strip("│ ") for line in text.splitlines()]
    assert lines[1].split()[:3] == ["✗", "failed", "prune"] and lines[1].endswith("0:02")
    assert lines[2].split()[:3] == ["▶", "running", "finetune"] and lines[2].endswith("12000/40000 steps 0:06")
    assert lines[3] == "· pending eval"
    assert lines[4] == "prune: out of memory at layer 3"
    assert "…" not in text


def test_a_small_tier_map_scaled_up_fills_the_width_with_square_blocks() -> None:
    m = np.zeros((36, 36), dtype=np.uint8)
    m[:, 18:] = 2  # left half dense, right half top-k
    lines = render(tier_map_grid(m, max_width=95, scale_up=60), width=95).splitlines()
    body = [line for line in lines if "▀" in line]
    assert len(body) == 36  # 72 half-rows: each block 2 half-rows tall...
    assert {len(line.rstrip()) for line in body} == {72}  # ...and 2 characters wide
    assert "1 block = 2 characters x 2 half-rows" in lines[-2]
    assert "36x36 blocks" in lines[0]


def test_a_tier_map_is_scaled_up_only_as_far_as_its_lines_allow() -> None:
    m = np.zeros((8, 4), dtype=np.uint8)
    assert len([line for line in render(tier_map_grid(m, max_width=95, scale_up=12), width=95).splitlines()
                if "▀" in line]) == 12  # 3x: 24 half-rows, not 23x (the width would allow 92 columns)
    assert len([line for line in render(tier_map_grid(m, max_width=95), width=95).splitlines()
                if "▀" in line]) == 4  # not asked: 1 character per block
