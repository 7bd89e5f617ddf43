"""Following a run's events into a live model: the watch, and the pump the dashboard drains."""

from __future__ import annotations

import threading
from pathlib import Path

from tierctl.campaign.follow import EventPump, RunWatch, newest_iteration_with_events
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import EventSink


def sink(layout: CampaignLayout, n: int, step: str) -> EventSink:
    return EventSink(n, step, layout.events(n), stream=None)


def test_the_watch_follows_the_newest_iteration_and_reads_only_new_events(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    s1 = sink(layout, 1, "prune")
    s1.start()
    s1.layer("m.0.q_proj", 0.9, 0.1, 0.0, 0.05)
    watch = RunWatch(layout)
    pump = EventPump(watch)
    assert pump.poll() == 2
    assert pump.poll() == 0
    s1.end("ok")
    assert pump.poll() == 1
    assert pump.model.steps["prune"].status == "done"

    s2 = sink(layout, 2, "prune")
    s2.start()
    assert pump.poll() == 1
    assert watch.iteration == 2
    assert pump.model.iteration == 2
    assert pump.model.layers == {}  # a new model for the new iteration
    assert pump.model.steps["prune"].status == "running"


def test_read_says_to_start_over_when_the_followed_iteration_changes(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    watch = RunWatch(layout)
    assert watch.read() == (None, False, [])
    sink(layout, 3, "eval").start()
    it, over, events = watch.read()
    assert (it, over, [e.event for e in events]) == (3, True, ["start"])
    assert watch.read() == (3, False, [])


def test_newest_iteration_ignores_iteration_dirs_without_events(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    sink(layout, 1, "prune").start()
    layout.iter_dir(2).mkdir()
    assert newest_iteration_with_events(layout) == 1




def test_a_backlog_is_applied_at_most_budget_events_per_drain_in_order(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    s = sink(layout, 1, "finetune")
    s.start()
    for i in range(9):
        s.metric("loss", float(i))
    pump = EventPump(RunWatch(layout), budget=4)
    assert pump.read() == 10
    assert [pump.drain() for _ in range(4)] == [4, 4, 2, 0]
    assert pump.model.loss.points == [float(i) for i in range(9)]
    assert pump.model.version == 3  # one redraw trigger per drain that applied something


def test_a_newer_iteration_replaces_the_model_even_behind_a_backlog(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    s1 = sink(layout, 1, "prune")
    s1.start()
    s1.end("ok")
    pump = EventPump(RunWatch(layout), budget=1)
    pump.read()
    sink(layout, 2, "prune").start()
    pump.read()
    assert pump.drain() == 1 and pump.model.iteration == 1
    assert pump.drain() == 1 and pump.model.steps["prune"].status == "done"
    assert pump.drain() == 1 and pump.model.iteration == 2
    assert pump.model.steps["prune"].status == "running"


def test_reading_on_one_thread_and_draining_on_another_loses_no_event(tmp_path: Path) -> None:
    layout = CampaignLayout(tmp_path)
    s = sink(layout, 1, "finetune")
    s.start()
    pump = EventPump(RunWatch(layout), budget=7)
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            pump.read()
        pump.read()

    t = threading.Thread(target=reader)
    t.start()
    for i in range(500):
        s.metric("loss", float(i))
    done.set()
    t.join()
    while pump.drain():
        pass
    assert pump.model.loss.count == 500 and pump.model.loss.last == 499.0
