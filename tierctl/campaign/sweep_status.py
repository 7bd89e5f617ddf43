"""The state of a sweep, read from the campaign directories of its points (and Slurm's queue).

One state per point, from its campaign only: `done` (complete), `halted` (its guardrail stopped it),
`running` (its lock is held, or its Slurm job runs), `failed` (a step failed or was killed; the next
`tierctl sweep` resumes it), `pending` (not started, or its Slurm job is queued). The best point at
each sparsity compares the complete iterations of every point: the lowest ppl per sparsity level
(rounded to 0.1%), so schedules that reach the same sparsity by different paths meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tierctl.campaign.state import campaign_status
from tierctl.campaign.sweep import read_jobs
from tierctl.campaign.sweep_spec import Sweep, points
from tierctl.core.vocab import FAILED, INTERRUPTED
from tierctl.errors import TierctlError

STATES = ("pending", "running", "done", "failed", "halted")
FINISHED = ("done", "halted")
SLURM_QUEUED = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED")


@dataclass
class PointStatus:
    name: str
    path: str
    state: str
    iteration: int = 0  # last complete iteration (0: none yet)
    sparsity: float | None = None
    ppl: float | None = None
    reason: str = ""
    job_id: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    curve: list[tuple[int, float, float]] = field(default_factory=list)  # (iteration, sparsity, ppl) complete

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "state": self.state, "iteration": self.iteration,
                "sparsity": self.sparsity, "ppl": self.ppl, "job_id": self.job_id or None,
                "reason": self.reason or None, "values": self.values}


def point_status(sweep: Sweep, name: str, job: dict[str, Any] | None = None, values: dict[str, Any] | None = None
                 ) -> PointStatus:
    """What the campaign of point `name` says, with its recorded job (for a queued Slurm job)."""
    from tierctl.campaign.slurm import job_state

    layout = sweep.layout(name)
    job = job or {}
    out = PointStatus(name, str(layout.root), "pending", job_id=str(job.get("job_id") or ""), values=values or {})
    if not layout.config.is_file():
        return out
    try:
        st = campaign_status(layout)
    except TierctlError as e:
        out.state, out.reason = "failed", str(e).splitlines()[0]
        return out
    for it in st.iterations:
        if it.complete and it.ppl is not None and it.sparsity is not None:
            out.curve.append((it.iteration, it.sparsity, it.ppl))
            out.iteration, out.sparsity, out.ppl = it.iteration, it.sparsity, it.ppl
    halt = getattr(st, "halt", None)
    errors = [(it.iteration, step, err) for it in st.iterations for step, err in it.errors.items()
              if it.steps[step] in (FAILED, INTERRUPTED)]
    stopped = [e for e in errors if e[2].startswith("interrupted")]  # killed or cancelled: resumable
    slurm = job_state(sweep.submitit_dir, str(job.get("executor", "")), out.job_id)
    if st.holder is not None:
        out.state, out.reason = "running", getattr(st.holder, "where", str(st.holder))
    elif halt is not None:
        out.state, out.reason = "halted", str(getattr(halt, "reason", halt))
    elif st.complete:
        out.state = "done"
    elif slurm in SLURM_QUEUED:
        out.state, out.reason = "pending", f"slurm {slurm}"
    elif slurm == "RUNNING":
        out.state, out.reason = "running", "slurm RUNNING"
    elif stopped and len(stopped) == len(errors):
        n, step, _ = stopped[0]
        out.state, out.reason = "pending", f"stopped in iteration {n} {step}; the next sweep resumes it"
    elif errors:
        n, step, err = errors[0]
        out.state, out.reason = "failed", f"iteration {n} {step}: {err}"
    return out


def sweep_status(sweep: Sweep) -> dict[str, Any]:
    """`tierctl sweep status --json`: {"sweep", "campaigns": [...], "best": [...]}."""
    jobs = read_jobs(sweep)
    rows = [point_status(sweep, p.name, jobs.get(p.name), p.values) for p in points(sweep)]
    return {"sweep": str(sweep.path), "dir": str(sweep.dir), "campaigns": [r.to_json() for r in rows],
            "best": best_points(rows)}


def best_points(rows: list[PointStatus]) -> list[dict[str, Any]]:
    """Per sparsity level reached by a complete iteration (rounded to 0.1%): the point with the lowest ppl."""
    best: dict[float, dict[str, Any]] = {}
    for r in rows:
        for n, sparsity, ppl in r.curve:
            level = round(sparsity, 3)
            if level not in best or ppl < best[level]["ppl"]:
                best[level] = {"sparsity": sparsity, "name": r.name, "iteration": n, "ppl": ppl}
    return [best[k] for k in sorted(best)]
