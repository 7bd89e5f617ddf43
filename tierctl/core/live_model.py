"""The live view model of one iteration's run, fed by its event stream (docs/events.md).

Headless on purpose (no Textual here): the dashboard applies every new event of a poll to one
`LiveModel`, then redraws its panels once, so the cost of drawing does not grow with the event rate.
The same model can back any other live view (a Rich Live panel, a test) and a recorded
events.jsonl replays into the same final state as the live stream did.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from tierctl.core.events import Event
from tierctl.core.progress import describe
from tierctl.core.vocab import DONE, FAILED, INTERRUPTED, PENDING, RUNNING, STEPS, TIER_KEYS


@dataclass
class StepView:
    """What is known of one step of the followed iteration."""

    status: str = PENDING
    done: int = 0
    total: int = 0
    unit: str = ""
    error: str | None = None
    started: float | None = None
    ended: float | None = None
    phase: str = ""  # what the progress counts: prune, ppl_pruned, finetune, ppl
    elapsed_s: float | None = None  # of the phase, as of the last progress event
    eta_s: float | None = None  # time left, as of the last progress event
    tokens: int | None = None  # fine-tune: training tokens so far
    progress_t: float | None = None  # when the last progress event was written

    def count_text(self, step: str) -> str:
        """`120/677 steps`; `ppl_pruned 8/44 windows` when the phase is not the step's own work, so the
        windows of the prune step's ppl_pruned never read as more of its layers."""
        if self.total <= 0:
            return ""
        what = f"{self.phase} " if self.phase and self.phase != step else ""
        return f"{what}{self.done}/{self.total} {self.unit}".strip()

    def progress_text(self, now: float | None = None) -> str:
        """`fine-tuning: step 120 of 677 (18%), 61,440 tokens, 4:12 elapsed, about 19:30 left` (empty
        before the first progress event). While the step runs, `now` moves elapsed and time left on
        from the last event."""
        if self.total <= 0:
            return ""
        fields = {"done": self.done, "total": self.total, "unit": self.unit, "phase": self.phase,
                  "elapsed_s": self.elapsed_s, "eta_s": self.eta_s, "tokens": self.tokens}
        live = (now is not None and self.status == RUNNING and self.progress_t is not None
                and self.elapsed_s is not None)
        return describe(fields, now_elapsed=self.elapsed_s + max(0.0, now - self.progress_t) if live else None)

    @property
    def fraction(self) -> float | None:
        """Progress in [0, 1], or None while the step has not said how much work there is."""
        if self.status == DONE:
            return 1.0
        if self.total <= 0:
            return None
        return min(1.0, max(0.0, self.done / self.total))


@dataclass(frozen=True)
class LogLine:
    step: str
    level: str
    msg: str


class Series:
    """A growing series of floats kept to at most `cap` points by decimation.

    A fine-tune reports its loss every step, and a long run has far more steps than a terminal has
    columns: once `cap` is reached every other point is dropped and only every `stride`-th new
    point is kept, so memory stays bounded and the curve keeps its shape.
    """

    def __init__(self, cap: int = 4096) -> None:
        self.cap = max(2, cap)
        self.points: list[float] = []
        self.xs: list[float] = []  # the x of each kept point: the optimizer step, or the report's number
        self.stride = 1
        self.count = 0  # every point ever appended, kept or not
        self.last: float | None = None
        self.by_step = True  # every point came with its optimizer step (so the x axis is that step)

    def append(self, value: float, x: float | None = None) -> None:
        """Append a value; `x` is its optimizer step (the event's `opt_step`), else its report number."""
        self.last = value
        if x is None:
            self.by_step = False
        if self.count % self.stride == 0:
            self.points.append(value)
            self.xs.append(float(self.count + 1) if x is None else x)
            if len(self.points) > self.cap:
                self.points, self.xs = self.points[::2], self.xs[::2]
                self.stride *= 2
        self.count += 1

    def clear(self) -> None:
        self.points, self.xs, self.stride, self.count, self.last, self.by_step = [], [], 1, 0, None, True

    def __len__(self) -> int:
        return len(self.points)


