"""The live view model: what a stream of events (docs/events.md) leaves it showing."""

from __future__ import annotations

from tierctl.core.events import Event
from tierctl.core.live_model import LiveModel, Series
from tierctl.core.vocab import DONE, FAILED, PENDING, RUNNING


def ev(step: str, event: str, t: float = 0.0, **data: object) -> Event:
    return Event(t=t, iter=2, step=step, event=event, data=dict(data))


def test_a_prune_then_finetune_stream_ends_with_both_steps_done_and_the_layers_and_loss_kept() -> None:
    m = LiveModel()
    m.apply([
        ev("prune", "start"),
        ev("prune", "progress", done=1, total=2, unit="layers"),
        ev("prune", "layer", name="model.layers.0.self_attn.q_proj", dense=0.9, semi=0.1, topk=0.0, sparsity=0.05),
        ev("prune", "layer", name="model.layers.1.self_attn.q_proj", dense=0.8, semi=0.2, topk=0.0, sparsity=0.1),
        ev("prune", "metric", name="ppl_pruned", value=31.5),
        ev("prune", "end", status="ok"),
        ev("finetune", "start"),
        ev("finetune", "metric", name="loss", value=3.5),
        ev("finetune", "metric", name="loss", value=3.25),
        ev("finetune", "progress", done=2, total=10, unit="steps"),
    ])
    assert m.iteration == 2
    assert m.steps["prune"].status == DONE
    assert m.steps["finetune"].status == RUNNING
    assert m.steps["eval"].status == PENDING
    assert m.running_step == "finetune"
    assert m.steps["finetune"].fraction == 0.2
    assert list(m.layers) == ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"]
    assert m.layers["model.layers.1.self_attn.q_proj"] == {"dense": 0.8, "semi": 0.2, "topk": 0.0, "sparsity": 0.1}
    assert m.loss.points == [3.5, 3.25]
    assert m.metrics["ppl_pruned"] == 31.5
    assert m.events_applied == 10


def test_one_apply_call_bumps_the_version_once_however_many_events_it_holds() -> None:
    m = LiveModel()
    m.apply([ev("finetune", "metric", name="loss", value=float(i)) for i in range(1000)])
    assert m.version == 1
    assert m.apply([]) == 0
    assert m.version == 1


def test_a_failed_end_marks_the_step_failed_with_its_error_and_logs_it() -> None:
    m = LiveModel()
    m.apply([ev("eval", "start"), ev("eval", "end", status="failed", error="RuntimeError: out of memory")])
    assert m.steps["eval"].status == FAILED
    assert m.failed_step == "eval"
    assert m.steps["eval"].error == "RuntimeError: out of memory"
    assert m.log[-1].msg == "eval failed: RuntimeError: out of memory"


def test_a_restarted_prune_forgets_the_layers_of_the_earlier_attempt_and_resets_later_steps() -> None:
    m = LiveModel()
    m.apply([
        ev("prune", "start"),
        ev("prune", "layer", name="a", dense=1.0, semi=0.0, topk=0.0, sparsity=0.0),
        ev("prune", "end", status="ok"),
        ev("finetune", "start"),
        ev("finetune", "end", status="ok"),
        ev("prune", "start"),
    ])
    assert m.layers == {}
    assert m.steps["prune"].status == RUNNING
    assert m.steps["finetune"].status == PENDING


def test_the_log_keeps_its_newest_lines_and_counts_every_line_ever_seen() -> None:
    m = LiveModel(log_lines=3)
    m.apply([ev("prune", "log", level="info", msg=f"line {i}") for i in range(5)])
    assert [x.msg for x in m.log] == ["line 2", "line 3", "line 4"]
    assert m.log_count == 5


def test_a_metric_with_a_non_numeric_value_is_ignored() -> None:
    m = LiveModel()
    m.apply([ev("finetune", "metric", name="loss", value="nan?")])
    assert "loss" not in m.metrics
    assert len(m.loss) == 0


def test_a_series_past_its_cap_halves_itself_so_points_stay_at_multiples_of_the_stride() -> None:
    s = Series(cap=4)
    for i in range(9):
        s.append(float(i))
    # 0..4 overflow the cap -> 0, 2, 4 (stride 2); 6 and 8 kept -> overflow again -> 0, 4, 8 (stride 4)
    assert s.points == [0.0, 4.0, 8.0]
    assert s.stride == 4
    assert s.count == 9
    assert s.last == 8.0


def test_loss_points_keep_the_optimizer_step_of_their_event_as_x() -> None:
    m = LiveModel()
    m.apply([ev("finetune", "start")] + [ev("finetune", "metric", name="loss", value=v, opt_step=n)
                                         for n, v in ((10, 3.0), (20, 2.5), (30, 2.25))])
    assert m.loss.xs == [10.0, 20.0, 30.0] and m.loss.points == [3.0, 2.5, 2.25]
    assert m.loss.by_step


def test_loss_events_without_an_optimizer_step_are_numbered_by_report() -> None:
    s = Series(cap=4)
    for i in range(9):
        s.append(float(i))
    assert s.xs == [1.0, 5.0, 9.0]  # the reports kept (points 0, 4, 8), counted from 1
    assert not s.by_step


def test_progress_reads_with_its_phase_and_its_time_left_moves_on_between_events() -> None:
    m = LiveModel()
    m.apply([ev("prune", "start", t=100.0),
             ev("prune", "progress", t=110.0, done=8, total=44, unit="windows", phase="ppl_pruned", elapsed_s=4.0,
                eta_s=18.0)])
    view = m.steps["prune"]
    assert view.progress_text() == "measuring ppl_pruned: window 8 of 44 (18%), 0:04 elapsed, about 0:18 left"
    assert view.progress_text(now=116.0) == "measuring ppl_pruned: window 8 of 44 (18%), 0:10 elapsed, about 0:12 left"
    m.apply([ev("finetune", "start", t=120.0),
             ev("finetune", "progress", t=121.0, done=1, total=677, unit="steps", phase="finetune", elapsed_s=0.6,
                eta_s=405.6, tokens=2048)])
    assert m.steps["finetune"].progress_text().startswith("fine-tuning: step 1 of 677 (0%), 2,048 tokens")
