"""The converted-model cache is keyed on a GGUF file's content and keeps one conversion per file name."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tierctl.lm.models import HASHED_BYTES, convert_gguf, gguf_cache_path, prune_conversions


def write_gguf(path: Path, fill: float = 0.5, rows: int = 1024) -> Path:
    """A small real GGUF file (header, metadata, one float32 tensor of `rows` x 512) from the gguf package."""
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    w.add_name("tierctl-test")
    w.add_tensor("blk.0.ffn_up.weight", np.full((rows, 512), fill, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIERCTL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_same_file_elsewhere_with_another_mtime_has_the_same_cache_path(tmp_path: Path, cache: Path) -> None:
    first = write_gguf(tmp_path / "model.gguf")
    (tmp_path / "env2").mkdir()
    copy = Path(shutil.copyfile(first, tmp_path / "env2" / "model.gguf"))  # a new environment's copy
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))
    assert gguf_cache_path(copy) == gguf_cache_path(first)
    assert gguf_cache_path(first).parent == cache / "gguf"
    assert gguf_cache_path(first).name.startswith(f"model-{first.stat().st_size}-")


def test_another_content_of_the_same_size_has_another_cache_path(tmp_path: Path, cache: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    a = write_gguf(tmp_path / "a" / "model.gguf", fill=0.5)
    b = write_gguf(tmp_path / "b" / "model.gguf", fill=0.25)  # same header, other weights
    assert a.stat().st_size == b.stat().st_size > 2 * HASHED_BYTES
    assert gguf_cache_path(a) != gguf_cache_path(b)


def test_a_new_conversion_removes_the_older_ones_of_the_same_file_name(tmp_path: Path, cache: Path) -> None:
    keep = gguf_cache_path(write_gguf(tmp_path / "model.gguf"))
    older = [cache / "gguf" / "model-2097152-1733000000000000000",  # an mtime key of an earlier version
             cache / "gguf" / "model-2097152-0123456789abcdef"]
    others = [cache / "gguf" / "other-2097152-0123456789abcdef", cache / "gguf" / "model-notes"]
    for d in [keep, *older, *others]:
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
    assert prune_conversions(keep) == sorted(older)
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == sorted(p.name for p in [keep, *others])


def test_a_conversion_keyed_by_mtime_is_moved_to_its_content_key_not_converted_again(tmp_path: Path,
                                                                                     cache: Path) -> None:
    gguf = write_gguf(tmp_path / "model.gguf")
    st = gguf.stat()
    legacy = cache / "gguf" / f"model-{st.st_size}-{st.st_mtime_ns}"
    legacy.mkdir(parents=True)
    (legacy / "config.json").write_text('{"converted": "before"}')
    assert convert_gguf(gguf) == gguf_cache_path(gguf)
    assert (gguf_cache_path(gguf) / "config.json").read_text() == '{"converted": "before"}'
    assert not legacy.exists()
