"""Running a campaign's steps in the test process: the entry points the runner starts as subprocesses."""

from __future__ import annotations

from tierctl.campaign.layout import CampaignLayout


def run_steps(layout: CampaignLayout, n: int, steps: tuple[str, ...] = ("prune", "finetune", "eval")) -> None:
    """The steps of iteration n, in this process (the same entry points the runner starts)."""
    from tierctl.steps import eval as eval_step
    from tierctl.steps import finetune, prune

    mains = {"prune": prune.main, "finetune": finetune.main, "eval": eval_step.main}
    for step in steps:
        assert mains[step](["--campaign", str(layout.root), "--iter", str(n)]) == 0, step
