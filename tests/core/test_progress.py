"""Progress events: how far, how long so far, how long to go (core/progress.py)."""

from __future__ import annotations

from typing import Any

from tierctl.core.progress import ProgressMeter, eta_seconds, format_duration


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: str, **data: Any) -> None:
        self.events.append({"event": event, **data})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_eta_extrapolates_the_rate_of_the_units_done_here() -> None:
    assert eta_seconds(10.0, 2, 10) == 40.0
    assert eta_seconds(10.0, 452, 677, start_done=450) == 5.0 * 225  # a resumed run: 2 steps in 10 s
    assert eta_seconds(0.0, 0, 10) is None and eta_seconds(5.0, 450, 677, start_done=450) is None


def test_the_first_unit_and_the_last_are_reported_and_the_rest_throttled() -> None:
    sink, clock = Recorder(), Clock()
    meter = ProgressMeter(sink, 4, "steps", "finetune", every_s=1.0, clock=clock)
    for done in range(1, 5):
        clock.now += 0.4
        meter.update(done, tokens=done * 8)
    assert [e["done"] for e in sink.events] == [1, 4]  # 2 and 3 came within a second of the last event
    first = sink.events[0]
    assert first == {"event": "progress", "done": 1, "total": 4, "unit": "steps", "phase": "finetune",
                     "elapsed_s": 0.4, "eta_s": 1.2, "tokens": 8}
    assert sink.events[-1]["eta_s"] == 0.0


def test_durations_read_as_clock_times() -> None:
    assert [format_duration(s) for s in (None, 42, 725, 3723)] == ["", "0:42", "12:05", "1:02:03"]


def test_a_progress_line_names_its_phase_and_says_how_long_is_left() -> None:
    from tierctl.core.progress import describe

    p = {"done": 120, "total": 677, "unit": "steps", "phase": "finetune", "elapsed_s": 252.0, "eta_s": 1170.0,
         "tokens": 61440}
    assert describe(p) == "fine-tuning: step 120 of 677 (18%), 61,440 tokens, 4:12 elapsed, about 19:30 left"
    assert describe(p, now_elapsed=282.0).endswith("4:42 elapsed, about 19:00 left")  # 30 s after the event
    ppl = {"done": 8, "total": 44, "unit": "windows", "phase": "ppl_pruned", "elapsed_s": 3.0, "eta_s": None}
    assert describe(ppl) == "measuring ppl_pruned: window 8 of 44 (18%), 0:03 elapsed"
