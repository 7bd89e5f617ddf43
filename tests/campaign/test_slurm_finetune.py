"""`[run] launcher = "slurm"`: ranks of the job's tasks, and following the events rank 0 appends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tierctl.campaign.slurm import local_executor
from tierctl.campaign.slurm_finetune import EventFollower, rank_env
from tierctl.errors import BadInput


def test_each_task_of_a_two_task_job_gets_its_own_rank_and_one_rendezvous(tmp_path: Path) -> None:
    # Two real processes started by submitit (its LocalExecutor: one node, two tasks), as Slurm starts them.
    job = local_executor(tmp_path / ".submitit", tasks_per_node=2).submit(rank_env)

    envs = job.results()  # one per task, in task order

    assert [(e["RANK"], e["LOCAL_RANK"], e["WORLD_SIZE"], e["LOCAL_WORLD_SIZE"]) for e in envs] == [
        ("0", "0", "2", "2"), ("1", "1", "2", "2")]
    assert len({(e["MASTER_ADDR"], e["MASTER_PORT"]) for e in envs}) == 1  # both meet at one address


def test_the_follower_hands_over_complete_new_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    old = {"t": 1.0, "iter": 1, "step": "prune", "event": "end", "status": "ok"}
    path.write_text(json.dumps(old) + "\n")
    follower = EventFollower(path)
    start = json.dumps({"t": 2.0, "iter": 1, "step": "finetune", "event": "start"})
    with open(path, "a") as f:
        f.write(start + "\n" + start[:10])  # a line being written

    assert [line for _, line in follower.poll()] == [start]
    with open(path, "a") as f:
        f.write(start[10:] + "\n")
    assert [(e.step, e.event) for e, _ in follower.poll()] == [("finetune", "start")]
    assert follower.poll() == []


def test_without_slurm_the_slurm_launcher_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from tests.helpers import make_campaign
    from tierctl.campaign.plan import RunRequest
    from tierctl.campaign.runner import run_campaign

    layout = make_campaign(tmp_path, run={"launcher": "slurm"})
    with pytest.raises(BadInput, match=r"^\[run\] launcher slurm: no Slurm on this machine \(srun not found\)"):
        run_campaign(layout, RunRequest(all=True))
    assert sorted(p.name for p in layout.root.iterdir()) == ["campaign.toml", "schedule.csv"]


@pytest.mark.slow
def test_the_fine_tune_runs_as_one_job_of_two_ranks_and_the_runner_follows_its_events(tmp_path: Path) -> None:
    # The same code path as on Slurm, with submitit's LocalExecutor as the cluster: two real tasks, each
    # becoming the fine-tune step with the rank submitit gave it; rank 0 writes, the runner follows.
    from tests.lm.test_finetune_step import campaign
    from tierctl.campaign.plan import RunRequest
    from tierctl.campaign.runner import run_campaign

    layout = campaign(tmp_path, epochs=1, run={"launcher": "slurm", "strategy": "ddp"})
    seen: list[tuple[str, str]] = []

    outcome = run_campaign(layout, RunRequest(iteration=1, step="finetune"),
                           executor=local_executor(layout.root / ".submitit", tasks_per_node=2),
                           on_event=lambda e, line: seen.append((e.step, e.event)))

    assert outcome.exit_code == 0, outcome.message
    ledger = json.loads((layout.model(1) / "finetune.json").read_text())
    assert (ledger["processes"], ledger["strategy"], ledger["mask_violations"]) == (2, "ddp", 0)
    assert seen[0] == ("finetune", "start") and seen[-1] == ("finetune", "end")
