"""`tierctl diff A B [--layer GLOB] [--json]`: tier transitions between two sets of tier maps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from tests.cli.campaign_fixtures import SHAPES, progressive_maps, write_campaign, write_tier_file
from tierctl.cli import app

runner = CliRunner()


def direct_count(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    """M[i][j] by walking every block: the definition of docs/cli.md, nothing shared with the code."""
    m = [[0, 0, 0] for _ in range(3)]
    for ta, tb in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True):
        m[ta][tb] += 1
    return m


def random_pair(tmp_path: Path, seed: int = 0) -> tuple[Path, Path, dict, dict]:
    rng = np.random.default_rng(seed)
    a = {name: rng.integers(0, 3, size=shape).astype(np.uint8) for name, shape in SHAPES.items()}
    b = {name: rng.integers(0, 3, size=shape).astype(np.uint8) for name, shape in SHAPES.items()}
    return write_tier_file(tmp_path / "a.safetensors", a), write_tier_file(tmp_path / "b.safetensors", b), a, b


def test_json_transitions_equal_a_direct_count_and_have_exactly_the_spec_keys(tmp_path: Path) -> None:
    pa, pb, a, b = random_pair(tmp_path)
    result = runner.invoke(app, ["diff", str(pa), str(pb), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"layers", "total"}
    assert set(out["layers"]) == set(SHAPES)
    for name in SHAPES:
        assert out["layers"][name] == {"transitions": direct_count(a[name], b[name])}
    total = np.sum([direct_count(a[n], b[n]) for n in SHAPES], axis=0).tolist()
    assert out["total"] == {"transitions": total}


def test_layer_glob_keeps_only_matching_matrices_and_totals_them(tmp_path: Path) -> None:
    pa, pb, a, b = random_pair(tmp_path, seed=1)
    result = runner.invoke(app, ["diff", str(pa), str(pb), "--json", "--layer", "*mlp.down_proj"])
    out = json.loads(result.stdout)
    downs = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert list(out["layers"]) == downs
    assert out["total"]["transitions"] == np.sum([direct_count(a[n], b[n]) for n in downs], axis=0).tolist()


def test_two_iterations_of_a_campaign_only_move_blocks_down(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="camp", iterations=3)
    result = runner.invoke(app, ["diff", f"{layout.root}@1", f"{layout.root}@3", "--json"])
    assert result.exit_code == 0, result.output
    total = json.loads(result.stdout)["total"]["transitions"]
    m1, m3 = progressive_maps(SHAPES, 0.10, 0.0), progressive_maps(SHAPES, 0.20, 0.15)
    assert total == np.sum([direct_count(m1[n], m3[n]) for n in SHAPES], axis=0).tolist()
    assert total[1][0] == total[2][0] == total[2][1] == 0
    text = runner.invoke(app, ["diff", f"{layout.root}@1", f"{layout.root}@3"]).stdout
    moved = sum(total[i][j] for i in range(3) for j in range(3) if i != j)
    blocks = sum(map(sum, total))
    assert f"blocks moved: {moved} of {blocks} ({100 * moved / blocks:.1f}%)" in text
    assert "promoted (denser in B" not in text


def test_promotions_are_flagged(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="camp", iterations=2)
    result = runner.invoke(app, ["diff", f"{layout.root}@2", f"{layout.root}@1"])  # backwards: blocks go up
    assert result.exit_code == 0, result.output
    m1, m2 = progressive_maps(SHAPES, 0.10, 0.0), progressive_maps(SHAPES, 0.10, 0.10)
    promoted = sum(int(np.sum(m2[n] > m1[n])) for n in SHAPES)
    bad = sum(1 for n in SHAPES if np.any(m2[n] > m1[n]))
    assert promoted > 0
    assert " ".join(result.stdout.split()).count(
        f"{promoted} blocks promoted (denser in B than in A) in {bad} matrices: impossible from an earlier to a "
        "later iteration of one campaign") == 1
    total_row = [line for line in result.stdout.splitlines() if line.startswith("total")][0]
    assert total_row.split()[7] == str(promoted)  # the promoted column of the per-matrix total


def test_one_matrix_also_draws_which_blocks_moved(tmp_path: Path) -> None:
    a = {"model.layers.0.mlp.up_proj": np.array([[0, 0, 1], [1, 2, 0]], dtype=np.uint8)}
    b = {"model.layers.0.mlp.up_proj": np.array([[0, 1, 2], [1, 2, 2]], dtype=np.uint8)}
    pa, pb = write_tier_file(tmp_path / "a.safetensors", a), write_tier_file(tmp_path / "b.safetensors", b)
    result = runner.invoke(app, ["diff", str(pa), str(pb)])
    assert "model.layers.0.mlp.up_proj  2x3 blocks\n·st\n··T\n" in result.stdout


def test_maps_of_different_shapes_are_refused_in_one_line(tmp_path: Path) -> None:
    pa, _, a, _ = random_pair(tmp_path)
    b = dict(a)
    b["model.layers.1.self_attn.k_proj"] = np.zeros((4, 4), dtype=np.uint8)
    pb = write_tier_file(tmp_path / "b2.safetensors", b)
    result = runner.invoke(app, ["diff", str(pa), str(pb)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "model.layers.1.self_attn.k_proj: tier maps differ in shape" in result.stderr
    assert "2x4" in result.stderr and "4x4" in result.stderr


def test_maps_of_different_matrices_are_refused_in_one_line(tmp_path: Path) -> None:
    pa, _, a, _ = random_pair(tmp_path)
    b = {n: m for n, m in a.items() if n != "model.layers.1.mlp.down_proj"}
    pb = write_tier_file(tmp_path / "b2.safetensors", b)
    result = runner.invoke(app, ["diff", str(pa), str(pb)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "no matrix model.layers.1.mlp.down_proj" in result.stderr


def test_maps_of_different_block_sizes_are_refused_in_one_line(tmp_path: Path) -> None:
    pa, _, a, _ = random_pair(tmp_path)
    pb = write_tier_file(tmp_path / "b32.safetensors", a, block_size=32)
    result = runner.invoke(app, ["diff", str(pa), str(pb)])
    assert result.exit_code == 2
    assert result.stderr == f"tierctl: block sizes differ: {pa} has 16x16 blocks, {pb} has 32x32\n"


def test_an_iteration_without_tier_map_is_refused_naming_the_file(tmp_path: Path) -> None:
    layout = write_campaign(tmp_path, name="camp", iterations=1)
    result = runner.invoke(app, ["diff", f"{layout.root}@1", f"{layout.root}@2"])
    assert result.exit_code == 2
    assert result.stderr == f"tierctl: {layout.root}@2: iteration 2 has no tier map ({layout.tiers(2)} is missing)\n"


def test_diff_runs_without_importing_torch(tmp_path: Path) -> None:
    pa, pb, _, _ = random_pair(tmp_path)
    code = (
        "import sys; from typer.testing import CliRunner; from tierctl.cli import app; "
        f"r = CliRunner().invoke(app, ['diff', {str(pa)!r}, {str(pb)!r}]); "
        "print(r.exit_code, 'torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["0", "False", "False"]
