"""Running steps: each prune, fine-tune and eval is its own subprocess, in its own process group.

`python -m tierctl.steps STEP --campaign DIR --iter N` (the fine-tune optionally under
`python -m torch.distributed.run --standalone --nproc_per_node K`). The step's stdout is its event
stream (docs/events.md), parsed line by line and handed to a callback; its stderr (tracebacks,
library noise) is appended to `logs/iter<N>-<step>.log`.

Why a process group and the lock fd:
- `start_new_session=True` puts the step (and anything it forks) in a group of its own, so a stop
  reaches every process of the step with one `killpg`, and a Ctrl-C in the terminal reaches only the
  runner, which then stops the step in order (SIGTERM, a grace period, SIGKILL).
- The campaign lock's descriptor is passed to the step (`pass_fds`), so the flock lives as long as
  either process: a step orphaned by a `kill -9` of the runner still keeps a second runner out, and
  once it dies the kernel frees the lock and the next runner takes it over. Each step is recorded in
  the lock file (tierctl.campaign.lock), so a refusal, `status` and `tierctl cancel` can name and
  reach it; `run --wait` waits for such a holder instead of refusing.

The dashboard and `tierctl run` both go through this module: there is no second implementation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierctl.campaign.check import run_check
from tierctl.campaign.config import CampaignConfig, load_config
from tierctl.campaign.guardrail import EXIT_HALTED, halted_message, record_halt
from tierctl.campaign.holder import Holder, campaign_holder, refusal, wait_until_free
from tierctl.campaign.init import check_model_spec, check_text_source
from tierctl.campaign.layout import CampaignLayout, clean_temporaries, refuse_symlinks, refuse_unwritable
from tierctl.campaign.lock import CampaignLock, LockHeld, record_step
from tierctl.campaign.plan import RunRequest, invalidate, plan_run
from tierctl.campaign.procs import process_groups, signal_groups
from tierctl.campaign.resume import resume_point, run_command
from tierctl.campaign.state import (
    campaign_status,
    iteration_status,
    load_campaign_schedule,
    reference_status,
)
from tierctl.core.events import Event, parse_line
from tierctl.core.vocab import DONE
from tierctl.errors import BadInput

GRACE_S = 10.0  # seconds between SIGTERM and SIGKILL when stopping a step

OnEvent = Callable[[Event, str], None]  # (event, its raw JSON line without newline)


@dataclass
class StepResult:
    """How one step subprocess ended."""

    iteration: int
    step: str
    returncode: int
    end: Event | None  # the step's `end` event, None when it died before writing one
    log: Path
    stopped: bool = False  # stop() was called while it ran
    tail: str = ""  # last non-empty line the step wrote to its log (its reason when there is no end event)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.end is not None and self.end.get("status") == "ok"

    @property
    def killed(self) -> bool:
        """Ended by a signal before its end event: its outputs are incomplete, the step is interrupted."""
        return self.returncode < 0 and self.end is None

    @property
    def error(self) -> str:
        """One line: the step's own error, else how the process ended."""
        if self.end is not None and self.end.get("status") != "ok":
            return str(self.end.get("error") or "failed").splitlines()[0]
        if self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            why = ", not by tierctl cancel: often the out-of-memory killer" if name == "SIGKILL" else ""
            return f"its process was killed by {name}{why}"
        if self.tail:
            return self.tail
        if self.returncode == 0:
            return "exited without an end event"
        return f"exited with code {self.returncode} without an end event"


def step_argv(layout: CampaignLayout, iteration: int, step: str, launcher: str = "local", nproc: int = 1,
              python: str | None = None) -> list[str]:
    """The command line of one step. Only the fine-tune runs under torchrun (prune and eval are one process)."""
    py = python or sys.executable
    tail = ["-m", "tierctl.steps", step, "--campaign", str(layout.root.resolve()), "--iter", str(iteration)]
    if step == "finetune" and launcher == "torchrun":
        return [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *tail]
    return [py, *tail]


