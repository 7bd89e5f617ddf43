"""The one-runner lock of a campaign: an flock on `<campaign>/.lock`, and who holds it.

Why flock: the kernel releases it when its holder dies, so a lock left by a dead process (even
after kill -9) is taken over without staleness heuristics. The runner passes the locked descriptor
to its steps (`pass_fds`), so the lock lasts while either lives: a step orphaned by a killed runner
keeps a second runner out, and once it ends the next runner takes the lock over.

The file says who holds it, one line per process (`key=value` fields; a start time guards
against pid reuse, see tierctl.campaign.procs):

    runner pid=4242 start=918273 host=node1 time=1764600000
    step pid=4250 start=918301 iter=1 step=finetune

The runner line is in the file before the lock can be seen held: the holder writes it to a fresh
temporary file, locks that file, and only then links or renames it to `.lock` (after locking the
old `.lock`, so a live holder is never replaced). A second runner therefore always finds the holder
named, never an empty or stale line. Each step the runner starts is appended as one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tierctl.campaign.procs import has_open, is_alive, start_time
from tierctl.core.atomic import TMP_PREFIX
from tierctl.errors import BadInput

SETTLE_S = 0.5  # how long a held lock naming no live process is re-read (a takeover being installed)


class LockHeld(BadInput):
    """Another process runs this campaign (`record`: what its lock file says)."""

    def __init__(self, message: str, record: LockRecord | None = None) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class LockedProcess:
    """A process named in the lock file: the runner, or a step it started (with its iteration and step)."""

    pid: int
    start: int | None  # clock ticks since boot; None in a lock file of an older tierctl
    iteration: int | None = None
    step: str | None = None


@dataclass(frozen=True)
class LockRecord:
    """What a held lock file says, and which file it is (for the check that a process holds it)."""

    runner: LockedProcess | None
    host: str | None
    since: float | None
    steps: tuple[LockedProcess, ...] = ()
    file_id: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the locked file
    hostname: str = field(default_factory=socket.gethostname)  # this machine, when the record was read

    @property
    def local(self) -> bool:
        """Is the holder on this machine (so its processes can be checked and signalled)?"""
        return self.host is None or self.host == self.hostname

    def alive(self, proc: LockedProcess | None) -> bool:
        """Is `proc` still running? Always assumed for a holder on another machine."""
        if proc is None:
            return False
        return not self.local or is_alive(proc.pid, proc.start)

    def holds(self, proc: LockedProcess | None, skip_fd: int | None = None) -> bool:
        """Is `proc` alive and does it hold the lock file open? (the guard before signalling it)

        `skip_fd`: the descriptor this process reads the file through, which does not make it a holder.
        """
        if proc is None or not self.local or not self.alive(proc):
            return False
        return has_open(proc.pid, *self.file_id, skip_fd=skip_fd) is not False

    @property
    def live_step(self) -> LockedProcess | None:
        """The newest recorded step that is still running."""
        return next((s for s in reversed(self.steps) if self.alive(s)), None)

    def anyone_holding(self, probe_fd: int) -> bool:
        """Does a process this file names hold the lock (seen through `probe_fd`)? Not so while a takeover
        is being installed: the old file is then locked by the newcomer but still names its previous
        holder, which may well be alive (it released the lock and goes on with other work)."""
        if not self.local:
            return True
        return self.holds(self.runner, probe_fd) or any(self.holds(s, probe_fd) for s in self.steps)


def _fields(tokens: list[str]) -> dict[str, str]:
    return dict(t.split("=", 1) for t in tokens if "=" in t)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_record(text: str, file_id: tuple[int, int] = (0, 0)) -> LockRecord:
    """Parse a lock file. Only whole lines count (a line being appended has no newline yet)."""
    lines = text.split("\n")[:-1]
    runner, host, since, steps = None, None, None, []
    for line in lines:
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0].isdigit():  # an older tierctl: `pid host time [step-pgid]`
            runner = LockedProcess(int(tokens[0]), None)
            host = tokens[1] if len(tokens) > 1 else None
            since = _int(tokens[2] if len(tokens) > 2 else None)
            if len(tokens) > 3 and tokens[3].isdigit():
                steps.append(LockedProcess(int(tokens[3]), None))
            continue
        f = _fields(tokens[1:])
        pid = _int(f.get("pid"))
        if pid is None:
            continue
        if tokens[0] == "runner":
            runner, host, since = LockedProcess(pid, _int(f.get("start"))), f.get("host"), _int(f.get("time"))
        elif tokens[0] == "step":
            steps.append(LockedProcess(pid, _int(f.get("start")), _int(f.get("iter")), f.get("step")))
    return LockRecord(runner, host, since, tuple(steps), file_id)


def _read_fd(fd: int) -> str:
    return os.pread(fd, 1 << 16, 0).decode(errors="replace")


def _same_file(fd: int, path: Path) -> bool:
    """Is the file open on `fd` still the one named `path` (not replaced by a takeover meanwhile)?"""
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _record_of(fd: int) -> LockRecord:
    st = os.fstat(fd)
    return parse_record(_read_fd(fd), (st.st_dev, st.st_ino))


def read_lock(path: Path) -> LockRecord | None:
    """What the lock file says while the lock is held; None when it is free (or there is no file).

    A held lock whose file names no process that holds it is re-read for up to SETTLE_S: that is a
    takeover in the middle of installing its file (or a process that inherited the lock unrecorded,
    which is then reported as it is).
    """
    deadline = time.monotonic() + SETTLE_S
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                record = _record_of(fd)
                if record.anyone_holding(fd) or time.monotonic() > deadline:
                    return record
                if _same_file(fd, Path(path)):
                    time.sleep(0.01)
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)


def live_holder(record: LockRecord) -> str:
    """'pid 123 on host' of the live holder: the runner, else its orphaned step, else what is recorded."""
    proc = record.runner if record.alive(record.runner) else (record.live_step or record.runner)
    if proc is None:
        return "another process"
    return f"pid {proc.pid} on {record.host}" if record.host else f"pid {proc.pid}"


def holder_of(path: Path) -> str | None:
    """'pid 123 on host' of the live holder, None when the lock is free."""
    record = read_lock(path)
    return live_holder(record) if record is not None else None


@dataclass
class CampaignLock:
    """The lock, held by this process from `acquire()` to `release()` (`fd`: pass it to the steps)."""

    path: Path
    fd: int | None = None

    def acquire(self) -> CampaignLock:
        """Take the lock, or raise LockHeld naming the holder. The file names us before it is seen held."""
        line = (f"runner pid={os.getpid()} start={start_time(os.getpid())} host={socket.gethostname()} "
                f"time={int(time.time())}\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + SETTLE_S
        while True:
            fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + "lock.", dir=self.path.parent)
            try:
                os.fchmod(fd, 0o644)
                os.write(fd, line.encode())
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
                installed = self._install(tmp, deadline)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            if installed:
                self.fd = fd
                return self
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _install(self, tmp: str, deadline: float) -> bool:
        """Make `tmp` (locked, holding our line) the lock file, unless a live holder has it.

        False: look again (the file changed meanwhile). LockHeld: it is held.
        """
        try:
            old = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            try:
                os.link(tmp, self.path)  # fails when another runner created it first
            except FileExistsError:
                return False
            os.unlink(tmp)
            return True
        try:
            try:
                fcntl.flock(old, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                record = _record_of(old)
                if record.anyone_holding(old) or time.monotonic() > deadline:
                    raise LockHeld(f"{self.path.parent}: campaign is being run by {live_holder(record)}",
                                   record) from None
                time.sleep(0.01)  # a takeover between locking the old file and renaming its own
                return False
            if not _same_file(old, self.path):
                return False  # replaced while we locked it: its successor may be held
            os.replace(tmp, self.path)  # the old file is free and ours to replace
            return True
        finally:
            os.close(old)  # (drops our flock on the old file, which is no longer the lock)

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


def record_step(lock_fd: int, pid: int, iteration: int, step: str) -> None:
    """Append a step the holder started to the lock file (one line, one write).

    The step inherits the lock, so after a kill -9 of the runner it is the step that holds it; its
    line lets `tierctl cancel`, `status` and a refused run name it and reach it.
    """
    line = f"step pid={pid} start={start_time(pid)} iter={iteration} step={step}\n"
    os.pwrite(lock_fd, line.encode(), os.fstat(lock_fd).st_size)
