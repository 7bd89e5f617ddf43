"""The event stream of docs/events.md: one JSON object per line.

Steps write events; the runner, `tierctl run` panels and the dashboard read them. A step killed
mid-write can leave a last line without its newline: readers skip it, so a torn line is never
taken for an event. No torch here.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tierctl.core.atomic import json_safe

TYPES = ("start", "progress", "layer", "metric", "log", "end")


@dataclass(frozen=True)
class Event:
    """One event. `data` holds the type-specific fields (done/total/unit, name/value, ...)."""

    t: float
    iter: int
    step: str
    event: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t, "iter": self.iter, "step": self.step, "event": self.event, **self.data}

    def to_json(self) -> str:
        """One line of strict JSON: a NaN or infinite value is written as null."""
        return json.dumps(json_safe(self.to_dict()), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        rest = {k: v for k, v in d.items() if k not in ("t", "iter", "step", "event")}
        return cls(t=float(d["t"]), iter=int(d["iter"]), step=str(d["step"]), event=str(d["event"]), data=rest)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def parse_line(line: str) -> Event | None:
    """An Event, or None for a blank, torn or foreign line (never raises)."""
    line = line.strip()
    if not line:
        return None
    try:
        d = json.loads(line)
        if not isinstance(d, dict):
            return None
        return Event.from_dict(d)
    except (ValueError, KeyError, TypeError):
        return None


def read_events(path: Path) -> list[Event]:
    """All complete events of a file; a missing file has none."""
    return read_events_checked(path)[0]


def read_events_checked(path: Path) -> tuple[list[Event], list[int]]:
    """(complete events, numbers of the lines skipped because they are not events).

    A step killed mid-write leaves a torn line; the next writer starts a new line (EventSink), so the
    torn line stands alone and is skipped here, and the caller can warn about it. The last line is
    not counted while it has no newline: its writer may still be writing it.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return [], []
    lines = text.split("\n")
    # The last element is "" when the file ends with a newline, or a torn line otherwise.
    events, skipped = [], []
    for i, line in enumerate(lines[:-1], start=1):
        e = parse_line(line)
        if e is not None:
            events.append(e)
        elif line.strip():
            skipped.append(i)
    return events, skipped


class EventFollower:
    """Incremental reader of a growing events.jsonl (for live panels): call `poll()` repeatedly.

    Keeps a byte offset and a partial-line buffer, so each poll costs only the new bytes.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[Event]:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self._offset:  # file was replaced (a --force redo): start over
                    self._offset, self._partial = 0, b""
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        buf = self._partial + chunk
        *lines, self._partial = buf.split(b"\n")
        out = []
        for raw in lines:
            e = parse_line(raw.decode("utf-8", errors="replace"))
            if e is not None:
                out.append(e)
        return out


class EventSink:
    """Where a step's events go: stdout (for the runner) and appended to iter<N>/events.jsonl.

    Each event is one `write` of a whole line in append mode, so concurrent readers see whole
    lines or a torn tail, never an interleaving.
    """

    def __init__(
        self, iteration: int, step: str, path: Path | None, stream: IO[str] | None = sys.stdout,
        enabled: bool = True,
    ) -> None:
        self.iteration = iteration
        self.step = step
        self.path = Path(path) if path is not None else None
        self.stream = stream
        self.enabled = enabled  # False on non-zero ranks under torchrun

    def emit(self, event: str, **data: Any) -> Event:
        e = Event(t=time.time(), iter=self.iteration, step=self.step, event=event, data=data)
        if not self.enabled:
            return e
        line = e.to_json() + "\n"
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab+") as f:
                # A writer killed mid-line left a torn tail: start a new line, or this event would be
                # glued to it and lost with it.
                torn = f.seek(0, os.SEEK_END) > 0 and f.seek(-1, os.SEEK_END) >= 0 and f.read(1) != b"\n"
                f.write((b"\n" if torn else b"") + line.encode("utf-8"))
        if self.stream is not None:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                # The reader (a runner killed with -9) is gone: keep working and keep writing the file,
                # so the orphaned step still finishes and its outputs count.
                self.stream = None
        return e

    # Small helpers so step code reads like the spec.
    def start(self, **data: Any) -> Event:
        return self.emit("start", **data)

    def progress(self, done: int, total: int, unit: str) -> Event:
        return self.emit("progress", done=done, total=total, unit=unit)

    def layer(self, name: str, dense: float, semi: float, topk: float, sparsity: float, **extra: Any) -> Event:
        return self.emit("layer", name=name, dense=dense, semi=semi, topk=topk, sparsity=sparsity, **extra)

    def metric(self, name: str, value: float, **extra: Any) -> Event:
        return self.emit("metric", name=name, value=value, **extra)

    def log(self, msg: str, level: str = "info") -> Event:
        return self.emit("log", level=level, msg=msg)

    def end(self, status: str = "ok", error: str | None = None, **extra: Any) -> Event:
        if error is not None:
            extra["error"] = error
        return self.emit("end", status=status, **extra)


def iter_step_events(events: list[Event], step: str) -> Iterator[Event]:
    return (e for e in events if e.step == step)
