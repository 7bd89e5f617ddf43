"""Stopping whatever holds a campaign: `tierctl cancel` and the dashboard's cancel (one implementation).

What is stopped depends on who holds the lock (tierctl.campaign.holder):
- the runner is alive: it gets SIGTERM and stops its step itself, in order (SIGTERM to the step's
  process groups, SIGKILL after its grace period), ending with "interrupted" and exit 143;
- the runner died (kill -9) and its step goes on alone: the step's process groups (and those of its
  descendants: torchrun workers) get SIGTERM.
Only processes that really are the recorded holders are signalled: same pid *and* start time as in
the lock file, and the lock file open (so a recycled pid is never hit). With `wait`, a holder still
there after `grace` seconds gets SIGKILL, and cancel returns once the lock is free.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from tierctl.campaign.holder import Holder, campaign_holder
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.lock import LockRecord
from tierctl.campaign.procs import process_groups, signal_groups
from tierctl.campaign.resume import next_resume_point
from tierctl.errors import BadInput, TierctlError

GRACE_S = 10.0  # seconds a stopped holder gets before SIGKILL (cancel --wait)


@dataclass
class Cancelled:
    """What a cancel found and did."""

    root: str
    holder: Holder | None  # what held the campaign; None: nothing was running
    freed: bool = False  # the lock is free (always so after a wait)
    resumes: str | None = None  # where a rerun goes on ("iteration 1: the fine-tune resumes from ...")

    @property
    def message(self) -> str:
        """One line: what was stopped (or that nothing was running), and what happens next."""
        if self.holder is None:
            return f"nothing to cancel: no run holds {self.root}"
        what = self.holder.describe()
        if self.freed:
            where = f"{self.resumes}; " if self.resumes else ""
            return f"stopped {what}; the campaign is free: {where}resume with tierctl run {self.root} --all"
        return (f"stopping {what}: SIGTERM sent; the campaign is free once it has exited "
                f"(tierctl cancel {self.root} --wait waits for that)")


def _targets(holder: Holder) -> tuple[list[int], list[int]]:
    """(pids to signal, step pids whose process groups to signal), each verified as a holder."""
    record: LockRecord = holder.record
    if not record.local:
        raise BadInput(f"{holder.where}: the run is on another machine ({record.host}); cancel it there")
    if record.holds(record.runner):
        assert record.runner is not None
        return [record.runner.pid], []
    steps = [s.pid for s in record.steps if record.holds(s)]
    if not steps:
        raise TierctlError(f"the campaign is held by {holder.describe()}, but by no process tierctl recorded and "
                           "can check; nothing was signalled")
    return [], steps


def _signal(pids: list[int], steps: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise BadInput(f"not allowed to signal pid {pid}") from None
    for pid in steps:
        signal_groups(process_groups(pid), sig)


def cancel(layout: CampaignLayout, wait: bool = False, grace: float = GRACE_S, poll: float = 0.1,
           on_wait: Callable[[Holder], None] | None = None) -> Cancelled:
    """Stop the campaign's holder (SIGTERM); with `wait`, SIGKILL after `grace` s and return once it is free.

    BadInput when the holder runs on another machine or may not be signalled; TierctlError when the
    lock is held by no process the lock file names (nothing is signalled then).
    """
    holder = campaign_holder(layout)
    if holder is None:
        return Cancelled(str(layout.root), None, freed=True)
    pids, steps = _targets(holder)
    _signal(pids, steps, signal.SIGTERM)
    if not wait:
        return Cancelled(str(layout.root), holder)
    kill_at: float | None = time.monotonic() + grace
    while (now := campaign_holder(layout)) is not None:
        if on_wait is not None:
            on_wait(now)
        if kill_at is not None and time.monotonic() >= kill_at:
            # Everything that still holds it, checked again: the runner (it would kill its step after its
            # own grace too) and every recorded step.
            record = now.record
            runner = [record.runner.pid] if record.runner is not None and record.holds(record.runner) else []
            _signal(runner, [s.pid for s in record.steps if record.holds(s)], signal.SIGKILL)
            kill_at = None
        time.sleep(poll)
    return Cancelled(str(layout.root), holder, freed=True, resumes=next_resume_point(layout))
