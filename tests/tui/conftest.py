"""Fixtures of the dashboard tests: a fixed campaign under ./campaigns of a temporary directory."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.tui.fixtures import demo_campaign
from tierctl.campaign.layout import CampaignLayout


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CampaignLayout:
    """campaigns/demo under a temporary working directory (the dashboard's default ./campaigns)."""
    monkeypatch.chdir(tmp_path)
    return demo_campaign(Path("campaigns"))


async def wait_for(pilot: Pilot, cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Let the app run until `cond()` holds (threads and timers need real time to pass)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await pilot.pause(0.05)


async def campaign_screen(pilot: Pilot, draft: bool = False) -> Any:
    """The campaign screen the app opened on, once its status (and with `draft`, its schedule) is read."""
    from tierctl.tui.screens.campaign import CampaignScreen

    screen = pilot.app.screen
    assert isinstance(screen, CampaignScreen)
    await wait_for(pilot, lambda: screen.status is not None and (not draft or screen.draft is not None),
                   what="status")
    return screen


def run_async(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run an async test on a fresh event loop (no pytest plugin needed; fixtures pass through)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def screen_text(pilot: Pilot) -> str:
    """The characters on the terminal now, one line per row (what a user reads, without colours)."""
    return "\n".join(strip.text for strip in pilot.app.screen._compositor.render_strips())
