"""Sweeps: a base campaign and axes, every point of the grid a campaign, run through submitit.

SWEEP.toml:

    [sweep]
    base = "../campaigns/tiny-smoke"   # a campaign directory: its campaign.toml and schedule.csv
    executor = "local"                 # local | slurm
    max_parallel = 2                   # local: campaigns running at once
    [axes]                             # every combination is one campaign
    schedule = ["a.csv", "b.csv"]      # schedule files
    "finetune.lr" = [1e-4, 1e-3]       # any campaign.toml key as "table.key"
    [slurm]                            # executor = "slurm": as campaign.toml's [slurm]
    partition = "gpu"

Relative paths are resolved from SWEEP.toml's directory. The points live in `SWEEP/` (the file's
name without .toml) next to it, one campaign directory per point named after its values
(`schedule-a_lr-0.0001`), created once and then only run. submitit's files go to `SWEEP/.submitit/`,
the job ids to `SWEEP/jobs.json`.

Running is idempotent: a point whose campaign is complete (or halted by its guardrail) is skipped, one
that is unfinished is (re)submitted and resumes where it stopped (`tierctl run --all` semantics);
each campaign's own lock still guarantees one runner. With the local executor, `tierctl sweep` is
the scheduler: it keeps at most `max_parallel` jobs of submitit's LocalExecutor running and returns
when all are over; with Slurm it submits one job per campaign and returns.

The state of a point is read from its campaign directory (tierctl.campaign.sweep_status), never
from a second record: the job ids only help to cancel and to say that a Slurm job is still queued.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tierctl.campaign.layout import CampaignLayout, CampaignLock, LockHeld, atomic_write_json
from tierctl.campaign.sweep_spec import Sweep, ensure_points, points
from tierctl.errors import BadInput

# --- jobs -------------------------------------------------------------------------------------------


def read_jobs(sweep: Sweep) -> dict[str, dict[str, Any]]:
    """name -> {"job_id", "executor", "submitted"} of the last job submitted for each point."""
    try:
        data = json.loads(sweep.jobs_file.read_text(encoding="utf-8"))
        return {k: v for k, v in data.get("jobs", {}).items() if isinstance(v, dict)}
    except (OSError, ValueError, AttributeError):
        return {}


def record_job(sweep: Sweep, name: str, job_id: str, executor: str) -> None:
    jobs = read_jobs(sweep)
    jobs[name] = {"job_id": str(job_id), "executor": executor,
                  "submitted": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    atomic_write_json(sweep.jobs_file, {"jobs": jobs})


def run_point(campaign: str) -> int:
    """What each job runs: `tierctl run CAMPAIGN --all --json` in the job's process (events on stdout,
    the job's log). Returns its exit code (0 done, 1 failed, 3 halted, 2 refused)."""
    from tierctl.campaign.plan import RunRequest
    from tierctl.campaign.runner import run_campaign
    from tierctl.errors import TierctlError

    def echo(event: Any, line: str) -> None:
        print(line, flush=True)

    try:
        outcome = run_campaign(CampaignLayout(Path(campaign)), RunRequest(all=True), on_event=echo)
    except TierctlError as e:
        print(f"tierctl: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    if outcome.message:
        print(f"tierctl: {outcome.message}", file=sys.stderr, flush=True)
    return outcome.exit_code


OnLine = Callable[[str], None]


def submit_sweep(sweep: Sweep, executor: str | None = None, on_line: OnLine = print, poll_s: float = 0.5) -> int:
    """Create the points, submit every unfinished one; with the local executor wait until all are over.

    Returns the exit code of `tierctl sweep`: 0, or 1 when a point failed.
    """
    from tierctl.campaign.sweep_status import FINISHED, point_status

    executor = executor or sweep.executor
    pts = points(sweep)
    sweep.dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = CampaignLock(sweep.dir / ".lock").acquire()
    except LockHeld as e:
        raise BadInput(str(e).replace("campaign is being run", "sweep is being submitted")) from None
    try:
        for name in ensure_points(sweep, pts):
            on_line(f"created {sweep.layout(name).root}")
        todo = []
        for p in pts:
            st = point_status(sweep, p.name)
            if st.state in FINISHED:
                on_line(f"{p.name}: {st.state}, skipped")
            elif st.state == "running":
                on_line(f"{p.name}: already running ({st.reason}), skipped")
            else:
                todo.append(p.name)
        if not todo:
            on_line("nothing to submit")
            return 0
        if executor == "slurm":
            ex = _slurm_executor(sweep)
            for name in todo:
                job = ex.submit(run_point, str(sweep.layout(name).root.resolve()))
                record_job(sweep, name, job.job_id, "slurm")
                on_line(f"{name}: submitted (slurm job {job.job_id})")
            return 0
        return _run_local(sweep, todo, on_line, poll_s)
    finally:
        lock.release()


def _slurm_executor(sweep: Sweep) -> Any:
    from tierctl.campaign.slurm import slurm_executor

    return slurm_executor(sweep.submitit_dir, sweep.slurm, 1, f"tierctl-{sweep.dir.name}")


def _run_local(sweep: Sweep, todo: list[str], on_line: OnLine, poll_s: float) -> int:
    """At most max_parallel LocalExecutor jobs at once; Ctrl-C / SIGTERM cancels the running ones."""
    import signal
    import threading

    from tierctl.campaign.slurm import local_executor
    from tierctl.campaign.sweep_status import point_status

    ex = local_executor(sweep.submitit_dir, 1, f"tierctl-{sweep.dir.name}")
    queue, running, failed = list(todo), {}, 0
    stop: list[int] = []
    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, lambda signum, frame: stop.append(signum))
    try:
        while (queue or running) and not stop:
            while queue and len(running) < sweep.max_parallel and not stop:
                name = queue.pop(0)
                job = ex.submit(run_point, str(sweep.layout(name).root.resolve()))
                record_job(sweep, name, job.job_id, "local")
                running[name] = job
                on_line(f"{name}: submitted (local job {job.job_id})")
            for name, job in list(running.items()):
                if job.done():
                    del running[name]
                    st = point_status(sweep, name)
                    failed += st.state == "failed"
                    on_line(f"{name}: {st.state}" + (f" ({st.reason})" if st.reason else ""))
            time.sleep(poll_s)
        if stop:
            for name, job in running.items():
                job.cancel(check=False)
                on_line(f"{name}: cancelled (local job {job.job_id}); the next sweep resumes it")
            for job in running.values():
                _wait(job, 30.0)
            return 128 + stop[0]
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 1 if failed else 0


def _wait(job: Any, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not job.done() and time.monotonic() < end:
        time.sleep(0.2)


def cancel_sweep(sweep: Sweep, on_line: OnLine = print) -> int:
    """Stop a local sweep's scheduler (so it submits nothing more; it cancels its jobs), and cancel the
    recorded jobs through submitit (scancel on Slurm). Returns how many were reached."""
    import os
    import signal

    from tierctl.campaign.lock import read_lock
    from tierctl.campaign.slurm import cancel_job

    reached = 0
    record = read_lock(sweep.dir / ".lock")
    if record is not None and record.runner is not None and record.holds(record.runner):
        os.kill(record.runner.pid, signal.SIGTERM)  # `tierctl sweep` itself: it cancels its running jobs
        reached += 1
        on_line(f"stopped the sweep's scheduler (pid {record.runner.pid})")
    for name, job in read_jobs(sweep).items():
        if cancel_job(sweep.submitit_dir, job.get("executor", ""), job.get("job_id", "")):
            reached += 1
            on_line(f"{name}: cancelled {job.get('executor')} job {job.get('job_id')}")
    if not reached:
        on_line("no job of this sweep is running")
    return reached
