"""The state of a campaign, derived from its directory and nothing else.

There is no second record (no database, no state file) that could disagree with the directory:
a step is `done` when its outputs are in place (docs/campaign.md), and `running` / `failed` /
`interrupted` come from the iteration's events.jsonl together with the campaign lock:

    prune    done <=> iter<N>/metrics.json exists (written last by the prune step)
    finetune done <=> prune done, iter<N>/model/finetune.json exists (the ledger, written with the model)
                      and the ledger is merged into metrics.json ("finetune"; a rerun of the step merges it)
    eval     done <=> finetune done and metrics.json "ppl" is not null
    otherwise, from the step's events: no start -> pending; last event `end` failed -> failed, or
    interrupted when its error is "interrupted" (Ctrl-C, SIGTERM, a cancel); a start without an end ->
    running while the lock is held and this is the iteration's newest start, else interrupted (the step
    was killed). An interrupted step is resumable from the files: running it again goes on.

Iteration 0 is the reference (the starting model, measured once): one step, `eval`, done <=>
iter0/metrics.json holds a ppl. It is `CampaignStatus.reference`, listed first by `to_json`; every later
ppl is also given as a ratio to it (`ppl_ratio`, `ppl_pruned_ratio`).

A half-written file never counts: every writer renames a temporary file into place, and the state
ignores temporary names. No torch, no pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tierctl.campaign.holder import Holder, campaign_holder
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import Event, read_events_checked
from tierctl.core.metrics import Metrics, read_metrics
from tierctl.core.vocab import DONE, FAILED, INTERRUPTED, PENDING, RUNNING, STEPS
from tierctl.errors import BadInput

# Columns of a schedule row that the prune of an iteration consumed (checked once it is done), and the
# one the fine-tune consumed (checked once the fine-tune is done).
PRUNE_COLUMNS = ("dense", "mid_2_4", "topk", "dense_to_2_4", "mid_2_4_to_topk")
FINETUNE_COLUMNS = ("epochs", "lr", "tokens_per_epoch")
TOLERANCE = 1e-9


@dataclass
class IterationStatus:
    """One row of the schedule and what the directory says about it."""

    iteration: int
    steps: dict[str, str] = field(default_factory=lambda: {s: PENDING for s in STEPS})
    composition: dict[str, float] | None = None
    sparsity: float | None = None
    ppl_pruned: float | None = None
    ppl: float | None = None
    per_layer: dict[str, dict[str, float]] | None = None
    errors: dict[str, str] = field(default_factory=dict)  # step -> last error, of failed and interrupted steps
    warnings: list[str] = field(default_factory=list)  # damaged but readable files (torn event lines)
    metrics: Metrics | None = None  # iter<N>/metrics.json as read (None before the prune is done)
    pid: int | None = None  # the process of the running step (set only while a step of it runs)
    orphaned: bool = False  # that step goes on alone: its runner died (it holds the lock until it ends)
    ppl_interval: list[float] | None = None  # [low, high], 95% (lm/evaluate.py INTERVAL)
    ppl_pruned_interval: list[float] | None = None
    zeroshot: dict[str, Any] | None = None  # {"tasks": {task: {acc, acc_stderr, ...}}, "mean_acc", ...}

    @property
    def complete(self) -> bool:
        return all(state == DONE for state in self.steps.values())

    @property
    def next_step(self) -> str | None:
        """The first step of this iteration that is not done (the one a resume starts with)."""
        return next((s for s, state in self.steps.items() if state != DONE), None)

    @property
    def running_step(self) -> str | None:
        return next((s for s, state in self.steps.items() if state == RUNNING), None)

    @property
    def mean_acc(self) -> float | None:
        """The mean zero-shot acc over the campaign's [eval] tasks, None without tasks."""
        return _number((self.zeroshot or {}).get("mean_acc"))

    def to_json(self, reference_ppl: float | None = None) -> dict[str, Any]:
        """The iteration object of docs/cli.md, plus the intervals, the ratios to the reference
        (iteration 0's ppl; null while it is not measured) and the zero-shot results; while one of its
        steps runs, also its `pid` and `orphaned`."""
        def ratio(v: float | None) -> float | None:
            return v / reference_ppl if v is not None and reference_ppl else None

        out = {
            "iteration": self.iteration,
            "steps": dict(self.steps),
            "composition": self.composition,
            "sparsity": self.sparsity,
            "ppl_pruned": self.ppl_pruned,
            "ppl": self.ppl,
            "ppl_pruned_interval": self.ppl_pruned_interval,
            "ppl_interval": self.ppl_interval,
            "ppl_pruned_ratio": ratio(self.ppl_pruned),
            "ppl_ratio": ratio(self.ppl),
            "zeroshot": self.zeroshot,
        }
        if self.running_step is not None:
            out.update(pid=self.pid, orphaned=self.orphaned)
        return out