class LiveModel:
    """The state of the followed iteration's steps, built only from its events."""

    def __init__(self, iteration: int | None = None, log_lines: int = 500, loss_points: int = 4096) -> None:
        self.iteration = iteration
        self.steps: dict[str, StepView] = {s: StepView() for s in STEPS}
        self.current: str | None = None  # the step whose events came last
        self.layers: dict[str, dict[str, float]] = {}  # matrix name -> dense/semi/topk/sparsity, in order
        self.loss = Series(loss_points)
        self.metrics: dict[str, float] = {}  # latest value of each metric (ppl_pruned, ppl, lr, ...)
        self.log: deque[LogLine] = deque(maxlen=log_lines)
        self.log_count = 0  # log lines ever appended (the deque forgets; a log view needs what is new)
        self.events_applied = 0
        self.version = 0  # bumped once per `apply` that changed something: the redraw trigger
        self.phase_version = 0  # bumped on every start and end: the moments the files on disk change
        self.layers_version = 0  # bumped on every `layer` event (and when a prune restarts)
        self.last_t: float | None = None

    # ---- feeding ------------------------------------------------------------------------------

    def apply(self, events: Iterable[Event]) -> int:
        """Apply events in order; return how many were applied (0 leaves `version` alone)."""
        n = 0
        for e in events:
            self._apply_one(e)
            n += 1
        if n:
            self.events_applied += n
            self.version += 1
        return n

    def _apply_one(self, e: Event) -> None:
        if self.iteration is None:
            self.iteration = e.iter
        self.last_t = e.t
        step = self.steps.get(e.step)
        if step is None:  # a step this model does not know: keep its logs, nothing else
            if e.event == "log":
                self._log(e.step, str(e.get("level", "info")), str(e.get("msg", "")))
            return
        self.current = e.step
        kind = e.event
        if kind == "start":
            self.steps[e.step] = StepView(status=RUNNING, started=e.t)
            # A (re)started step makes what came after it stale: they will run again after it.
            for later in STEPS[STEPS.index(e.step) + 1 :]:
                self.steps[later] = StepView()
            if e.step == "prune":
                self.layers.clear()
                self.layers_version += 1
            elif e.step == "finetune":
                self.loss.clear()
        elif kind == "progress":
            step.done = int(e.get("done", 0) or 0)
            step.total = int(e.get("total", 0) or 0)
            step.unit = str(e.get("unit", "") or "")
            step.phase = str(e.get("phase", "") or "")
            step.elapsed_s = _number(e.get("elapsed_s"))
            step.eta_s = _number(e.get("eta_s"))
            tokens = _number(e.get("tokens"))
            step.tokens = int(tokens) if tokens is not None else None
            step.progress_t = e.t
            if step.status == PENDING:
                step.status = RUNNING
        elif kind == "layer":
            name = str(e.get("name", "?"))
            self.layers[name] = {k: float(e.get(k, 0.0) or 0.0) for k in (*TIER_KEYS, "sparsity")}
            self.layers_version += 1
        elif kind == "metric":
            name = str(e.get("name", ""))
            try:
                value = float(e.get("value"))
            except (TypeError, ValueError):
                return
            self.metrics[name] = value
            if name == "loss":
                self.loss.append(value, _number(e.get("opt_step")))
        elif kind == "log":
            self._log(e.step, str(e.get("level", "info")), str(e.get("msg", "")))
        elif kind == "end":
            ok = e.get("status") == "ok"
            step.error = None if ok else str(e.get("error") or "failed")
            step.status = DONE if ok else INTERRUPTED if step.error == INTERRUPTED else FAILED
            step.ended = e.t
            if not ok:
                self._log(e.step, "error", f"{e.step} failed: {step.error}")
        if kind in ("start", "end"):
            self.phase_version += 1

    def _log(self, step: str, level: str, msg: str) -> None:
        self.log.append(LogLine(step, level, msg))
        self.log_count += 1

    # ---- reading ------------------------------------------------------------------------------

    @property
    def running_step(self) -> str | None:
        """The step that started and has not ended, if any (as far as the events tell)."""
        for s in STEPS:
            if self.steps[s].status == RUNNING:
                return s
        return None

    @property
    def failed_step(self) -> str | None:
        """The first step that ended without success: failed, or interrupted (resumable)."""
        for s in STEPS:
            if self.steps[s].status in (FAILED, INTERRUPTED):
                return s
        return None

    def overall_composition(self) -> dict[str, float] | None:
        """Block fractions averaged over the matrices seen so far (unweighted), or None."""
        if not self.layers:
            return None
        n = len(self.layers)
        return {k: sum(v[k] for v in self.layers.values()) / n for k in (*TIER_KEYS, "sparsity")}


def _number(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
