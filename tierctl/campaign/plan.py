"""Which steps a `tierctl run` performs, and what `--force` throws away first.

Planning reads the status only and raises BadInput for anything a user got wrong, so a refused run
writes nothing. `invalidate` is the one place that deletes campaign outputs (for --force), and it
runs only under the campaign lock, after the plan was accepted.

--force semantics (documented in the README):
- `--force` or `--force --step prune` on iteration N: removes iter<N>/ and every later iter<M>/
  (their tier maps and models descend from N's), then runs N (all steps, or only the prune).
- `--force --step finetune`: while N's fine-tune is not done, it starts afresh instead of resuming its
  checkpoint. Once done, iter<N>/model holds the fine-tuned weights: the pruned model is rebuilt from
  its input and iter<N>/keep.safetensors and checked against the prune's sha256 (tierctl/steps/restore.py:
  a changed input is refused, exit 2, nothing written), later iterations removed, N's ppl cleared (its
  eval measured the old fine-tune) and iter<N>/model put back to the pruned model; then the fine-tune
  runs again on the same masks, with either [run] store. Without a keep file (a campaign pruned before
  tierctl kept one) redoing the fine-tune means redoing the prune: refused, naming that command.
- `--force --step eval`: clears `ppl` of N (so a failed redo is not shown as done), runs eval again.
  Nothing depends on a perplexity, so later iterations stay.
- `--all --force`: removes every iteration, the reference included, and runs the whole campaign again.
- Iteration 0, the reference, has one step (eval). `--all` runs it first when it is not done; `--iter 0`
  runs it alone (`--force` remeasures it). No iteration waits for it: `--iter N` runs without it.
Nothing asks for confirmation: --force is the confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierctl.campaign.layout import CampaignLayout, remove_path
from tierctl.campaign.restore import run_restore
from tierctl.campaign.state import CampaignStatus
from tierctl.core.metrics import read_metrics, write_metrics
from tierctl.core.vocab import DONE, STEPS
from tierctl.errors import BadInput

FINETUNE_LEDGER = "finetune.json"  # in iter<N>/model: the fine-tune is done (tierctl/campaign/state.py)


@dataclass(frozen=True)
class RunRequest:
    """What the user asked `tierctl run` for."""

    iteration: int | None = None
    all: bool = False
    step: str | None = None
    force: bool = False


def check_request(req: RunRequest, n_iterations: int, schedule_path: object = "schedule.csv") -> None:
    """Flag errors that need no status (before anything is read beyond the schedule)."""
    if req.all and req.iteration is not None:
        raise BadInput("--all and --iter: give one of them")
    if not req.all and req.iteration is None:
        raise BadInput("give --iter N or --all")
    if req.all and req.step is not None:
        raise BadInput("--step runs one step of one iteration: use it with --iter N, not --all")
    if req.step is not None and req.step not in STEPS:
        raise BadInput(f"--step {req.step}: must be one of {', '.join(STEPS)}")
    if req.iteration == 0 and req.step not in (None, "eval"):
        raise BadInput(f"--step {req.step}: iteration 0 (the reference) has only an eval step")
    if req.iteration is not None and not 0 <= req.iteration <= n_iterations:
        raise BadInput(f"--iter {req.iteration}: {schedule_path} has iterations 1..{n_iterations} "
                       f"(and 0, the reference)")


def _run_hint(layout: CampaignLayout, n: int, force: bool = False) -> str:
    return f"tierctl run {layout.root} --iter {n}" + (" --force" if force else "")


def plan_run(layout: CampaignLayout, status: CampaignStatus, req: RunRequest) -> list[tuple[int, str]]:
    """The (iteration, step) pairs to run, in order; empty when everything asked for is done.

    Refuses (BadInput) when an earlier step is missing, when outputs of a later iteration exist while
    an earlier one is incomplete (they would be stale), and `--force` of a done fine-tune.
    """
    check_request(req, len(status.iterations), layout.schedule)
    reference = [(0, "eval")] if req.force or status.reference.steps["eval"] != DONE else []
    if req.all:
        if req.force:
            return reference + [(it.iteration, s) for it in status.iterations for s in STEPS]
        todo = [(it.iteration, s) for it in status.iterations for s in STEPS if it.steps[s] != DONE]
        if todo:
            _refuse_stale_later(layout, status, todo[0][0])
        return reference + todo

    n = req.iteration
    assert n is not None
    if n == 0:
        return reference
    it = status.iteration(n)
    redo_from_prune = req.force and req.step in (None, "prune")
    if req.step is None:
        steps = list(STEPS) if req.force else [s for s in STEPS if it.steps[s] != DONE]
    else:
        steps = [req.step] if (req.force or it.steps[req.step] != DONE) else []
    if not steps:
        return []
    first = steps[0]
    missing = status.missing_before(n)
    if missing is not None:
        m, step, state = missing
        error = status.iteration(m).errors.get(step)
        if error is not None and "damaged" in error:  # its own message names the file and the repair
            raise BadInput(f"iteration {n} needs iteration {m} complete: {error}")
        raise BadInput(f"iteration {n} needs iteration {m} complete: its {step} step is {state} "
                       f"(run: {_run_hint(layout, m)})")
    # Steps of this iteration before the first one asked for must be done (or be redone by --force).
    if not redo_from_prune:
        for s in STEPS[: STEPS.index(first)]:
            if it.steps[s] != DONE:
                raise BadInput(f"--step {first} of iteration {n} needs its {s} step, which is {it.steps[s]} "
                               f"(run: {_run_hint(layout, n)})")
    if req.force and req.step == "finetune" and it.steps["finetune"] == DONE and not layout.keep(n).is_file():
        raise BadInput(f"--force --step finetune: {layout.keep(n)} is missing, so the pruned model under the "
                       f"fine-tuned weights of {layout.model(n)} cannot be rebuilt; redo iteration {n} from its "
                       f"prune: {_run_hint(layout, n, force=True)}")
    if not redo_from_prune:
        _refuse_stale_later(layout, status, n)
    return [(n, s) for s in steps]


def _refuse_stale_later(layout: CampaignLayout, status: CampaignStatus, n: int) -> None:
    """Outputs of an iteration after an incomplete `n` descend from another history: refuse to mix them."""
    if status.iteration(n).complete:
        return
    for later in status.iterations[n:]:
        if later.steps["prune"] == DONE:
            raise BadInput(f"{layout.iter_dir(later.iteration)} has outputs although iteration {n} is not "
                           f"complete; redo from iteration {n}: {_run_hint(layout, n, force=True)}")


def invalidate(layout: CampaignLayout, req: RunRequest) -> list[str]:
    """Delete what a --force run redoes and everything that depends on it. Returns what was removed.

    Call only while holding the campaign lock, after plan_run accepted the request.
    """
    if not req.force:
        return []
    removed: list[str] = []

    def drop_from(first: int) -> None:
        for m in layout.iterations_on_disk():
            if m >= first:
                remove_path(layout.iter_dir(m))
                removed.append(str(layout.iter_dir(m)))

    if req.all:
        drop_from(0)
    elif req.iteration == 0:
        remove_path(layout.metrics(0))  # the reference is not done while it is remeasured
        removed.append(f"{layout.metrics(0)}")
    elif req.step in (None, "prune"):
        assert req.iteration is not None
        drop_from(req.iteration)
    elif req.step == "finetune":
        n = req.iteration
        assert n is not None
        if (layout.model(n) / FINETUNE_LEDGER).is_file() and layout.keep(n).is_file():
            later = [str(layout.iter_dir(m)) for m in layout.iterations_on_disk() if m > n]
            metrics = read_metrics(layout.metrics(n))
            run_restore(layout, n)  # checks the rebuild first: refused, it has written nothing
            removed += later + ([f"{layout.metrics(n)}: ppl"] if metrics is not None and metrics.ppl is not None
                                else [])
            removed.append(f"{layout.model(n)}: the fine-tuned model (the pruned one rebuilt from {layout.keep(n)})")
        if layout.finetune_checkpoint(n).exists():
            remove_path(layout.finetune_checkpoint(n))
            removed.append(str(layout.finetune_checkpoint(n)))
        drop_from(n + 1)
    elif req.step == "eval":
        assert req.iteration is not None
        metrics = read_metrics(layout.metrics(req.iteration))
        if metrics is not None and metrics.ppl is not None:
            write_metrics(layout.metrics(req.iteration), metrics.merged(ppl=None, ppl_interval=None))
            removed.append(f"{layout.metrics(req.iteration)}: ppl")
    return removed