@dataclass
class CampaignStatus:
    """Every iteration of the schedule, in order, and who holds the lock (None when nobody runs it)."""

    name: str
    iterations: list[IterationStatus]
    holder: Holder | None = None
    halt: Any = None  # tierctl.campaign.guardrail.Halt when the guardrail halted the campaign
    reference: IterationStatus = field(default_factory=lambda: IterationStatus(0, {"eval": PENDING}))

    @property
    def reference_ppl(self) -> float | None:
        return self.reference.ppl

    def iteration(self, n: int) -> IterationStatus:
        if not 1 <= n <= len(self.iterations):
            raise BadInput(f"--iter {n}: the schedule has iterations 1..{len(self.iterations)}")
        return self.iterations[n - 1]

    @property
    def complete(self) -> bool:
        return self.reference.complete and all(it.complete for it in self.iterations)

    @property
    def next(self) -> tuple[int, str] | None:
        """(iteration, step) a resume of the whole campaign runs next (iteration 0 first), or None when all is done."""
        for it in [self.reference, *self.iterations]:
            step = it.next_step
            if step is not None:
                return it.iteration, step
        return None

    @property
    def running(self) -> tuple[int, str] | None:
        for it in [self.reference, *self.iterations]:
            step = it.running_step
            if step is not None:
                return it.iteration, step
        return None

    def missing_before(self, n: int) -> tuple[int, str, str] | None:
        """(iteration, step, state) of the first step before iteration `n` that is not done, or None.

        Iteration N starts from iter<N-1>/model and tiers, so it needs every earlier iteration complete.
        """
        for it in self.iterations[: max(0, n - 1)]:
            step = it.next_step
            if step is not None:
                return it.iteration, step, it.steps[step]
        return None

    def to_json(self) -> dict[str, Any]:
        """`tierctl status --json` (docs/cli.md)."""
        ref = self.reference_ppl
        return {"campaign": self.name,
                "iterations": [it.to_json(ref) for it in [self.reference, *self.iterations]],
                "halted": self.halt.to_json() if self.halt is not None else None}


# --- reading the files ------------------------------------------------------------------------------


def _number(v: Any) -> float | None:
    """A finite float or None (metrics may hold null, NaN or a string by accident)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def _from_events(events: list[Event], step: str, lock_held: bool) -> tuple[str, str | None]:
    """(state, error) of a step that is not done, from the iteration's events."""
    mine = [e for e in events if e.step == step and e.event in ("start", "end")]
    if not mine:
        return PENDING, None
    last = mine[-1]
    if last.event == "end":
        if last.get("status") == "ok":
            # Ended ok but its outputs are not there (removed since, or the step wrote nothing): not done.
            return PENDING, None
        error = str(last.get("error") or "failed")
        return (INTERRUPTED if error == INTERRUPTED else FAILED), error
    newest_start = max((i for i, e in enumerate(events) if e.event == "start"), default=-1)
    if lock_held and events[newest_start] is last:
        return RUNNING, None
    return INTERRUPTED, "interrupted (no end event: the step was killed)"


