"""Paths of a campaign directory (SPEC section 5), atomic writes, and the one-runner lock.

Writes go through tierctl.core.atomic (temporary name, fsync, rename), re-exported here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from tierctl.core.atomic import (  # noqa: F401  (re-exported for the campaign layer)
    TMP_PREFIX,
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    clean_temporaries,
    remove_path,
)
from tierctl.errors import BadInput

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


def record_step_group(lock_fd: int, pgid: int) -> None:
    """Add the running step's process group to the holder line (`pid host time pgid`).

    The step inherits the lock, so after a kill -9 of the runner it is the step that holds it; the
    recorded group lets a cancel reach that orphaned step.
    """
    fields = os.pread(lock_fd, 200, 0).decode(errors="replace").split()[:3]
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, (" ".join([*fields, str(pgid)]) + "\n").encode(), 0)


def lock_step_group(path: Path) -> int | None:
    """The process group of the step the holder started last, if the lock is held and one was recorded."""
    if holder_of(path) is None:
        return None
    try:
        return int(Path(path).read_text().split()[3])
    except (OSError, ValueError, IndexError):
        return None


def lock_holder_pid(path: Path) -> int | None:
    """PID written by the holder, if the lock is held (for the dashboard's cancel)."""
    if holder_of(path) is None:
        return None
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