class StepRunner:
    """Runs one step at a time; `stop()` (safe from a signal handler or another thread) ends it.

    `on_event(event, line)` receives every event line of the step's stdout, in order, from the
    calling thread of `run()`. Lines that are not events go to the step's log file.
    """

    def __init__(self, layout: CampaignLayout, lock_fd: int | None = None, launcher: str = "local",
                 nproc: int = 1, on_event: OnEvent | None = None, grace: float = GRACE_S,
                 env: dict[str, str] | None = None, slurm: Any = None, executor: Any = None) -> None:
        self.layout = layout
        self.slurm = slurm  # [slurm] of campaign.toml, for launcher "slurm"
        self.executor = executor  # a submitit executor to use instead of Slurm's (launcher "slurm")
        self.job: Any = None  # the submitit job of a running launcher-"slurm" fine-tune
        self.lock_fd = lock_fd
        self.launcher = launcher
        self.nproc = nproc
        self.on_event = on_event
        self.grace = grace
        self.env = env
        self.stopping = False
        self.stop_signal: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._killer: threading.Timer | None = None

    @property
    def pid(self) -> int | None:
        """pid of the running step (its process group id too), None between steps."""
        return self._proc.pid if self._proc is not None else None

    def run(self, iteration: int, step: str) -> StepResult:
        if step == "finetune" and self.launcher == "slurm":
            return self._run_job(iteration, step)
        argv = step_argv(self.layout, iteration, step, self.launcher, self.nproc)
        log_path = self.layout.step_log(iteration, step)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        end: Event | None = None
        with open(log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            start = log.tell()
            proc = subprocess.Popen(  # noqa: S603  (our own interpreter and arguments)
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                start_new_session=True, pass_fds=(self.lock_fd,) if self.lock_fd is not None else (),
                env=self.env,
            )
            self._proc = proc
            if self.lock_fd is not None:
                record_step(self.lock_fd, proc.pid, iteration, step)  # start_new_session: its pid is its group
            if self.stopping:  # a stop that arrived while the process was being created
                self._terminate()
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    event = parse_line(line)
                    if event is None:
                        if line.strip():
                            log.write(raw if raw.endswith(b"\n") else raw + b"\n")
                            log.flush()
                        continue
                    if event.event == "end" and event.step == step:
                        end = event
                    if self.on_event is not None:
                        self.on_event(event, line.strip())
                returncode = proc.wait()
            finally:
                if proc.poll() is None:  # the reader itself failed (a callback raised): do not orphan the step
                    self._terminate()
                    proc.wait()
                self._proc = None
                if self._killer is not None:
                    self._killer.cancel()
                    self._killer = None
        return StepResult(iteration, step, returncode, end, log_path, self.stopping,
                          _last_line(log_path, start))

    def _run_job(self, iteration: int, step: str) -> StepResult:
        """The fine-tune as a submitit job of nodes x gpus_per_node tasks (tierctl.campaign.slurm_finetune)."""
        from tierctl.campaign.config import SlurmConfig
        from tierctl.campaign.slurm import slurm_executor
        from tierctl.campaign.slurm_finetune import run_finetune_job, tasks_per_node

        table = self.slurm or SlurmConfig()
        executor = self.executor or slurm_executor(self.layout.root / ".submitit", table, tasks_per_node(table),
                                                   f"tierctl-{self.layout.name}-iter{iteration}")
        log_path = self.layout.step_log(iteration, step)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {step} of iteration {iteration} as a submitit "
                      f"job\n".encode())
            log.flush()
            start = log.tell()
            returncode, end = run_finetune_job(self, iteration, executor, log)
        return StepResult(iteration, step, returncode, end, log_path, self.stopping, _last_line(log_path, start))

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop the running step (SIGTERM to its process groups, SIGKILL after the grace period).

        Also marks the runner as stopping, so a campaign run starts no further step.
        """
        self.stopping = True
        if self.stop_signal is None:
            self.stop_signal = signum
        if self._proc is not None:
            self._terminate()

    def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        groups = process_groups(proc.pid)
        signal_groups(groups, signal.SIGTERM)
        if self._killer is None:
            def kill() -> None:
                if proc.poll() is None:
                    signal_groups(groups | process_groups(proc.pid), signal.SIGKILL)

            self._killer = threading.Timer(self.grace, kill)
            self._killer.daemon = True
            self._killer.start()


def _last_line(path: Path, offset: int) -> str:
    """The last non-empty line written to `path` after `offset` (bounded read)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(offset, size - 4096))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1] if lines else ""


# --- a whole `tierctl run`: lock, plan, --force, steps in order ------------------------------------

