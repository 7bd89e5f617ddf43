"""Atomic writes: a crash leaves the old file or the new one, never a half-written one.

Written to a temporary name (prefix `.tmp-`) in the same directory, fsynced, then renamed over the
target. Directories (a saved model) are built under a temporary name and renamed the same way.
State derivation ignores `.tmp-*` names. Lives in core so core writers (tier maps, schedules) use it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _chmod_default(path: str | Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create owner-only files; give the final file the mode a plain open() would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        _chmod_default(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN / infinity replaced by None, so it serializes as strict JSON (`null`).

    Python's json writes bare `NaN` / `Infinity` tokens, which no other JSON reader accepts; a
    non-finite number means "no value" to every reader of campaign files (state, report, dashboard).
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def canonical_safetensors(blob: bytes) -> bytes:
    """The same safetensors file with its `__metadata__` keys in sorted order.

    The safetensors writer keeps metadata in a hash map, so two identical saves differ byte for byte
    (the order changes per process). Sorted, equal content gives equal bytes and a checksum is a valid
    way to compare campaigns. Tensor entries are already ordered. The header keeps its length (same
    keys, same compact JSON), so the data offsets stay valid.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > n:  # never: the same JSON in another order; keep the writer's bytes rather than break them
        return blob
    return blob[:8] + text.ljust(n, b" ") + blob[8 + n :]


def atomic_write_safetensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Write torch tensors as a safetensors file, atomically and byte-reproducibly (sorted metadata)."""
    from safetensors.torch import save

    atomic_write_bytes(path, canonical_safetensors(save(tensors, metadata=metadata)))


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; on success it replaces `path` atomically.

    For writers that want a filename (safetensors.save_file, matplotlib.savefig).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
    _chmod_default(tmp)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it replaces directory `path`.

    The old directory (if any) is moved aside first and deleted after the new one is in place.
    Between the two renames the target is briefly absent, never partial.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    _chmod_default(tmp, directory=True)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if path.exists():
            old = path.parent / f"{TMP_PREFIX}old-{path.name}.{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_path(path: Path) -> None:
    """Delete a file or directory (for --force), by renaming it aside first so it vanishes at once."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    aside = path.parent / f"{TMP_PREFIX}rm-{path.name}.{os.getpid()}"
    os.replace(path, aside)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:  # a file, or a symlink (removed itself: what it points to is not ours to delete)
        aside.unlink(missing_ok=True)


def clean_temporaries(root: Path) -> None:
    """Remove leftovers of writes interrupted by a crash (safe only while holding the lock).

    One leftover is not garbage: `atomic_dir` moves the old directory aside to `.tmp-old-NAME.PID`
    before renaming the new one in. A crash between those two renames leaves NAME missing and the
    old copy aside; it is renamed back, so the directory is as it was before the interrupted write.
    """
    for aside in Path(root).rglob(TMP_PREFIX + "old-*"):
        name = aside.name[len(TMP_PREFIX + "old-"):].rsplit(".", 1)[0]
        target = aside.parent / name
        if aside.is_dir() and not target.exists():
            os.replace(aside, target)
    for p in Path(root).rglob(TMP_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


