"""Where a stopped campaign goes on from, and the command that goes on.

Every message about resuming (the runner's interrupt message, `tierctl status`, the dashboard's cancel
dialog) says where the rerun starts, from the files alone: a prune or an eval starts over; a fine-tune
goes on from its checkpoint (`iter<N>/finetune_ckpt/state.json`: the optimizer step it holds, and the
run's total in its fingerprint) or, without one, from its first step. No torch: the checkpoint's JSON
is all that is read.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from tierctl.campaign.holder import last_progress_event
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.plan import RunRequest

STEP_WORDS = {"prune": "the prune", "finetune": "the fine-tune", "eval": "the eval"}


@dataclass(frozen=True)
class CheckpointPoint:
    step: int  # optimizer steps done
    total: int | None  # optimizer steps of the whole fine-tune, when the checkpoint says


def checkpoint_point(layout: CampaignLayout, n: int) -> CheckpointPoint | None:
    """The optimizer step iteration n's fine-tune checkpoint holds, or None when there is none."""
    try:
        state = json.loads((layout.finetune_checkpoint(n) / "state.json").read_text(encoding="utf-8"))
        step = int(state["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    total = (state.get("fingerprint") or {}).get("plan", {}).get("total_steps")
    return CheckpointPoint(step, int(total) if isinstance(total, int) else None)


def resume_point(layout: CampaignLayout, n: int, step: str) -> str:
    """`the fine-tune resumes from its checkpoint at step 450 of 677`, `the prune starts from the
    beginning`: what a rerun of `step` of iteration n does."""
    if step == "finetune":
        point = checkpoint_point(layout, n)
        if point is not None:
            of = f" of {point.total}" if point.total is not None else ""
            return f"the fine-tune resumes from its checkpoint at step {point.step}{of}"
        return "the fine-tune starts from its first step (it has no checkpoint yet)"
    return f"{STEP_WORDS.get(step, step)} starts from the beginning"


def run_command(layout: CampaignLayout, request: RunRequest) -> str:
    """The `tierctl run` command that goes on with `request`: the same iteration / step / --all, never
    --force (a forced redo was already cleared; forcing again would throw away the progress since)."""
    cmd = f"tierctl run {shlex.quote(str(layout.root))}"
    if request.all:
        return cmd + " --all"
    cmd += f" --iter {request.iteration}"
    return cmd + (f" --step {request.step}" if request.step else "")


def last_progress(layout: CampaignLayout, n: int, step: str) -> tuple[float, dict] | None:
    """(its time, its fields) of the last `progress` event of `step` in iteration n since that step's
    last start; None when it has reported none."""
    e = last_progress_event(layout.events(n), n, step)
    return None if e is None else (e.t, dict(e.data))


def progress_line(layout: CampaignLayout, n: int, step: str, now: float) -> str | None:
    """`fine-tuning: step 120 of 677 (18%), 61,440 tokens, 4:12 elapsed, about 19:30 left` for the
    running step, as of `now` (its elapsed time and time left moved on since its last event)."""
    from tierctl.core.progress import describe

    found = last_progress(layout, n, step)
    if found is None:
        return None
    t, data = found
    elapsed = data.get("elapsed_s")
    now_elapsed = elapsed + max(0.0, now - t) if isinstance(elapsed, (int, float)) else None
    return describe(data, now_elapsed=now_elapsed)


def next_resume_point(layout: CampaignLayout) -> str | None:
    """`iteration 1: the fine-tune resumes from its checkpoint at step 450 of 677` for the first step of
    the campaign that is not done; None when all is done (or the campaign cannot be read)."""
    from tierctl.campaign.state import campaign_status
    from tierctl.errors import TierctlError

    try:
        nxt = campaign_status(layout, check=False).next
    except (TierctlError, OSError):
        return None
    return None if nxt is None else f"iteration {nxt[0]}: {resume_point(layout, *nxt)}"
