"""Who holds a campaign and what it is doing: its lock file read together with its events.

One answer for everyone who needs it: a refused `tierctl run`, `run --wait` while it waits,
`tierctl cancel`, `status` and the dashboard. The live holder is the runner while it lives; after a
kill -9 of the runner it is the step the runner started (it inherited the lock and goes on: an
*orphaned* step). What it does (iteration, step, progress) comes from the step's line in the lock
file and the last `progress` event of that step in iter<N>/events.jsonl.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.lock import LockedProcess, LockRecord, read_lock
from tierctl.core.events import Event, parse_line
from tierctl.core.progress import format_duration

TAIL_BYTES = 1 << 16  # how much of events.jsonl is read to find the last progress of a step


@dataclass(frozen=True)
class Holder:
    """The process that holds a campaign's lock, and the step it runs."""

    record: LockRecord
    runner_alive: bool
    step: LockedProcess | None  # the recorded step that is still running (None: between steps, or unknown)
    progress: str | None = None  # "3/8 steps": the step's last progress event

    @property
    def orphaned(self) -> bool:
        """The runner died and its step goes on alone (it holds the lock until it ends)."""
        return not self.runner_alive and self.step is not None

    @property
    def pid(self) -> int | None:
        """The live holder's pid: the runner, else its orphaned step, else the recorded runner."""
        if self.runner_alive and self.record.runner is not None:
            return self.record.runner.pid
        if self.step is not None:
            return self.step.pid
        return self.record.runner.pid if self.record.runner is not None else None

    @property
    def where(self) -> str:
        host = self.record.host
        return f"pid {self.pid} on {host}" if host else f"pid {self.pid}"

    def doing(self, running: tuple[int, str] | None = None, with_progress: bool = True) -> str:
        """`iteration 1 finetune, 3/8 steps`, `between steps`, or `an unknown step`.

        `running`: the (iteration, step) the events say runs, for a lock file that names no step.
        """
        if self.step is None or self.step.iteration is None:
            if running is not None:
                return "iteration {} {}".format(*running)
            return "between steps" if self.runner_alive else "an unknown step"
        progress = f", {self.progress}" if self.progress and with_progress else ""
        return f"iteration {self.step.iteration} {self.step.step}{progress}"

    def status_line(self, running: tuple[int, str] | None = None) -> str:
        """`running: iteration 1 finetune (pid 7 on host)`, and `running (orphaned: its runner died): ...`
        for an orphaned step (`status` shows the progress on a line of its own). `running`: see doing()."""
        if not self.runner_alive and self.step is None:
            return f"running: {self.describe()}"
        state = "running (orphaned: its runner died)" if self.orphaned else "running"
        return f"{state}: {self.doing(running, with_progress=False)} ({self.where})"

    def describe(self) -> str:
        """One phrase naming the live holder and what it does, for messages."""
        if self.orphaned:
            runner = self.record.runner
            died = f" (its runner pid {runner.pid} died)" if runner is not None else " (its runner died)"
            return f"an orphaned step: {self.doing()}, {self.where}{died}"
        if not self.runner_alive:
            return f"{self.where} (no process recorded in the lock is alive: one that inherited the lock holds it)"
        return f"{self.where} ({self.doing()})"


def last_progress_event(events: Path, iteration: int, step: str) -> Event | None:
    """The newest `progress` event of `step`, if it came after the step's last start (bounded read of the
    file's tail: a reader polling a long fine-tune's events must not read them all each time)."""
    try:
        with open(events, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - TAIL_BYTES))
            lines = f.read().decode("utf-8", errors="replace").split("\n")[:-1]  # the last one may be torn
    except OSError:
        return None
    for line in reversed(lines):
        e = parse_line(line)
        if e is None or e.step != step or e.iter != iteration:
            continue
        if e.event == "start":
            return None
        if e.event == "progress":
            return e
    return None


def last_progress(events: Path, iteration: int, step: str) -> str | None:
    """`3/8 steps, 0:42 left` (`ppl_pruned 8/44 windows` for a phase other than the step's own): the
    step's newest progress event in a few words, for one-line messages."""
    e = last_progress_event(events, iteration, step)
    if e is None or not e.get("total"):
        return None
    phase = e.get("phase")
    what = f"{phase} " if phase and phase != step else ""  # e.g. the prune step measuring ppl_pruned
    unit = f" {e.get('unit')}" if e.get("unit") else ""
    eta = e.get("eta_s")
    left = f", {format_duration(eta)} left" if isinstance(eta, (int, float)) else ""
    return f"{what}{e.get('done')}/{e.get('total')}{unit}{left}"


def campaign_holder(layout: CampaignLayout, progress: bool = True) -> Holder | None:
    """Who holds the campaign now, None when nobody does. `progress=False` skips reading the events
    (for a caller that only needs the pid, many times a second)."""
    record = read_lock(layout.lock)
    if record is None:
        return None
    step = record.live_step
    done = None
    if progress and step is not None and step.iteration is not None and step.step is not None:
        done = last_progress(layout.events(step.iteration), step.iteration, step.step)
    return Holder(record, record.alive(record.runner), step, done)


def refusal(layout: CampaignLayout, holder: Holder | None) -> str:
    """The one line of a run refused because the campaign is held: who holds it, and the two ways on."""
    who = holder.describe() if holder is not None else "another process"
    verb = "held by" if holder is not None and holder.orphaned else "being run by"
    return (f"{layout.root}: campaign is {verb} {who}; wait for it with --wait, or stop it with: "
            f"tierctl cancel {layout.root}")


def wait_until_free(layout: CampaignLayout, on_wait: Callable[[Holder], None] | None = None,
                    poll: float = 0.5) -> None:
    """Return once nobody holds the campaign, calling `on_wait(holder)` at every look until then."""
    while (holder := campaign_holder(layout)) is not None:
        if on_wait is not None:
            on_wait(holder)
        time.sleep(poll)
