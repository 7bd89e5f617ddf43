"""Detached runs: launch one, find the active one (headless; the dashboard's run keys).

Cancelling a run is tierctl.campaign.cancel's (the CLI and the dashboard share it).

A run is a detached `tierctl run CAMPAIGN --iter N --json` process in its own session, so it keeps
running when the dashboard quits or its terminal closes. The dashboard never talks to it: it reads
the campaign lock (is a run active, which pid) and the iteration's events.jsonl (what it does:
tierctl.campaign.follow), so a dashboard opened later, or a second one, sees exactly what the
first one saw.
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
