"""Processes as /proc shows them: parents, process groups, start times, open files.

Why a module of its own: stopping a step must reach every process group it made (torchrun starts
each worker in a session of its own), and stopping a campaign's holder must never hit a stranger
that was given a recycled pid. A pid plus its start time (`starttime` of /proc/PID/stat, clock
ticks since boot) names one process for the machine's whole uptime, and a process that has the
campaign's lock file open is one of its holders. Linux only; where /proc cannot be read, start
times and open files are unknown (None) and callers fall back to what `kill(pid, 0)` can tell.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat that tierctl uses."""

    pid: int
    state: str  # R, S, D, T, Z (zombie: exited, not yet reaped; holds no files), ...
    ppid: int
    pgid: int
    start: int  # clock ticks since boot


def proc_stat(pid: int) -> ProcStat | None:
    """/proc/PID/stat, or None when the process is gone (or there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime priority nice num_threads itrealvalue starttime ...": comm may hold spaces and
    # parens, so split after the last ')'. Field k (1-based) is then at index k - 3.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return ProcStat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), None when it is gone or unknown."""
    stat = proc_stat(pid)
    return stat.start if stat is not None else None


def is_alive(pid: int, start: int | None) -> bool:
    """Is `pid` still the process that started at `start`, and not a zombie?

    With a start time from /proc this is immune to pid reuse. Without one (no /proc when it was
    recorded), only "some process has this pid" can be known.
    """
    stat = proc_stat(pid)
    if stat is not None:
        return stat.state != "Z" and (start is None or stat.start == start)
    if os.path.isdir("/proc/self"):
        return False  # /proc works and the pid is not in it: gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def has_open(pid: int, dev: int, ino: int, skip_fd: int | None = None) -> bool | None:
    """Does `pid` hold a descriptor of the file (dev, ino)? None when its descriptors cannot be read.

    `skip_fd`: a descriptor of this process not to count (the one it is looking at the file through).
    """
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for name in names:
        if pid == os.getpid() and skip_fd is not None and name == str(skip_fd):
            continue
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{pid}/fd/{name}")
            if st.st_dev == dev and st.st_ino == ino:
                return True
    return False


def proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) of every process, from /proc (empty where there is no /proc)."""
    out: dict[int, tuple[int, int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None:
                out[stat.pid] = (stat.ppid, stat.pgid)
    return out


def process_groups(pid: int) -> set[int]:
    """The group of `pid` and the groups of all its descendants (never the caller's own group).

    torchrun starts each worker in a session of its own, so stopping a torchrun fine-tune must reach
    those groups too, not only torchrun's.
    """
    table = proc_table()
    groups, todo, seen = {table[pid][1] if pid in table else pid}, [pid], {pid}
    children: dict[int, list[int]] = {}
    for p, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(p)
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            if c not in seen:
                seen.add(c)
                todo.append(c)
                groups.add(table[c][1])
    groups.discard(os.getpgrp())
    return groups


def signal_groups(groups: set[int], sig: int) -> None:
    """Send `sig` to each process group; groups that are gone (or not ours) are skipped."""
    for g in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, sig)
