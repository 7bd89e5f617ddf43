"""Paths of a campaign directory (SPEC section 5), atomic writes, and the one-runner lock.

Every file is written to a temporary name in the same directory, fsynced, then renamed over
the target: a crash leaves either the old file or the new one, never a half-written file under
the real name. Directories (a saved model) are built under a temporary name and renamed the same
way. Temporary names start with `.tmp-` so state derivation ignores them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierctl.errors import BadInput

TMP_PREFIX = ".tmp-"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CAMPAIGNS_DIR = Path("campaigns")


@dataclass(frozen=True)
class CampaignLayout:
    """Where everything of one campaign lives. Pure path arithmetic: touches no file."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def config(self) -> Path:
        return self.root / "campaign.toml"

    @property
    def schedule(self) -> Path:
        return self.root / "schedule.csv"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def iter_dir(self, n: int) -> Path:
        return self.root / f"iter{n}"

    def tiers(self, n: int) -> Path:
        return self.iter_dir(n) / "tiers.safetensors"

    def act_norms(self, n: int) -> Path:
        return self.iter_dir(n) / "act_norms.safetensors"

    def model(self, n: int) -> Path:
        return self.iter_dir(n) / "model"

    def metrics(self, n: int) -> Path:
        return self.iter_dir(n) / "metrics.json"

    def events(self, n: int) -> Path:
        return self.iter_dir(n) / "events.jsonl"

    def finetune_checkpoint(self, n: int) -> Path:
        """Resumable fine-tune state (weights + optimizer), removed once the fine-tune is done."""
        return self.iter_dir(n) / "finetune_ckpt"

    def step_log(self, n: int, step: str) -> Path:
        return self.logs / f"iter{n}-{step}.log"

    def iterations_on_disk(self) -> list[int]:
        out = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                m = re.fullmatch(r"iter(\d+)", p.name)
                if m and p.is_dir():
                    out.append(int(m.group(1)))
        return sorted(out)


def resolve_campaign(arg: str | Path, base: Path | None = None) -> CampaignLayout:
    """CAMPAIGN is a directory, or a name under ./campaigns (SPEC section 7)."""
    p = Path(arg)
    if (p / "campaign.toml").is_file():
        return CampaignLayout(p)
    under = (base or CAMPAIGNS_DIR) / str(arg)
    if (under / "campaign.toml").is_file():
        return CampaignLayout(under)
    if p.exists() and not p.is_dir():
        raise BadInput(f"{arg}: not a campaign directory")
    if p.is_dir():
        raise BadInput(f"{arg}: no campaign.toml in this directory")
    raise BadInput(f"{arg}: no such campaign (looked for {p} and {under})")


def check_campaign_name(name: str) -> None:
    if not NAME_RE.match(name) or name in (".", ".."):
        raise BadInput(
            f"campaign name {name!r}: use a plain directory name (letters, digits, '.', '_', '-')"
        )


# --- atomic writes -----------------------------------------------------------------------------


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


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary file path next to `path`; on success it replaces `path` atomically.

    For writers that want a filename (safetensors.save_file, matplotlib.savefig).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
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
    if not path.exists():
        return
    aside = path.parent / f"{TMP_PREFIX}rm-{path.name}.{os.getpid()}"
    os.replace(path, aside)
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def clean_temporaries(root: Path) -> None:
    """Remove leftovers of writes interrupted by a crash (safe only while holding the lock)."""
    for p in Path(root).rglob(TMP_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


# --- the lock ----------------------------------------------------------------------------------


class LockHeld(BadInput):
    """Another process runs this campaign."""


@dataclass
class CampaignLock:
    """One runner per campaign, with flock on `<campaign>/.lock`.

    The kernel releases a flock when its holder dies, so a lock left by a dead process (even after
    kill -9) is taken over without any staleness heuristics. The runner passes the locked file
    descriptor to its step subprocesses (`fd` via `pass_fds`), so the lock lasts as long as either
    of them lives: a step orphaned by a killed runner still keeps a second runner out.
    The file holds `pid host time` of the holder, so a refusal can name it.
    """

    path: Path
    fd: int | None = None

    def acquire(self) -> CampaignLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = holder_of(self.path) or "another process"
            os.close(fd)
            raise LockHeld(f"{self.path.parent}: campaign is being run by {holder}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()} {int(time.time())}\n".encode(), 0)
        os.set_inheritable(fd, False)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> CampaignLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_of(path: Path) -> str | None:
    """'pid 123 on host' of the current holder, or None when the lock is free."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 200, 0).decode(errors="replace").split()
            return f"pid {text[0]} on {text[1]}" if len(text) >= 2 else "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def lock_holder_pid(path: Path) -> int | None:
    """PID written by the holder, if the lock is held (for the dashboard's cancel)."""
    if holder_of(path) is None:
        return None
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
