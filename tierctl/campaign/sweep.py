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
import itertools
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierctl.campaign.config import SECTIONS, CampaignConfig, SlurmConfig, _section, check_slurm, dumps_config
from tierctl.campaign.config import from_dict as config_from_dict
from tierctl.campaign.config import load_config as load_campaign_config
from tierctl.campaign.layout import (
    TMP_PREFIX,
    CampaignLayout,
    CampaignLock,
    LockHeld,
    atomic_write_json,
    resolve_campaign,
)
from tierctl.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXECUTORS = ("local", "slurm")
SWEEP_KEYS = {"base": str, "executor": str, "max_parallel": int}
JOBS_FILE = "jobs.json"
SUBMITIT_DIR = ".submitit"


@dataclass
class Point:
    """One campaign of the grid: its directory name, the axis values, what its two files hold."""

    name: str
    values: dict[str, Any]
    config: CampaignConfig
    schedule_csv: str


@dataclass
class Sweep:
    path: Path  # SWEEP.toml
    base: CampaignLayout
    executor: str
    max_parallel: int
    axes: list[tuple[str, list[Any]]]
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    @property
    def dir(self) -> Path:
        """SWEEP/: the campaigns of the points, next to SWEEP.toml."""
        return self.path.parent / self.path.stem

    @property
    def submitit_dir(self) -> Path:
        return self.dir / SUBMITIT_DIR

    @property
    def jobs_file(self) -> Path:
        return self.dir / JOBS_FILE

    def layout(self, name: str) -> CampaignLayout:
        return CampaignLayout(self.dir / name)


# --- reading SWEEP.toml ---------------------------------------------------------------------------


def load_sweep(path: str | Path) -> Sweep:
    """SWEEP.toml, validated; BadInput naming the file, table and key of the first problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: invalid TOML: {e}") from None
    for table in raw:
        if table not in ("sweep", "axes", "slurm"):
            raise BadInput(f"{path}: unknown table [{table}] (known: sweep, axes, slurm)")
    head = raw.get("sweep")
    if not isinstance(head, dict):
        raise BadInput(f"{path}: [sweep] table missing (base, executor, max_parallel)")
    for key, value in head.items():
        want = SWEEP_KEYS.get(key)
        if want is None:
            raise BadInput(f"{path}: [sweep] unknown key {key!r} (known: {', '.join(SWEEP_KEYS)})")
        if not isinstance(value, want) or isinstance(value, bool):
            raise BadInput(f"{path}: [sweep] {key} must be {want.__name__}, got {value!r}")
    if "base" not in head:
        raise BadInput(f"{path}: [sweep] base missing (the campaign directory the points start from)")
    executor = head.get("executor", "local")
    if executor not in EXECUTORS:
        raise BadInput(f"{path}: [sweep] executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    max_parallel = head.get("max_parallel", 1)
    if max_parallel < 1:
        raise BadInput(f"{path}: [sweep] max_parallel must be >= 1, got {max_parallel}")
    base_dir = path.parent / head["base"]
    try:
        base = resolve_campaign(base_dir)
    except BadInput as e:
        raise BadInput(f"{path}: [sweep] base: {e}") from None
    slurm = check_slurm(_section(path, "slurm", SlurmConfig, raw.get("slurm", {})), path)
    axes = _axes(path, raw.get("axes", {}))
    return Sweep(path, base, executor, max_parallel, axes, slurm)


def _axes(path: Path, raw: Any) -> list[tuple[str, list[Any]]]:
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: [axes] must be a table")
    axes = []
    for key, values in raw.items():
        if not isinstance(values, list) or not values:
            raise BadInput(f"{path}: [axes] {key} must be a non-empty list of values")
        if key != "schedule":
            table, _, name = key.partition(".")
            cls = SECTIONS.get(table)
            if cls is None or not name or name not in {f for f in cls.__dataclass_fields__}:
                raise BadInput(f"{path}: [axes] {key!r}: not a campaign.toml key (\"table.key\", e.g. "
                               f"\"finetune.lr\"; or schedule)")
        if len(set(map(repr, values))) != len(values):
            raise BadInput(f"{path}: [axes] {key} lists a value twice")
        axes.append((key, values))
    return axes


# --- the points -----------------------------------------------------------------------------------


def _label(value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def _short_names(keys: list[str]) -> dict[str, str]:
    """'finetune.lr' -> 'lr' unless two axes end alike, then the whole key."""
    last = [k.rpartition(".")[2] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def points(sweep: Sweep) -> list[Point]:
    """Every combination of the axes (in file order, last axis fastest), validated like a campaign."""
    from tierctl.core.schedule import load_schedule

    base_config = load_campaign_config(sweep.base.config).to_dict()
    base_schedule = sweep.base.schedule.read_text(encoding="utf-8")
    keys = [k for k, _ in sweep.axes]
    short = _short_names(keys)
    schedules: dict[str, str] = {}
    for key, values in sweep.axes:
        if key == "schedule":
            for v in values:
                if not isinstance(v, str):
                    raise BadInput(f"{sweep.path}: [axes] schedule: {v!r} is not a file name")
                schedules[v] = load_schedule(sweep.path.parent / v).to_csv()
    out, seen = [], {}
    for combo in itertools.product(*(values for _, values in sweep.axes)):
        values = dict(zip(keys, combo, strict=True))
        raw = {table: dict(body) for table, body in base_config.items()}
        for key, value in values.items():
            if key != "schedule":
                table, _, name = key.partition(".")
                raw[table][name] = value
        try:
            config = config_from_dict(raw, sweep.path)
        except BadInput as e:
            shown = ", ".join(f"{k} = {v!r}" for k, v in values.items() if k != "schedule")
            why = str(e).removeprefix(f"{sweep.path}: ")
            raise BadInput(f"{sweep.path}: [axes] {shown}: {why}") from None
        parts = [f"{short[k]}-{_label(Path(v).stem if k == 'schedule' else v)}" for k, v in values.items()]
        name = "_".join(parts) or "base"
        if name in seen:
            raise BadInput(f"{sweep.path}: points {seen[name]} and {values} would share the directory name {name}")
        seen[name] = values
        schedule = schedules[values["schedule"]] if "schedule" in values else base_schedule
        out.append(Point(name, values, config, schedule))
    return out


def ensure_points(sweep: Sweep, pts: list[Point]) -> list[str]:
    """Create the campaign directory of every point that has none (each in one rename). Returns the
    names created. An existing point must hold the same campaign.toml: a changed base or axis would
    otherwise mix two hypotheses under one name."""
    import os
    import shutil
    import tempfile

    created = []
    sweep.dir.mkdir(parents=True, exist_ok=True)
    for p in pts:
        layout = sweep.layout(p.name)
        text = dumps_config(p.config)
        if layout.root.exists():
            if not layout.config.is_file():
                raise BadInput(f"{layout.root}: exists but is not a campaign (no campaign.toml)")
            if load_campaign_config(layout.config) != p.config:
                raise BadInput(f"{layout.config}: differs from what {sweep.path} now makes of point {p.name} "
                               "(base or axes changed); remove that directory or name the sweep differently")
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{p.name}.", dir=sweep.dir))
        try:
            (tmp / "campaign.toml").write_text(text, encoding="utf-8")
            (tmp / "schedule.csv").write_text(p.schedule_csv, encoding="utf-8")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)
            os.rename(tmp, layout.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        created.append(p.name)
    return created


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
