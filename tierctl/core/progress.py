"""Progress of long work as `progress` events that say how far, how long so far and how long to go.

A step's work comes in countable units (decoder layers pruned, optimizer steps, evaluation windows).
`ProgressMeter` turns "unit N of M is done" into one `progress` event:

    {"event": "progress", "done": N, "total": M, "unit": "steps", "phase": "finetune",
     "elapsed_s": 41.9, "eta_s": 170.2, "tokens": 61440}

`phase` names the work being counted, so a reader never mistakes the windows of the ppl_pruned
measurement for those of the eval step, nor either for the prune's layers. `elapsed_s` counts from
the meter's start (this process's share of the work); `eta_s` extrapolates the rate of the units done
by this process (a resumed fine-tune does not count the steps of the run before it), and is null
until the first unit is done. The clock is injectable so tests need not wait. No torch here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]


def eta_seconds(elapsed: float, done: int, total: int, start_done: int = 0) -> float | None:
    """Seconds left at the rate seen so far: elapsed per unit done since `start_done`, times the units left."""
    since = done - start_done
    if since <= 0 or elapsed <= 0:
        return None
    return max(0.0, elapsed / since * (total - done))


class ProgressMeter:
    """Emits `progress` events for one phase of a step through an EventSink (or anything with `emit`).

    `every_s` throttles: an update is emitted when at least that long passed since the last one, and
    always for the first unit after the start (so progress shows from the first optimizer step), the
    last unit, and when `force=True`. 0 emits every update.
    """

    def __init__(self, sink: Any, total: int, unit: str, phase: str, *, start_done: int = 0,
                 every_s: float = 0.0, clock: Clock = time.monotonic) -> None:
        self.sink = sink
        self.total = total
        self.unit = unit
        self.phase = phase
        self.start_done = start_done
        self.every_s = every_s
        self.clock = clock
        self.t0 = clock()
        self._last: float | None = None

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def update(self, done: int, *, force: bool = False, **extra: Any) -> bool:
        """Report that `done` units are done; returns whether an event was emitted."""
        now = self.clock()
        due = (force or self._last is None or done >= self.total or done == self.start_done + 1
               or now - self._last >= self.every_s)
        if not due or self.sink is None:
            return False
        self._last = now
        elapsed = now - self.t0
        eta = eta_seconds(elapsed, done, self.total, self.start_done)
        self.sink.emit("progress", done=done, total=self.total, unit=self.unit, phase=self.phase,
                       elapsed_s=round(elapsed, 3), eta_s=None if eta is None else round(eta, 3), **extra)
        return True


def format_duration(seconds: float | None) -> str:
    """`0:42`, `12:05`, `1:02:03`; an empty string for unknown."""
    if seconds is None:
        return ""
    s = int(max(0.0, seconds) + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


UNIT_WORDS = {"steps": "step", "layers": "layer", "windows": "window"}
PHASE_WORDS = {"prune": "pruning", "finetune": "fine-tuning", "ppl_pruned": "measuring ppl_pruned",
               "ppl": "measuring ppl"}


def describe(p: dict[str, Any], now_elapsed: float | None = None) -> str:
    """One line for a `progress` event's fields: `fine-tuning: step 120 of 677 (18%), 61,440 tokens,
    4:12 elapsed, about 19:30 left`. The phase is named, so windows of ppl_pruned never read as those of
    the eval step. `now_elapsed` (seconds since the event's phase began, as of now) replaces the event's
    own elapsed time, and the time left shrinks by the time since the event."""
    done, total = int(p.get("done") or 0), int(p.get("total") or 0)
    unit = str(p.get("unit") or "")
    phase = str(p.get("phase") or "")
    word = UNIT_WORDS.get(unit, unit)
    parts = [f"{word} {done} of {total}" + (f" ({100 * done / total:.0f}%)" if total else "")]
    if p.get("tokens") is not None:
        parts.append(f"{int(p['tokens']):,} tokens")
    elapsed = p.get("elapsed_s")
    eta = p.get("eta_s")
    if now_elapsed is not None and isinstance(elapsed, (int, float)):
        if isinstance(eta, (int, float)):
            eta = max(0.0, eta - (now_elapsed - elapsed))
        elapsed = now_elapsed
    if isinstance(elapsed, (int, float)):
        parts.append(f"{format_duration(elapsed)} elapsed")
    if isinstance(eta, (int, float)) and done < total:
        parts.append(f"about {format_duration(eta)} left")
    head = PHASE_WORDS.get(phase, phase)
    return (f"{head}: " if head else "") + ", ".join(parts)
