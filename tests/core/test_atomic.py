"""Atomic writes never leave a half-written file under the real name, and crashes are recoverable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tierctl.core.atomic import atomic_dir, atomic_path, atomic_write_text, clean_temporaries


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_dir_replaces_a_directory_whole(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    with atomic_dir(target) as d:
        (d / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_crash_between_the_two_renames_is_undone_by_cleanup(tmp_path: Path) -> None:
    # State after atomic_dir moved the old model aside but died before renaming the new one in.
    aside = tmp_path / ".tmp-old-model.4242"
    aside.mkdir()
    (aside / "weights").write_text("pruned")
    new = tmp_path / ".tmp-model.abcd"
    new.mkdir()
    (new / "weights").write_text("half written")
    clean_temporaries(tmp_path)
    assert (tmp_path / "model" / "weights").read_text() == "pruned"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_cleanup_drops_the_old_copy_when_the_new_directory_is_in_place(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights").write_text("fine-tuned")
    aside = tmp_path / ".tmp-old-model.4242"
    aside.mkdir()
    clean_temporaries(tmp_path)
    assert (tmp_path / "model" / "weights").read_text() == "fine-tuned"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_written_files_get_the_mode_a_plain_open_would_give(tmp_path: Path) -> None:
    target = tmp_path / "schedule.csv"
    atomic_write_text(target, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_safetensors_metadata_is_written_in_sorted_order_so_equal_content_gives_equal_bytes(tmp_path: Path) -> None:
    import json

    import torch
    from safetensors.torch import load_file, save

    from tierctl.core.atomic import atomic_write_safetensors, canonical_safetensors

    tensors = {"b.w": torch.arange(6, dtype=torch.uint8).reshape(2, 3), "a.w": torch.ones(2, 2)}
    meta = {"topk_per_block": "10", "iteration": "3", "block_size": "16", "z": "last", "a": "first"}
    blob = canonical_safetensors(save(tensors, metadata=meta))
    n = int.from_bytes(blob[:8], "little")
    assert list(json.loads(blob[8:8 + n])["__metadata__"]) == ["a", "block_size", "iteration", "topk_per_block", "z"]
    for i in range(5):  # the writer's hash-map order changes from map to map; the file does not
        atomic_write_safetensors(tmp_path / f"{i}.safetensors", tensors, meta)
        assert (tmp_path / f"{i}.safetensors").read_bytes() == blob
    back = load_file(str(tmp_path / "0.safetensors"))
    assert all(torch.equal(back[k], v) for k, v in tensors.items())


def test_json_files_hold_null_for_nan_and_infinity(tmp_path: Path) -> None:
    from tierctl.core.atomic import atomic_write_json

    atomic_write_json(tmp_path / "m.json", {"ppl": float("nan"), "x": [1.5, float("inf")], "d": {"y": -float("inf")}})
    assert (tmp_path / "m.json").read_text() == ('{\n  "ppl": null,\n  "x": [\n    1.5,\n    null\n  ],\n  "d": {\n'
                                                '    "y": null\n  }\n}\n')


def test_remove_path_of_a_symlink_removes_the_link_only_and_leaves_nothing_behind(tmp_path: Path) -> None:
    from tierctl.core.atomic import remove_path

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    camp = tmp_path / "camp"
    camp.mkdir()
    (camp / "iter1").symlink_to(outside)
    remove_path(camp / "iter1")
    assert list(camp.iterdir()) == []
    assert (outside / "keep.txt").read_text() == "mine"
