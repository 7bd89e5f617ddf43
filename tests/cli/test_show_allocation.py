"""`tierctl show` with an OWL allocation: each layer's outlier ratio and targets beside its composition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tests.cli.campaign_fixtures import write_tier_file
from tierctl.cli import app
from tierctl.render import allocation_notes

runner = CliRunner()
OWL = {"method": "owl", "m": 5.0, "lambda": 0.08, "ratios_from": 1, "blocks_off": {"dense": 0, "topk": 0},
       "layers": [{"layer": 0, "outlier_ratio": 0.0123, "shift": -0.08, "dense": 0.5, "topk": 0.25},
                  {"layer": 1, "outlier_ratio": 0.0456, "shift": 0.08, "dense": 0.75, "topk": 0.0}]}


def iteration_dir(tmp_path: Path, allocation: dict | None) -> Path:
    maps = {
        "model.layers.0.self_attn.q_proj": np.array([[0, 1], [2, 0]], dtype=np.uint8),
        "model.layers.1.self_attn.q_proj": np.array([[0, 0], [0, 1]], dtype=np.uint8),
    }
    if allocation is not None:
        (tmp_path / "metrics.json").write_text(json.dumps({"iteration": 1, "allocation": allocation}))
    return write_tier_file(tmp_path / "tiers.safetensors", maps, iteration=1)


def test_show_adds_each_layers_outlier_ratio_and_dense_topk_targets(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(iteration_dir(tmp_path, OWL))])
    assert result.exit_code == 0, result.output
    table = result.output.splitlines()[-3:]
    assert table[0].endswith("sparsity  owl: outliers  dense/top-k %")
    assert table[1].endswith("  1.23%  50/25") and table[2].endswith("  4.56%  75/0")


def test_show_of_a_uniform_iteration_has_no_owl_column(tmp_path: Path) -> None:
    result = runner.invoke(app, ["show", str(iteration_dir(tmp_path, {"method": "uniform"}))])
    assert result.exit_code == 0, result.output
    assert "owl" not in result.output


def test_baseline_notes_give_each_layers_sparsity():
    title, notes = allocation_notes({"method": "owl", "layers": [{"layer": 0, "outlier_ratio": 0.01, "sparsity": 0.62},
                                                                {"layer": 1, "outlier_ratio": 0.03, "sparsity": 0.78}]})
    assert (title, notes) == ("owl: outliers  target", {0: "1.00%  62.0% sparse", 1: "3.00%  78.0% sparse"})
    assert allocation_notes(None) is None and allocation_notes({"method": "uniform"}) is None
