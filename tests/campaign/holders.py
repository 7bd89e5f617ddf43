"""Real processes that hold a campaign's lock the way `tierctl run` does, without a model (fast).

`start_holder(layout)` starts a *runner*: a Python process that takes the campaign lock with
CampaignLock, starts a *step* (a sleeping process in a session of its own that inherits the lock
descriptor, like StepRunner does), records it in the lock file, and on SIGTERM stops its step and
exits 143 (like the real runner). Options make the step ignore SIGTERM, or make the lock file name
another process than the step (to test the pid-reuse guards).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tierctl.campaign.layout import CampaignLayout

RUNNER = r"""
import os, signal, subprocess, sys, time
from pathlib import Path
from tierctl.campaign.lock import CampaignLock, record_step
from tierctl.campaign.procs import start_time

lock_path, iteration, step, ignore_term, recorded = sys.argv[1:6]
lock = CampaignLock(Path(lock_path)).acquire()
code = "import signal, time\n"
if ignore_term == "1":
    code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
code += "print('ready', flush=True)\ntime.sleep(300)\n"
child = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, pass_fds=(lock.fd,),
                         stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "ready\n"
if recorded == "step":
    record_step(lock.fd, child.pid, int(iteration), step)
else:  # "PID START": the lock file names another process than the step (a recycled pid, say)
    pid, start = recorded.split()
    line = f"step pid={pid} start={start} iter={iteration} step={step}\n"
    os.pwrite(lock.fd, line.encode(), os.fstat(lock.fd).st_size)

def stop(signum, frame):
    os.killpg(child.pid, signal.SIGTERM)
    child.wait()
    sys.exit(143)

signal.signal(signal.SIGTERM, stop)
print(child.pid, flush=True)
time.sleep(300)
"""


@dataclass
class Held:
    """A running holder: the runner process and its step's pid."""

    runner: subprocess.Popen[str]
    step: int

    def kill_runner(self) -> None:
        """kill -9 of the runner's process group (a session of its own): the step goes on, orphaned."""
        os.killpg(self.runner.pid, signal.SIGKILL)
        self.runner.wait()

    def step_alive(self) -> bool:
        try:
            os.kill(self.step, 0)
        except ProcessLookupError:
            return False
        with open(f"/proc/{self.step}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"

    def cleanup(self) -> None:
        for group in (self.runner.pid, self.step):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.runner.wait(timeout=5)


def start_holder(layout: CampaignLayout, iteration: int = 1, step: str = "finetune", ignore_term: bool = False,
                 recorded: str = "step") -> Held:
    """A runner holding `layout`'s lock with a step of `iteration` running (see the module docstring)."""
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(layout.lock), str(iteration), step, "1" if ignore_term else "0", recorded],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert runner.stdout is not None
    line = runner.stdout.readline()
    assert line.strip().isdigit(), f"the holder did not start (exit {runner.poll()})"
    return Held(runner, int(line))


@contextlib.contextmanager
def holders() -> Iterator[Callable[..., Held]]:
    """`start_holder`, with every holder it started killed at the end (for a fixture)."""
    started: list[Held] = []

    def start(layout: CampaignLayout, **kw: object) -> Held:
        held = start_holder(layout, **kw)  # type: ignore[arg-type]
        started.append(held)
        return held

    try:
        yield start
    finally:
        for held in started:
            held.cleanup()
