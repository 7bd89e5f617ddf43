"""The guardrail `[run] max_ppl_ratio`: halt a campaign whose perplexity jumps.

After iteration N's eval, if `ppl(N) > max_ppl_ratio x ppl(N-1)` (for iteration 1: the unpruned
reference's ppl, iter0, when it was measured) the campaign is *halted*: `tierctl run` exits 3 and
runs no later iteration until a person decides. Off when the ratio is 0 (the default).

Like every state, `halted` is derived from the files, not stored: the ppls in metrics.json and the
ratio in campaign.toml say whether a limit was crossed. What a person does about it is the one thing
recorded: when the runner halts at N it writes `guardrail` into iter<N>/metrics.json with the schedule
rows after N as they were (`rows_after`). Editing those rows (what comes next is a new decision)
releases the halt; so does raising or removing max_ppl_ratio, or forking the campaign with another
continuation. Redoing iteration N (--force) re-measures it and decides again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tierctl.campaign.layout import CampaignLayout
from tierctl.core.metrics import read_metrics, update_metrics

EXIT_HALTED = 3
RECORD = "guardrail"


@dataclass(frozen=True)
class Halt:
    """Iteration N crossed the limit: its ppl, the reference it was compared with, the ratio."""

    iteration: int
    ppl: float
    reference: float
    reference_iteration: int  # N-1, or 0 for the unpruned reference
    ratio: float

    @property
    def reason(self) -> str:
        ref = "the unpruned reference" if self.reference_iteration == 0 else f"iteration {self.reference_iteration}"
        return (f"iteration {self.iteration} ppl {self.ppl:.4g} > {self.ratio:g} x {ref}'s {self.reference:.4g} "
                f"([run] max_ppl_ratio)")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "reason": self.reason}


def rows_after(schedule: Any, n: int) -> list[str]:
    """The schedule rows after iteration n, as schedule.csv writes them (comparable across edits)."""
    lines = schedule.to_csv().splitlines()
    header = lines[0]
    return [header + "\n" + line for line in lines[1 + n:]] if len(lines) > 1 + n else []


def reference_ppl(layout: CampaignLayout) -> float | None:
    """ppl of the unpruned reference (iter0/metrics.json), when it was measured."""
    try:
        metrics = read_metrics(layout.metrics(0))
    except Exception:  # noqa: BLE001  (a broken reference only means there is nothing to compare iteration 1 with)
        return None
    ppl = metrics.ppl if metrics is not None else None
    return float(ppl) if isinstance(ppl, (int, float)) and not isinstance(ppl, bool) and ppl > 0 else None


def find_halt(layout: CampaignLayout, iterations: list[Any], schedule: Any, ratio: float) -> Halt | None:
    """The first iteration that crossed the limit and whose halt was not released, or None."""
    if ratio <= 0:
        return None
    prev, prev_n = reference_ppl(layout), 0
    for it in iterations:
        if it.ppl is None:
            break
        if prev is not None and it.ppl > ratio * prev:
            record = it.metrics.guardrail if it.metrics is not None else None
            released = isinstance(record, dict) and record.get("rows_after") != rows_after(schedule, it.iteration)
            if not released:
                return Halt(it.iteration, it.ppl, prev, prev_n, ratio)
        prev, prev_n = it.ppl, it.iteration
    return None


def record_halt(layout: CampaignLayout, halt: Halt, schedule: Any) -> None:
    """Write the halt into iter<N>/metrics.json (atomically; under the campaign lock)."""
    update_metrics(layout.metrics(halt.iteration),
                   guardrail={**halt.to_json(), "rows_after": rows_after(schedule, halt.iteration)})


def halted_message(layout: CampaignLayout, halt: Halt) -> str:
    return (f"halted: {halt.reason}; to go on, edit the schedule rows after iteration {halt.iteration}, or fork it: "
            f"tierctl fork {layout.root}@{halt.iteration} NEW --schedule CSV")