def _mark_holder(it: IterationStatus, holder: Holder) -> None:
    """Name the process of a running step, and whether it is orphaned (its runner died)."""
    step = holder.step
    if step is not None and (step.iteration, step.step) == (it.iteration, it.running_step):
        it.pid, it.orphaned = step.pid, holder.orphaned
    else:  # a lock file that does not name its step (an older tierctl): the holder is all we know
        it.pid = holder.pid


def iteration_status(layout: CampaignLayout, n: int, lock_held: bool) -> IterationStatus:
    """What iter<N>/ says about iteration N (every step pending when the directory does not exist)."""
    it = IterationStatus(n)
    try:
        metrics = read_metrics(layout.metrics(n))
    except BadInput as e:  # damaged (a truncated write by another tool, a disk error): the prune must be redone
        metrics = None
        it.errors["prune"] = f"{e}: damaged; redo the iteration with: tierctl run {layout.root} --iter {n} --force"
    done = {
        "prune": metrics is not None,
        "finetune": metrics is not None and (layout.model(n) / "finetune.json").is_file()
        and isinstance(metrics.finetune, dict),
        "eval": False,
    }
    done["eval"] = done["finetune"] and metrics is not None and _number(metrics.ppl) is not None
    events, torn = read_events_checked(layout.events(n)) if layout.events(n).is_file() else ([], [])
    if torn:
        it.warnings.append(f"{layout.events(n)}: line{'s' if len(torn) > 1 else ''} "
                           f"{', '.join(map(str, torn))} not a complete event (a write was cut off); skipped")
    for step in STEPS:
        if done[step]:
            it.steps[step] = DONE
        elif step in it.errors:  # a damaged output: failed, whatever its events say
            it.steps[step] = FAILED
        else:
            it.steps[step], err = _from_events(events, step, lock_held)
            if err is not None and it.steps[step] in (FAILED, INTERRUPTED):
                it.errors[step] = err
    _read_values(it, metrics, done["eval"])
    return it


def _interval(v: Any) -> list[float] | None:
    """[low, high] of two finite numbers, else None."""
    if isinstance(v, list) and len(v) == 2 and all(_number(x) is not None for x in v):
        return [float(v[0]), float(v[1])]
    return None


def _read_values(it: IterationStatus, metrics: Metrics | None, evaluated: bool) -> None:
    """The numbers of metrics.json that status shows (ppl and its interval only once the eval is done)."""
    if metrics is not None:
        it.metrics = metrics
        comp = metrics.composition
        if isinstance(comp, dict):
            it.composition = {k: float(v) for k, v in comp.items() if _number(v) is not None}
        it.sparsity = _number(metrics.sparsity)
        it.ppl_pruned = _number(metrics.ppl_pruned)
        it.ppl = _number(metrics.ppl) if evaluated else None
        it.ppl_interval = _interval(metrics.ppl_interval) if evaluated else None
        it.ppl_pruned_interval = _interval(metrics.ppl_pruned_interval)
        zeroshot = metrics.zeroshot
        it.zeroshot = zeroshot if isinstance(zeroshot, dict) and evaluated else None
        per_layer = metrics.per_layer
        it.per_layer = per_layer if isinstance(per_layer, dict) else None


