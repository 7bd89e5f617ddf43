"""`[run] launcher = "slurm"`: the fine-tune step as one submitit job of nodes x gpus_per_node tasks.

Each task of the job gets its rank from submitit's `helpers.TorchDistributedEnvironment` (MASTER_ADDR =
the job's first node, a MASTER_PORT derived from the job id, RANK = the task's global rank, LOCAL_RANK,
WORLD_SIZE = nodes x tasks per node) and then *becomes* the fine-tune step (`os.execv` of
`python -m tierctl.steps finetune --campaign DIR --iter N`), exactly what torchrun would have started:
the step joins the process group with the env:// rendezvous, uses GPU LOCAL_RANK, and rank 0 writes
the files and events. Being the task itself (not a child of it), the step receives Slurm's signals
(scancel, time limit) directly and stops as it does under the runner.

The runner meanwhile waits for the job, follows the iteration's events.jsonl (rank 0 appends every event
there, on the shared filesystem) and keeps holding the campaign lock. Stopping the runner cancels the
job through submitit. The campaign directory must be on a filesystem every node sees (as for the manual
multi-node recipe); submitit's files go to `<campaign>/.submitit/`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from tierctl.core.events import Event, parse_line

RANK_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
POLL_S = 0.5


def rank_env() -> dict[str, str]:
    """In a submitit task: export the torch.distributed variables of this task and return them.

    CUDA_VISIBLE_DEVICES is left alone: the step picks `cuda:LOCAL_RANK` among the node's GPUs itself.
    """
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return {k: os.environ[k] for k in RANK_VARS}


def finetune_task(campaign: str, iteration: int) -> None:
    """What each task of the job runs: its rank variables, then the fine-tune step in its place."""
    rank_env()
    argv = [sys.executable, "-m", "tierctl.steps", "finetune", "--campaign", campaign, "--iter", str(iteration)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def tasks_per_node(slurm: Any) -> int:
    """One task per GPU (one on a CPU-only partition)."""
    return max(1, int(slurm.gpus_per_node))


class EventFollower:
    """New complete lines of an events.jsonl, from the size it had when the follower was made."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self._partial = b""

    def poll(self) -> list[tuple[Event, str]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for its end
        out = []
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").strip()
            event = parse_line(line)
            if event is not None:
                out.append((event, line))
        return out


def job_returncode(job: Any) -> int:
    """The job's exit status: the local controller's return code, or 0 / 1 from Slurm's final state."""
    process = getattr(job, "_process", None)
    if process is not None:
        code = process.poll()
        return code if code is not None else 1
    state = str(job.state)
    return 0 if state.startswith("COMPLETED") else 1


def run_finetune_job(runner: Any, iteration: int, executor: Any, log: Any) -> tuple[int, Event | None]:
    """Submit the fine-tune of `iteration`, follow its events until the job ends; (returncode, end event).

    `runner` is the StepRunner (its on_event, and `stopping` to cancel the job); `log` the step's log file.
    """
    layout = runner.layout
    follower = EventFollower(layout.events(iteration))
    job = executor.submit(finetune_task, str(layout.root.resolve()), iteration)
    runner.job = job
    log.write(f"submitted job {job.job_id} ({executor.cluster}); its logs: {job.paths.stdout}\n".encode())
    log.flush()
    end: Event | None = None
    cancelled = False
    try:
        while True:
            finished = job.done()
            for event, line in follower.poll():
                if event.event == "end" and event.step == "finetune":
                    end = event
                if runner.on_event is not None:
                    runner.on_event(event, line)
            if finished:
                break
            if runner.stopping and not cancelled:
                job.cancel(check=False)
                cancelled = True
            time.sleep(POLL_S)
    finally:
        if not job.done():
            job.cancel(check=False)
        runner.job = None
    return job_returncode(job), end
