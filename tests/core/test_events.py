"""The event stream (docs/events.md): whole lines only, torn tails skipped, a lost reader tolerated."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tierctl.core.events import Event, EventFollower, EventSink, parse_line, read_events


def test_an_event_round_trips_through_its_json_line() -> None:
    e = Event(t=1.5, iter=2, step="prune", event="layer", data={"name": "q", "dense": 0.9})
    want = {"t": 1.5, "iter": 2, "step": "prune", "event": "layer", "name": "q", "dense": 0.9}
    assert json.loads(e.to_json()) == want
    assert parse_line(e.to_json()) == e


def test_blank_torn_and_foreign_lines_are_not_events() -> None:
    assert parse_line("") is None
    assert parse_line('{"t": 1, "iter": 1, "step": "prune", "ev') is None
    assert parse_line("[1, 2]") is None
    assert parse_line('{"hello": 1}') is None


def test_read_events_skips_a_last_line_without_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventSink(1, "prune", path, stream=None)
    sink.start()
    sink.progress(1, 2, "layers")
    with open(path, "a") as f:
        f.write('{"t": 3, "iter": 1, "step": "prune", "event": "end", "status": "ok"}')  # no newline: torn
    assert [e.event for e in read_events(path)] == ["start", "progress"]


def test_follower_returns_only_new_whole_lines_across_polls(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    follower = EventFollower(path)
    assert follower.poll() == []
    line = Event(t=1.0, iter=1, step="eval", event="start").to_json()
    with open(path, "a") as f:
        f.write(line + "\n" + line[:10])
    assert [e.event for e in follower.poll()] == ["start"]
    with open(path, "a") as f:
        f.write(line[10:] + "\n")
    assert [e.event for e in follower.poll()] == ["start"]
    assert follower.poll() == []


def test_sink_writes_each_event_to_the_stream_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "iter1" / "events.jsonl"
    stream = io.StringIO()
    sink = EventSink(1, "finetune", path, stream=stream)
    sink.metric("loss", 2.5)
    sink.end("failed", error="boom")
    assert stream.getvalue() == path.read_text()
    events = read_events(path)
    assert [(e.event, e.data) for e in events] == [
        ("metric", {"name": "loss", "value": 2.5}), ("end", {"status": "failed", "error": "boom"})]


class ClosedPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_vanished_reader_does_not_stop_the_step_and_the_file_keeps_every_event(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = EventSink(1, "prune", path, stream=ClosedPipe())
    sink.start()
    sink.end()
    assert [e.event for e in read_events(path)] == ["start", "end"]


def test_a_disabled_sink_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    EventSink(1, "prune", path, stream=None, enabled=False).start()
    assert not path.exists()


def test_an_event_after_a_torn_line_starts_a_new_line_and_is_kept(tmp_path):
    from tierctl.core.events import EventSink, read_events_checked

    path = tmp_path / "events.jsonl"
    path.write_text('{"t": 1, "iter": 1, "step": "prune", "event": "start"}\n{"t": 2, "iter": 1, "st')  # a kill -9
    EventSink(1, "prune", path, stream=None).emit("metric", name="ppl", value=float("nan"))
    events, torn = read_events_checked(path)
    assert [e.event for e in events] == ["start", "metric"] and torn == [2]
    assert events[1].get("value") is None  # NaN is written as null: strict JSON
    assert "NaN" not in path.read_text()
