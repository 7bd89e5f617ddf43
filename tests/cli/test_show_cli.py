"""`tierctl show A [--layer NAME]`: the block grid of one matrix and the composition of every matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tests.cli.campaign_fixtures import write_campaign, write_tier_file
from tierctl.cli import app

runner = CliRunner()


def two_layer_file(tmp_path: Path) -> Path:
    # Stored sorted by name (down before q, layers.1 before layers.10): show must still pick layer 0's q first.
    maps = {
        "model.layers.0.self_attn.q_proj": np.array([[0, 1], [2, 0]], dtype=np.uint8),
        "model.layers.0.mlp.down_proj": np.array([[1, 1, 1, 1], [2, 2, 2, 2]], dtype=np.uint8),
        "model.layers.1.self_attn.q_proj": np.array([[2, 2], [2, 2]], dtype=np.uint8),
        "model.layers.1.mlp.down_proj": np.array([[0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.uint8),
    }
    return write_tier_file(tmp_path / "tiers.safetensors", maps, iteration=3)


def test_show_draws_the_first_matrix_in_model_order_with_legend_and_composition(tmp_path: Path) -> None:
    path = two_layer_file(tmp_path)
    result = runner.invoke(app, ["show", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("model.layers.0.self_attn.q_proj  2x2 blocks")
    # piped output has no colour, so the grid uses one glyph per block
    assert lines[start + 1 : start + 5] == [
        "█▒",
        "░█",
        "1 character = 1 block",
        "█ dense 50.0%  ▒ 2:4 25.0%  ░ top-k 25.0%  (4 blocks)",
    ]
    assert lines[0] == f"{path}  4 matrices, block size 16"


def test_show_lists_the_composition_of_every_matrix_with_the_sparsity_its_tiers_imply(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(two_layer_file(tmp_path))])
    table = result.output.splitlines()[-3:]
    # layer 0 q: 1 SEMI (0.5) + 1 TOPK (1 - 10/256) of 4 blocks (the tie of 1.5 cells goes to 2:4); down: half
    # SEMI, half TOPK; the sparsity column is the mean over the layer's matrices
    q0 = (0.5 + (1 - 10 / 256)) / 4
    down0 = 0.5 * 0.5 + 0.5 * (1 - 10 / 256)
    assert table == [
        "layer  q       down    sparsity",
        f"    0  ███▒▒░  ▒▒▒░░░  {100 * (q0 + down0) / 2:7.1f}%",
        f"    1  ░░░░░░  ██████  {100 * (1 - 10 / 256) / 2:7.1f}%",
    ]


def test_show_layer_accepts_an_exact_name_or_a_glob(tmp_path: Path) -> None:
    path = two_layer_file(tmp_path)
    exact = runner.invoke(app, ["show", str(path), "--layer", "model.layers.1.mlp.down_proj"])
    assert "model.layers.1.mlp.down_proj  2x4 blocks\n████\n████\n" in exact.output
    glob = runner.invoke(app, ["show", str(path), "--layer", "*0.mlp.down*"])
    assert "model.layers.0.mlp.down_proj  2x4 blocks\n▒▒▒▒\n░░░░\n" in glob.output


def test_show_unknown_layer_is_bad_input(tmp_path: Path) -> None:
    path = two_layer_file(tmp_path)
    result = runner.invoke(app, ["show", str(path), "--layer", "lm_head"])
    assert result.exit_code == 2
    assert result.stderr == f"tierctl: --layer lm_head: no matrix of that name in {path} " \
                            "(e.g. model.layers.0.self_attn.q_proj)\n"


def test_show_downsamples_a_map_wider_than_width(tmp_path: Path) -> None:
    m = np.zeros((2, 40), dtype=np.uint8)
    m[1, 39] = 2
    path = write_tier_file(tmp_path / "t.safetensors", {"model.layers.0.mlp.up_proj": m})
    result = runner.invoke(app, ["show", str(path), "--width", "10"])
    assert "█████████░\n1 character = 4x4 blocks (most pruned tier)\n" in result.output


def test_show_campaign_at_iteration_and_campaign_alone_means_its_latest_tier_map(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="camp", iterations=3)
    at2 = runner.invoke(app, ["show", f"{layout.root}@2"])
    assert at2.exit_code == 0, at2.output
    assert at2.output.startswith("camp@2  6 matrices, block size 16\n")
    latest = runner.invoke(app, ["show", str(layout.root)])
    assert latest.output.startswith("camp@3  6 matrices, block size 16\n")


def test_show_iteration_without_tier_map_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="camp", iterations=1)
    result = runner.invoke(app, ["show", f"{layout.root}@2"])
    assert result.exit_code == 2
    assert result.stderr == f"tierctl: {layout.root}@2: iteration 2 has no tier map ({layout.tiers(2)} is missing)\n"


def test_show_of_something_that_is_neither_is_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(tmp_path / "nothing")])
    assert result.exit_code == 2
    assert "expected CAMPAIGN@N, CAMPAIGN or a tier-map .safetensors file" in result.stderr
    missing = runner.invoke(app, ["show", str(tmp_path / "gone.safetensors")])
    assert missing.stderr == f"tierctl: {tmp_path / 'gone.safetensors'}: no such tier map file\n"
