"""The campaign lock: the file names its holder from the moment it is held, and names processes exactly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.campaign.holders import holders
from tests.helpers import make_campaign
from tierctl.campaign.lock import CampaignLock, LockedProcess, LockHeld, parse_record, read_lock, record_step
from tierctl.campaign.procs import is_alive, start_time


@pytest.fixture
def hold():
    with holders() as start:
        yield start


def test_the_lock_file_names_the_runner_with_its_start_time_and_host(tmp_path):
    layout = make_campaign(tmp_path)
    with CampaignLock(layout.lock):
        record = read_lock(layout.lock)
        assert record is not None
        assert record.runner == LockedProcess(os.getpid(), start_time(os.getpid()))
        assert record.host == socket.gethostname()
        assert record.steps == ()
    assert read_lock(layout.lock) is None
    assert not any(p.name.startswith(".tmp-") for p in layout.root.iterdir())


def test_each_started_step_is_appended_and_the_newest_live_one_is_the_live_step(tmp_path):
    layout = make_campaign(tmp_path)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with CampaignLock(layout.lock) as lock:
            assert lock.fd is not None
            record_step(lock.fd, os.getpid(), 1, "prune")
            record_step(lock.fd, sleeper.pid, 1, "finetune")
            record = read_lock(layout.lock)
            assert record is not None
            assert [(s.pid, s.iteration, s.step) for s in record.steps] == [(os.getpid(), 1, "prune"),
                                                                            (sleeper.pid, 1, "finetune")]
            assert record.live_step == LockedProcess(sleeper.pid, start_time(sleeper.pid), 1, "finetune")
            sleeper.kill()
            sleeper.wait()
            assert read_lock(layout.lock).live_step.step == "prune"
    finally:
        sleeper.kill()


def test_a_line_still_being_written_is_not_read():
    record = parse_record("runner pid=10 start=5 host=h time=1\nstep pid=11 start=6 iter=1 step=fine")
    assert record.runner == LockedProcess(10, 5) and record.steps == ()


def test_a_lock_file_of_an_older_tierctl_is_read():
    record = parse_record("4242 node1 1764600000 4250\n")
    assert (record.runner, record.host, record.steps) == (LockedProcess(4242, None), "node1",
                                                          (LockedProcess(4250, None),))


def test_a_recycled_pid_is_not_the_recorded_process():
    me = start_time(os.getpid())
    assert is_alive(os.getpid(), me)
    assert not is_alive(os.getpid(), me + 1)  # same pid, another start: another process


def test_a_process_that_exited_is_not_alive_even_before_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = start_time(child.pid)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # a zombie now
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not is_alive(child.pid, start)
    child.wait()
    assert not is_alive(child.pid, start)


def test_only_a_live_process_with_the_lock_file_open_holds_the_lock(tmp_path, hold):
    layout = make_campaign(tmp_path)
    held = hold(layout)
    record = read_lock(layout.lock)
    step = record.live_step
    assert step is not None and step.pid == held.step
    assert record.holds(record.runner) and record.holds(step)
    assert record.alive(LockedProcess(os.getpid(), start_time(os.getpid())))
    assert not record.holds(LockedProcess(os.getpid(), start_time(os.getpid())))  # alive, but not a holder


HAMMER = r"""
import sys, time
from pathlib import Path
from tierctl.campaign.lock import CampaignLock, LockHeld
path, until = Path(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < until:
    try:
        lock = CampaignLock(path).acquire()
    except LockHeld:
        continue
    lock.release()
"""


def test_a_refused_runner_always_finds_the_holder_named_never_a_stale_or_empty_line(tmp_path):
    """Two processes take and release the lock as fast as they can: every refusal names the other one."""
    layout = make_campaign(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", HAMMER, str(layout.lock), "2"])
    refusals, mine = [], 0
    try:
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            try:
                CampaignLock(layout.lock).acquire().release()
                mine += 1
            except LockHeld as e:
                refusals.append(str(e))
    finally:
        other.wait(timeout=30)
    assert mine > 0 and refusals, (mine, len(refusals))
    expected = f"{layout.root}: campaign is being run by pid {other.pid} on {socket.gethostname()}"
    assert [r for r in refusals if r != expected] == [], (os.getpid(), other.pid)
