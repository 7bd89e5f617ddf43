"""A damaged packed file is refused with one line naming it (exit 2), never loaded as a wrong model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file
from typer.testing import CliRunner

from tierctl.cli import app
from tierctl.errors import BadInput
from tierctl.export import load_packed
from tierctl.export.source import resolve_iteration
from tierctl.export.writer import export_iteration

runner = CliRunner()
Q = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture(scope="module")
def exported(campaigns, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("packed") / "x"
    export_iteration(resolve_iteration(str(campaigns["llama"].root)), out)
    return out


def damaged(exported: Path, tmp_path: Path, edit) -> Path:
    """A copy of the export whose packed file went through `edit(tensors, metadata)`."""
    out = tmp_path / "damaged"
    shutil.copytree(exported, out)
    path = out / "tierctl-packed.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {n: f.get_tensor(n) for n in f.keys()}
    edit(tensors, meta)
    save_file(tensors, str(path), metadata=meta)
    return out


def set_tier_code_3(t, m):
    t[Q + ".tiers"][0] |= 3


def swap_semi_positions(t, m):
    codes = t[Q + ".semi.codes"]
    codes[0] = (codes[0] & 0xF0) | 0b0001  # group 0 of the first SEMI row: positions (1, 0)


def topk_index_out_of_order(t, m):
    t[Q + ".topk.index"][0, :2] = t[Q + ".topk.index"][0, :2].flip(0)


def wrong_shape(t, m):
    t[Q + ".dense"] = t[Q + ".dense"][:-1]


def wrong_version(t, m):
    m["format_version"] = "2"


def wrong_matrix_shape(t, m):
    shapes = json.loads(m["matrices"])
    shapes[Q] = [shapes[Q][0], shapes[Q][1] + 16]
    m["matrices"] = json.dumps(shapes)


def missing_tensor(t, m):
    del t["model.norm.weight"]


@pytest.mark.parametrize(("edit", "words"), [
    (set_tier_code_3, "tier code 3"),
    (swap_semi_positions, "not strictly ascending"),
    (topk_index_out_of_order, "not strictly ascending"),
    (wrong_shape, "has shape"),
    (wrong_version, "format version 2"),
    (wrong_matrix_shape, "has shape"),
    (missing_tensor, "model.norm.weight is missing"),
])
def test_corruption_is_refused_naming_the_file(exported, tmp_path, edit, words):
    out = damaged(exported, tmp_path, edit)
    with pytest.raises(BadInput, match="tierctl-packed.safetensors") as err:
        load_packed(out)
    assert words in str(err.value)


def test_a_truncated_file_is_refused_by_the_cli_in_one_line(exported, tmp_path):
    out = tmp_path / "cut"
    shutil.copytree(exported, out)
    path = out / "tierctl-packed.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    result = runner.invoke(app, ["sample", str(out), "--prompt", "def", "--max-new-tokens", "2"])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "not a readable safetensors file" in result.stderr


def test_plain_transformers_refuses_a_packed_directory_instead_of_guessing(exported):
    from transformers import AutoModelForCausalLM

    with pytest.raises(OSError):
        AutoModelForCausalLM.from_pretrained(exported, local_files_only=True)