def reference_status(layout: CampaignLayout, lock_held: bool) -> IterationStatus:
    """Iteration 0: its eval step is done <=> iter0/metrics.json holds a ppl."""
    it = IterationStatus(0, {"eval": PENDING})
    try:
        metrics = read_metrics(layout.metrics(0))
    except BadInput as e:  # damaged: measure it again
        metrics = None
        it.errors["eval"] = f"{e}: damaged; measure it again with: tierctl run {layout.root} --iter 0 --force"
    done = metrics is not None and _number(metrics.ppl) is not None
    if done:
        it.steps["eval"] = DONE
    elif "eval" in it.errors:
        it.steps["eval"] = FAILED
    else:
        events, torn = read_events_checked(layout.events(0)) if layout.events(0).is_file() else ([], [])
        if torn:
            it.warnings.append(f"{layout.events(0)}: line{'s' if len(torn) > 1 else ''} "
                               f"{', '.join(map(str, torn))} not a complete event (a write was cut off); skipped")
        it.steps["eval"], err = _from_events(events, "eval", lock_held)
        if err is not None and it.steps["eval"] in (FAILED, INTERRUPTED):
            it.errors["eval"] = err
    _read_values(it, metrics, done)
    return it


def campaign_status(layout: CampaignLayout, schedule: Any | None = None, check: bool = True) -> CampaignStatus:
    """The status of every iteration of the schedule.

    `schedule` defaults to the campaign's schedule.csv (BadInput when it is missing or invalid).
    `check` also refuses a schedule that contradicts iterations that already ran (check_history).
    """
    if schedule is None:
        schedule = load_campaign_schedule(layout)
    holder = campaign_holder(layout)
    its = [iteration_status(layout, n, holder is not None) for n in range(1, len(schedule) + 1)]
    reference = reference_status(layout, holder is not None)
    for it in [reference, *its]:
        if holder is not None and it.running_step is not None:
            _mark_holder(it, holder)
    status = CampaignStatus(layout.name, its, holder, reference=reference)
    if check:
        check_history(layout, schedule, status)
    status.halt = _halt(layout, status, schedule)
    return status


def _halt(layout: CampaignLayout, status: CampaignStatus, schedule: Any) -> Any:
    """The guardrail's halt, when [run] max_ppl_ratio is set (an unreadable campaign.toml: none)."""
    from tierctl.campaign.config import load_config
    from tierctl.campaign.guardrail import find_halt

    try:
        ratio = load_config(layout.config).run.max_ppl_ratio
    except BadInput:
        return None
    return find_halt(layout, status.iterations, schedule, ratio)


def load_campaign_schedule(layout: CampaignLayout) -> Any:
    """The campaign's schedule.csv, parsed and validated (BadInput naming row and column otherwise)."""
    from tierctl.core.schedule import load_schedule

    if not layout.schedule.is_file():
        raise BadInput(f"{layout.schedule}: no such file")
    return load_schedule(layout.schedule)


def check_history(layout: CampaignLayout, schedule: Any, status: CampaignStatus) -> None:
    """Refuse a schedule edited so that it contradicts iterations that already ran.

    A done prune recorded its schedule row in metrics.json (`schedule_row`): the tier columns of that
    row must still match, and `epochs` too once the fine-tune is done. An iteration that ran beyond the
    end of the schedule is a contradiction as well (its row was deleted).
    """
    for it in status.iterations:
        recorded = it.metrics.schedule_row if it.metrics is not None else None
        if not isinstance(recorded, dict):
            continue
        row = schedule.row(it.iteration)
        columns = PRUNE_COLUMNS + (FINETUNE_COLUMNS if it.steps["finetune"] == DONE else ())
        for col in columns:
            was, now = _number(recorded.get(col)), _number(getattr(row, col, None))
            if was is None or now is None:
                continue
            if abs(was - now) > TOLERANCE:
                raise BadInput(
                    f"{layout.schedule}: iteration {it.iteration} column {col} is {now:g} but iteration "
                    f"{it.iteration} already ran with {was:g} (restore it, or redo: tierctl run "
                    f"{layout.root} --iter {it.iteration} --force)"
                )
    for n in layout.iterations_on_disk():
        if n > len(schedule) and layout.metrics(n).is_file():
            raise BadInput(
                f"{layout.schedule}: has iterations 1..{len(schedule)} but iteration {n} already ran "
                f"({layout.iter_dir(n)}): restore its row or remove that directory"
            )
