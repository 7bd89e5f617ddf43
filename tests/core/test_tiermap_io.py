"""Reading tier-map files with numpy only (the path diff / show / report take, without torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tierctl.core.tiermap_io import load_tier_maps_numpy
from tierctl.errors import BadInput


def write(path: Path, maps: dict[str, np.ndarray], **meta: str) -> Path:
    save_file(maps, str(path), metadata=meta or None)
    return path


def test_reads_maps_and_metadata_as_ints(tmp_path: Path) -> None:
    q = np.array([[0, 1], [2, 0]], dtype=np.uint8)
    path = write(tmp_path / "t.safetensors", {"model.layers.0.self_attn.q_proj": q},
                 block_size="16", topk_per_block="10", iteration="3")
    maps, meta = load_tier_maps_numpy(path)
    assert list(maps) == ["model.layers.0.self_attn.q_proj"]
    assert maps["model.layers.0.self_attn.q_proj"].tolist() == [[0, 1], [2, 0]]
    assert meta == {"block_size": 16, "topk_per_block": 10, "iteration": 3}


def test_missing_file_is_bad_input_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"nope\.safetensors: no such tier map file"):
        load_tier_maps_numpy(tmp_path / "nope.safetensors")


def test_garbage_file_is_bad_input_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(BadInput, match=r"junk\.safetensors: not a readable safetensors file"):
        load_tier_maps_numpy(path)


@pytest.mark.parametrize(
    ("tensor", "what"),
    [
        (np.zeros((2, 2), dtype=np.float32), "float32 with shape \\[2, 2\\]"),
        (np.zeros((2, 2, 2), dtype=np.uint8), "uint8 with shape \\[2, 2, 2\\]"),
    ],
)
def test_tensors_that_are_not_2d_uint8_are_refused(tmp_path: Path, tensor: np.ndarray, what: str) -> None:
    path = write(tmp_path / "t.safetensors", {"w": tensor})
    with pytest.raises(BadInput, match=f"t.safetensors: tensor 'w' is {what}, expected 2-D uint8"):
        load_tier_maps_numpy(path)


def test_tier_values_above_topk_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "t.safetensors", {"w": np.array([[0, 3]], dtype=np.uint8)})
    with pytest.raises(BadInput, match="tensor 'w' holds tier 3"):
        load_tier_maps_numpy(path)


def test_non_integer_metadata_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "t.safetensors", {"w": np.zeros((1, 1), dtype=np.uint8)}, block_size="sixteen")
    with pytest.raises(BadInput, match="metadata block_size='sixteen' is not an integer"):
        load_tier_maps_numpy(path)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "t.safetensors", {})
    with pytest.raises(BadInput, match="holds no tier maps"):
        load_tier_maps_numpy(path)


def test_reading_does_not_import_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path / "t.safetensors", {"w": np.zeros((1, 1), dtype=np.uint8)})
    code = (
        "import sys; from tierctl.core.tiermap_io import load_tier_maps_numpy; "
        f"load_tier_maps_numpy({str(path)!r}); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