OnStep = Callable[[int, str, "StepResult | None"], None]  # (iteration, step, None at start / result at end)


@dataclass
class RunOutcome:
    """How a run ended: the exit code of `tierctl run` and its one-line message (empty when all went well)."""

    exit_code: int
    message: str = ""
    results: list[StepResult] | None = None
    removed: list[str] | None = None  # what --force deleted


def check_inputs(layout: CampaignLayout, config: CampaignConfig, plan: list[tuple[int, str]]) -> None:
    """The cheap checks of `tierctl init` again, for a hand-edited campaign.toml: an unknown preset or a
    missing file is refused before anything is written, not by a step after it started.

    The base model only matters to the prune of iteration 1 (later iterations start from iter<N-1>/model).
    """
    if (0, "eval") in plan or (1, "prune") in plan:  # iteration 0 measures the base model too
        check_model_spec(config.model.name, f"{layout.config}: [model] name")
    if plan:
        check_text_source(config.data.calib, f"{layout.config}: [data] calib")
        check_text_source(config.data.eval, f"{layout.config}: [data] eval")


def check_launcher(launcher: str, plan: list[tuple[int, str]], executor: Any = None) -> None:
    """Launcher "slurm" needs Slurm on this machine for a fine-tune to submit (refused before any write)."""
    import shutil

    if launcher == "slurm" and executor is None and any(step == "finetune" for _, step in plan) \
            and shutil.which("srun") is None:
        raise BadInput("[run] launcher slurm: no Slurm on this machine (srun not found); use local or torchrun, "
                       "or run tierctl where sbatch works")


def _resume_note(layout: CampaignLayout, plan: list[tuple[int, str]]) -> str:
    """`iteration 1: the fine-tune resumes from its checkpoint at step 450 of 677; ` for the first step
    of the plan that is not done (empty when every step of the plan is done)."""
    for n, step in plan:
        if _step_state(layout, n, step) != DONE:
            return f"iteration {n}: {resume_point(layout, n, step)}; "
    return ""


def first_input_model(layout: CampaignLayout, plan: list[tuple[int, str]]) -> str | None:
    """The model the first planned step loads: None for the base model ([model] name), else a directory.

    The prune of iteration N > 1 starts from iter<N-1>/model; the fine-tune and eval read iter<N>/model.
    """
    n, step = plan[0]
    if n == 0:  # the reference measures the base model
        return None
    if step == "prune":
        return None if n == 1 else str(layout.model(n - 1))
    return str(layout.model(n))


def _warn(line: str) -> None:
    print(f"tierctl: warning: {line}", file=sys.stderr)


def _step_state(layout: CampaignLayout, n: int, step: str) -> str:
    """The state of one step under the lock (iteration 0 is the reference, with its eval step only)."""
    it = reference_status(layout, True) if n == 0 else iteration_status(layout, n, lock_held=True)
    return it.steps[step]


