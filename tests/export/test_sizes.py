"""The size table of a packed export, against a count made here from the tier maps alone."""

from __future__ import annotations

import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file as load_numpy
from typer.testing import CliRunner

from tierctl.cli import app

runner = CliRunner()


def expected_bytes(tiers_path, model_dir, value_bytes: int, b: int = 16, k: int = 10) -> tuple[int, int, int]:
    """(packed, dense, minimum) bytes of the prunable matrices, counted block by block with numpy."""
    shapes = {}
    for f in model_dir.glob("*.safetensors"):
        with safe_open(str(f), framework="np") as st:
            shapes.update({n: tuple(st.get_slice(n).get_shape()) for n in st.keys()})
    packed = dense = minimum_bits = 0
    for name, tiers in load_numpy(str(tiers_path)).items():
        out, n_in = shapes[name + ".weight"]
        counts = [int(np.sum(tiers == t)) for t in range(3)]
        edges = out * n_in - tiers.size * b * b
        values = counts[0] * b * b + counts[1] * b * b // 2 + counts[2] * k + edges
        packed += values * value_bytes + -(-tiers.size // 4) + counts[1] * b * b // 8 + counts[2] * k  # codes, 8-bit
        dense += out * n_in * value_bytes
        minimum_bits += values * 8 * value_bytes + 2 * tiers.size + 2 * counts[1] * b * b // 2 + 8 * counts[2] * k
    return packed, dense, -(-minimum_bits // 8)


def test_size_table_matches_a_count_from_the_tier_maps(campaigns, tmp_path):
    layout = campaigns["opt"]  # partial edge strips count as dense values
    result = runner.invoke(app, ["export", f"{layout.root}@1", "--out", str(tmp_path / "x"), "--json"])
    assert result.exit_code == 0, result.output
    sizes = json.loads(result.stdout)["sizes"]
    packed, dense, minimum = expected_bytes(layout.tiers(1), layout.model(1), 4)
    assert (sizes["prunable_packed"], sizes["prunable_dense"], sizes["prunable_minimum"]) == (packed, dense, minimum)
    assert sizes["prunable_packed"] <= 1.02 * sizes["prunable_minimum"]
    on_disk = sum(f.stat().st_size for f in (tmp_path / "x").iterdir())
    assert sizes["directory_packed"] == on_disk


def test_bfloat16_at_35_45_20_takes_about_9_8_bits_per_weight(campaigns, tmp_path):
    layout = campaigns["llama-bf16"]  # tiny-llama: full blocks only, so the bits are the tiers' alone
    result = runner.invoke(app, ["export", str(layout.root), "--out", str(tmp_path / "x"), "--json"])
    assert result.exit_code == 0, result.output
    sizes = json.loads(result.stdout)["sizes"]
    packed, dense, _ = expected_bytes(layout.tiers(1), layout.model(1), 2)
    assert sizes["prunable_packed"] == packed and sizes["prunable_dense"] == dense
    assert 9.5 < sizes["bits_per_weight"] < 10.1


def test_the_table_is_printed_with_packed_dense_and_minimum_bytes(campaigns, tmp_path):
    layout = campaigns["llama-bf16"]
    result = runner.invoke(app, ["export", str(layout.root), "--out", str(tmp_path / "x")], terminal_width=100)
    assert result.exit_code == 0, result.output
    packed, dense, minimum = expected_bytes(layout.tiers(1), layout.model(1), 2)
    prunable = next(line for line in result.stdout.splitlines() if line.startswith("│ prunable"))
    for n in (packed, dense, minimum):
        assert f"{n / 1e6:,.2f} MB" in prunable
    assert "directory" in result.stdout and "bits per weight" in result.stdout
