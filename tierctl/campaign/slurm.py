"""Jobs through submitit: a [slurm] table as submitit parameters, executors, and job states.

submitit (the job launcher ML groups use on Slurm) does the scheduling: tierctl only says what to run
and with which resources. Used by sweeps (one job per campaign, tierctl.campaign.sweep) and by
`[run] launcher = "slurm"` (the fine-tune as one job of nodes x gpus_per_node tasks,
tierctl.campaign.slurm_finetune).

The [slurm] table (campaign.toml or SWEEP.toml, tierctl.campaign.config.SlurmConfig) maps to sbatch
options by name: partition, account, qos, constraint, nodes, gpus_per_node, cpus_per_task, mem_gb
(-> --mem), time (-> --time in minutes), `extra` (any other option, verbatim) and `setup` (shell
lines before the job starts). `sbatch_script` renders the script submitit would submit, with
submitit's own renderer, so `--dry-run` and the tests show exactly what goes to the cluster.

submitit keeps its own files (a pickled call and its logs per job) in a `.submitit/` folder next to
what it runs; they are submitit's, not campaign files. Imported lazily: `tierctl --help` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tierctl.campaign.config import SlurmConfig, slurm_minutes
from tierctl.errors import BadInput

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # local jobs: submitit's LocalExecutor kills a job after its timeout (default 2 min)


def sbatch_parameters(s: SlurmConfig, tasks_per_node: int = 1, name: str = "tierctl") -> dict[str, Any]:
    """The sbatch-level parameters of submitit's SlurmExecutor (`update_parameters` names) for a table."""
    params: dict[str, Any] = {"job_name": name, "nodes": s.nodes, "ntasks_per_node": tasks_per_node,
                              "time": slurm_minutes(s.time)}
    if s.gpus_per_node:
        params["gpus_per_node"] = s.gpus_per_node
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(s, key):
            params[key] = getattr(s, key)
    if s.cpus_per_task:
        params["cpus_per_task"] = s.cpus_per_task
    if s.mem_gb:
        from submitit.slurm.slurm import _convert_mem

        params["mem"] = _convert_mem(s.mem_gb)
    if s.setup:
        params["setup"] = list(s.setup)
    if s.extra:
        params["additional_parameters"] = {k: (str(v).lower() if isinstance(v, bool) else v)
                                           for k, v in s.extra.items()}
    return params


def slurm_executor(folder: Path, s: SlurmConfig, tasks_per_node: int = 1, name: str = "tierctl") -> Any:
    """submitit's AutoExecutor on Slurm with the table's settings (RuntimeError when there is no Slurm here)."""
    import submitit

    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as e:
        raise BadInput(f"executor slurm: {e} (sbatch/srun not found on this machine)") from None
    executor.update_parameters(**{f"slurm_{k}": v for k, v in sbatch_parameters(s, tasks_per_node, name).items()})
    return executor


def local_executor(folder: Path, tasks_per_node: int = 1, name: str = "tierctl") -> Any:
    """submitit's AutoExecutor on this machine (its LocalExecutor: one controller process per job)."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="local")
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, tasks_per_node=tasks_per_node, name=name)
    return executor


def sbatch_script(folder: Path, s: SlurmConfig, tasks_per_node: int = 1, name: str = "tierctl") -> str:
    """The sbatch script submitit writes for these settings (its renderer, the parameters we pass)."""
    import shlex
    import sys

    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, **sbatch_parameters(s, tasks_per_node, name))


def job_state(folder: Path, executor: str, job_id: str) -> str | None:
    """Slurm's state of a job (PENDING, RUNNING, COMPLETED, ...) through submitit; None when unknown
    (local jobs, which the campaign lock describes better, or no Slurm to ask)."""
    if executor != "slurm" or not job_id:
        return None
    try:
        import submitit

        return str(submitit.SlurmJob(folder=folder, job_id=job_id).state)
    except Exception:  # noqa: BLE001  (sacct missing or failing: the campaign's own files still say enough)
        return None


def cancel_job(folder: Path, executor: str, job_id: str) -> bool:
    """Cancel one job through submitit (scancel on Slurm). Local jobs: SIGINT to the job's controller,
    which submitit's LocalJob.cancel sends when it holds the process; here the job was submitted by
    another `tierctl sweep`, so its controller is signalled by pid. Returns whether a job was reached."""
    import os
    import signal

    if not job_id:
        return False
    if executor == "slurm":
        import submitit

        try:
            submitit.SlurmJob(folder=folder, job_id=job_id).cancel(check=False)
        except Exception:  # noqa: BLE001
            return False
        return True
    try:
        pid = int(job_id)
        if not _is_submitit_controller(pid):
            return False
        os.kill(pid, signal.SIGINT)
        return True
    except (ValueError, ProcessLookupError, PermissionError):
        return False


def _is_submitit_controller(pid: int) -> bool:
    """The pid is still a submitit local controller (not a recycled pid of something else)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"submitit.local._local" in f.read()
    except OSError:
        return False