def run_campaign(layout: CampaignLayout, request: RunRequest, launcher: str | None = None,
                 nproc: int | None = None, on_event: OnEvent | None = None, on_step: OnStep | None = None,
                 grace: float = GRACE_S, handle_signals: bool = True, wait: bool = False,
                 on_wait: Callable[[Holder], None] | None = None, executor: Any = None, check: bool = True,
                 on_warning: Callable[[str], None] = _warn) -> RunOutcome:
    """Run the steps `request` asks for, holding the campaign lock. BadInput (exit 2) before any write.

    Order: campaign.toml and schedule are read, the request is planned and the check step
    (tierctl/steps/check.py: model, device, windows) runs *before* the lock is taken, so a refused run
    creates nothing; a request with nothing to do returns at once, without the lock; then, under the
    lock, the status is read again (another runner may have finished meanwhile), leftovers of killed
    writes are removed, --force deletes what it redoes, and the steps run one by one. A failed step ends
    the run (exit 1); SIGINT / SIGTERM stop the running step's process groups and end the run with 128 +
    the signal (130 / 143 / 129), leaving it resumable.

    A held campaign is refused naming its live holder (LockHeld), or with `wait` waited for
    (`on_wait(holder)` at every look) and then planned afresh: what the holder finished is not redone.

    Launcher "slurm" submits the fine-tune through submitit: to Slurm, or to `executor` when given.
    """
    config = load_config(layout.config)
    schedule = load_campaign_schedule(layout)
    refuse_symlinks(layout)
    if config.run.store == "packed" and config.prune.method != "progressive":
        on_warning(f"{layout.config}: [run] store packed: [prune] method {config.prune.method!r} has no tier map "
                   f"to pack by, so this campaign's iteration models are kept dense")
    while True:
        holder = campaign_holder(layout)
        if holder is not None:
            if not wait:
                raise LockHeld(refusal(layout, holder), holder.record)
            wait_until_free(layout, on_wait)
        status = campaign_status(layout, schedule)
        plan = plan_run(layout, status, request)  # refuse bad requests before writing
        if status.halt is not None and (request.all or any(n > status.halt.iteration for n, _ in plan)):
            return RunOutcome(EXIT_HALTED, halted_message(layout, status.halt), [], [])
        if not plan:  # all done: tidy leftovers of killed writes if the campaign can be written, else nothing
            with contextlib.suppress(OSError, LockHeld):  # (a finished campaign on a read-only disk answers too)
                with CampaignLock(layout.lock):
                    clean_temporaries(layout.root)
            return RunOutcome(0, "", [], [])
        refuse_unwritable(layout, sorted({n for n, _ in plan}))
        check_inputs(layout, config, plan)
        check_launcher(launcher or config.run.launcher, plan, executor)
        if check:  # what needs a tokenizer or the model's config, in a subprocess (no torch here)
            for warning in run_check(layout, first_input_model(layout, plan), sorted({s for _, s in plan}),
                                     launcher=launcher, nproc=nproc):
                on_warning(warning)
        try:
            lock = CampaignLock(layout.lock).acquire()
        except LockHeld as e:  # taken between our look and our try
            if not wait:
                raise LockHeld(refusal(layout, campaign_holder(layout)), e.record) from None
            continue
        break

    runner = StepRunner(layout, lock.fd, launcher or config.run.launcher, nproc or config.run.nproc,
                        on_event, grace, slurm=config.slurm, executor=executor)
    old_handlers = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: the terminal went away
            old_handlers[sig] = signal.signal(sig, lambda signum, frame: runner.stop(signum))
    try:
        status = campaign_status(layout, schedule)
        plan = plan_run(layout, status, request)
        clean_temporaries(layout.root)
        removed = invalidate(layout, request)
        results: list[StepResult] = []
        where = ""
        for n, step in plan:
            if runner.stopping:
                where = f"before iteration {n} {step}"
                break
            if on_step is not None:
                on_step(n, step, None)
            result = runner.run(n, step)
            results.append(result)
            if on_step is not None:
                on_step(n, step, result)
            if runner.stopping:
                where = f"{'after' if result.ok else ''} iteration {n} {step}".lstrip()
                break
            if not result.ok and result.killed:  # by a signal from outside: interrupted, as status says
                return RunOutcome(1, f"iteration {n} {step} interrupted: {result.error} (log: {result.log}); "
                                     f"{_resume_note(layout, plan)}resume with: {run_command(layout, request)}",
                                  results, removed)
            if not result.ok:  # a step that failed is exit 1, whatever its own code (bad input is refused earlier)
                return RunOutcome(1, f"iteration {n} {step} failed: {result.error} (log: {result.log})",
                                  results, removed)
            if _step_state(layout, n, step) != DONE:
                return RunOutcome(1, f"iteration {n} {step} ended ok but its outputs are missing "
                                     f"(log: {result.log})", results, removed)
            if step == "eval" and config.run.max_ppl_ratio > 0:
                # Any halt now stops the run: the reference (iteration 0) just measured can put an iteration
                # that already ran over the ratio, as well as the iteration whose eval just ended.
                halt = campaign_status(layout, schedule).halt
                if halt is not None:
                    record_halt(layout, halt, schedule)
                    return RunOutcome(EXIT_HALTED, halted_message(layout, halt), results, removed)
        if runner.stopping:
            sig = runner.stop_signal or signal.SIGTERM
            return RunOutcome(128 + sig, f"interrupted ({signal.Signals(sig).name}): stopped {where or 'the run'}; "
                                         f"{_resume_note(layout, plan)}resume with: {run_command(layout, request)}",
                              results, removed)
        return RunOutcome(0, "", results, removed)
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        lock.release()
