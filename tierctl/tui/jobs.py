"""Runs launched from the dashboard, and following them (no Textual here).

A run is a detached `tierctl run CAMPAIGN --iter N --json` process in its own session, so it keeps
running when the dashboard quits or its terminal closes. The dashboard never talks to it: it reads
the campaign lock (is a run active, which pid) and the iteration's events.jsonl (what it does), so
a dashboard opened later, or a second one, sees exactly what the first one saw.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tierctl.campaign.holder import Holder, campaign_holder
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import Event, EventFollower
from tierctl.live_model import LiveModel

RUN_LOG = "tui-run.log"


@dataclass
class Launched:
    """A run this dashboard started: the process, and where its output goes."""

    process: subprocess.Popen[bytes]
    argv: list[str]
    log: Path
    log_offset: int  # where this run's output starts in the (appended) log

    def exit_code(self) -> int | None:
        return self.process.poll()

    def output(self, limit: int = 4000) -> str:
        """The tail of what this run wrote to its log (its error line, when it refused to start)."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self.log_offset)
                data = f.read()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", errors="replace")

    def error_line(self) -> str:
        """The last non-event line of the output: the one-line reason `tierctl run` gives on exit 1/2."""
        for line in reversed(self.output().splitlines()):
            s = line.strip()
            if s and not s.startswith("{"):
                return s
        return ""


def run_argv(layout: CampaignLayout, iteration: int | None = None, all_iterations: bool = False) -> list[str]:
    """`python -m tierctl run CAMPAIGN (--iter N | --all) --json` for this interpreter."""
    if all_iterations == (iteration is not None):
        raise ValueError("give an iteration or all_iterations, not both")
    which = ["--all"] if all_iterations else ["--iter", str(iteration)]
    return [sys.executable, "-m", "tierctl", "run", str(layout.root.resolve()), *which, "--json"]


def launch(layout: CampaignLayout, iteration: int | None = None, all_iterations: bool = False) -> Launched:
    """Start a detached run; its stdout and stderr are appended to logs/tui-run.log."""
    argv = run_argv(layout, iteration, all_iterations)
    layout.logs.mkdir(parents=True, exist_ok=True)
    log = layout.logs / RUN_LOG
    with open(log, "ab") as f:
        f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv[2:])}\n".encode())
        offset = f.tell()
        proc = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
            argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=os.getcwd(),
        )
    return Launched(proc, argv, log, offset)


def active_holder(layout: CampaignLayout) -> Holder | None:
    """Who holds this campaign (its runner, or its orphaned step), None when free. Cheap: no events read."""
    return campaign_holder(layout, progress=False)


def active_pid(layout: CampaignLayout) -> int | None:
    """The pid of the live holder of this campaign (its runner, or its orphaned step), None when free."""
    holder = active_holder(layout)
    return holder.pid if holder is not None else None


def newest_iteration_with_events(layout: CampaignLayout) -> int | None:
    """The highest N whose iter<N>/events.jsonl exists: the run being (or last) written."""
    for n in reversed(layout.iterations_on_disk()):
        if layout.events(n).is_file():
            return n
    return None


class RunWatch:
    """Follows the events of the newest iteration, switching when a newer one starts.

    `read()` returns only the events written since the last call (reading bytes, parsing lines: the
    slow part, so the dashboard calls it off its UI thread); a `--all` run moving on to the next
    iteration shows up as a newer events.jsonl, and `read()` says to start over. `poll()` does the
    same into the watch's own LiveModel, for callers without threads.
    """

    def __init__(self, layout: CampaignLayout, iteration: int | None = None) -> None:
        self.layout = layout
        self.iteration: int | None = None
        self._follower: EventFollower | None = None
        self._pinned = iteration is not None
        if iteration is not None:
            self._follow(iteration)
        self.model = LiveModel(self.iteration)

    def _follow(self, iteration: int) -> None:
        self.iteration = iteration
        self._follower = EventFollower(self.layout.events(iteration))

    def read(self) -> tuple[int | None, bool, list[Event]]:
        """(iteration, started_over, new events). `started_over`: the events are of another iteration
        than the last call's, so a view must drop what it had (the whole file is replayed)."""
        over = False
        if not self._pinned:
            newest = newest_iteration_with_events(self.layout)
            if newest is not None and newest != self.iteration:
                # The old iteration's unread tail is of a finished step: metrics.json tells how it ended.
                self._follow(newest)
                over = True
        if self._follower is None:
            return self.iteration, over, []
        return self.iteration, over, self._follower.poll()

    def poll(self) -> int:
        """Apply every new event to `self.model`; return how many."""
        iteration, over, events = self.read()
        if over:
            self.model = LiveModel(iteration)
        return self.model.apply(events)
