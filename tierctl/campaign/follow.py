"""Following a run's events into a live view model (headless: no Textual, no Rich).

`RunWatch` reads the newest iteration's events.jsonl as it grows; `EventPump` carries what it read
from a reader thread to the thread that draws, and applies it to one `LiveModel` per iteration:

    reader thread:  pump.read()    watch.read() -> parse the new lines -> queue them
    drawing thread: pump.drain()   apply at most `budget` queued events -> model.version moves

However fast a step writes events, a view redraws once per drain (coalescing), and the parsing
never runs on the drawing thread. A recorded events.jsonl drained through a pump ends in the same
state as the live stream did.
"""

from __future__ import annotations

import queue
from collections import deque

from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import Event, EventFollower
from tierctl.core.live_model import LiveModel

EVENTS_PER_DRAIN = 20_000  # a backlog (re-attaching to a long run) is spread over a few drains

Batch = tuple[int | None, bool, list[Event]]  # (iteration, started_over, events), as RunWatch.read gives


def newest_iteration_with_events(layout: CampaignLayout) -> int | None:
    """The highest N whose iter<N>/events.jsonl exists: the run being (or last) written."""
    for n in reversed(layout.iterations_on_disk()):
        if layout.events(n).is_file():
            return n
    return None


class RunWatch:
    """Follows the events of the newest iteration, switching when a newer one starts.

    `read()` returns only the events written since the last call (reading bytes, parsing lines: the
    slow part, so the dashboard calls it off its UI thread); a `--all` run moving on to the next
    iteration shows up as a newer events.jsonl, and `read()` says to start over.
    """

    def __init__(self, layout: CampaignLayout, iteration: int | None = None) -> None:
        self.layout = layout
        self.iteration: int | None = None
        self._follower: EventFollower | None = None
        self._pinned = iteration is not None
        if iteration is not None:
            self._follow(iteration)

    def _follow(self, iteration: int) -> None:
        self.iteration = iteration
        self._follower = EventFollower(self.layout.events(iteration))

    def read(self) -> tuple[int | None, bool, list[Event]]:
        """(iteration, started_over, new events). `started_over`: the events are of another iteration
        than the last call's, so a view must drop what it had (the whole file is replayed)."""
        over = False
        if not self._pinned:
            newest = newest_iteration_with_events(self.layout)
            if newest is not None and newest != self.iteration:
                # The old iteration's unread tail is of a finished step: metrics.json tells how it ended.
                self._follow(newest)
                over = True
        if self._follower is None:
            return self.iteration, over, []
        return self.iteration, over, self._follower.poll()


class EventPump:
    """Feeds `model` from a RunWatch: `read()` on a reader thread, `drain()` where the view draws.

    When the watch moves on to another iteration, `model` is replaced by a fresh LiveModel of that
    iteration (a view holds `pump.model`, never a copy of it). `poll()` does both at once, for
    callers without threads.
    """

    def __init__(self, watch: RunWatch, budget: int = EVENTS_PER_DRAIN) -> None:
        self.watch = watch
        self.budget = budget
        self.model = LiveModel(watch.iteration)
        self._queue: queue.SimpleQueue[Batch] = queue.SimpleQueue()
        self._pending: deque[Batch] = deque()

    def read(self) -> int:
        """Read what the watched events.jsonl gained and queue it; return how many events (thread-safe)."""
        batch = self.watch.read()
        if batch[1] or batch[2]:
            self._queue.put(batch)
        return len(batch[2])

    def drain(self) -> int:
        """Apply queued events to `model`, at most `budget` of them; return how many were applied."""
        budget, applied = self.budget, 0
        while budget > 0:
            if not self._pending:
                try:
                    self._pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            iteration, over, events = self._pending.popleft()
            if over:
                self.model = LiveModel(iteration)
            if len(events) > budget:
                self._pending.appendleft((iteration, False, events[budget:]))
                events = events[:budget]
            n = self.model.apply(events)
            budget -= n
            applied += n
        return applied

    def poll(self) -> int:
        """read() then drain(): every new event applied to `model` now; return how many."""
        self.read()
        total = 0
        while n := self.drain():
            total += n
        return total
