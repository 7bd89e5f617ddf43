"""`tierctl run`: refusals (exit 2, one line, nothing written), the one-runner lock, and real runs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.campaign.step_files import iteration_done, prune_done
from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLock
from tierctl.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["run", *args], env={"COLUMNS": "100", "NO_COLOR": "1"})


def files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("args", "message"), [
    (["--iter", "0"], "--iter 0: {schedule} has iterations 1..5"),
    (["--iter", "6"], "--iter 6: {schedule} has iterations 1..5"),
    ([], "give --iter N or --all"),
    (["--iter", "2"], "iteration 2 needs iteration 1 complete: its prune step is pending (run: tierctl run {root} "
                      "--iter 1)"),
    (["--iter", "1", "--step", "eval"], "--step eval of iteration 1 needs its prune step, which is pending (run: "
                                        "tierctl run {root} --iter 1)"),
    (["--all", "--step", "prune"], "--step runs one step of one iteration: use it with --iter N, not --all"),
    (["--iter", "1", "--launcher", "mpirun"], "--launcher mpirun: must be one of local, torchrun"),
])
def test_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    layout = make_campaign(tmp_path)
    before = files(layout.root)
    r = invoke(str(layout.root), *args)
    assert r.exit_code == 2
    assert r.stderr == "tierctl: " + message.format(schedule=layout.schedule, root=layout.root) + "\n"
    assert files(layout.root) == before  # not even the lock file


def test_a_broken_campaign_toml_is_exit_2_naming_it(tmp_path):
    layout = make_campaign(tmp_path)
    layout.config.write_text("[data]\nnsamples = 'many'\n")
    r = invoke(str(layout.root), "--all")
    assert r.exit_code == 2
    assert r.stderr == f"tierctl: {layout.config}: [data] nsamples must be int, got 'many'\n"
    assert files(layout.root) == ["campaign.toml", "schedule.csv"]


def test_a_missing_campaign_is_exit_2(tmp_path):
    r = invoke(str(tmp_path / "nope"), "--all")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"tierctl: {tmp_path}/nope: no such campaign")


def test_a_missing_previous_step_is_named(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    prune_done(layout, 2)
    r = invoke(str(layout.root), "--iter", "3")
    assert r.exit_code == 2
    assert r.stderr == (f"tierctl: iteration 3 needs iteration 2 complete: its finetune step is pending "
                        f"(run: tierctl run {layout.root} --iter 2)\n")


def test_a_second_run_of_the_same_campaign_is_refused_naming_the_holder(tmp_path):
    layout = make_campaign(tmp_path)
    with CampaignLock(layout.lock):
        r = invoke(str(layout.root), "--iter", "1")
    assert r.exit_code == 2
    assert r.stderr == (f"tierctl: {layout.root}: campaign is being run by pid {os.getpid()} on "
                        f"{socket.gethostname()}\n")
    assert not layout.iter_dir(1).exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)  # so the run has nothing to do but take the lock
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from tierctl.campaign.layout import CampaignLock\n"
         f"CampaignLock(Path({str(layout.lock)!r})).acquire()\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "locked\n"
    r = invoke(str(layout.root), "--iter", "1")
    assert r.exit_code == 2 and f"campaign is being run by pid {holder.pid} on" in r.stderr
    holder.kill()  # kill -9: no chance to unlock; the kernel drops its flock
    holder.wait()
    assert layout.lock.read_text().split()[0] == str(holder.pid)
    r = invoke(str(layout.root), "--iter", "1")
    assert r.exit_code == 0, r.stderr
    assert layout.lock.read_text().split()[0] == str(os.getpid())


def test_a_complete_iteration_is_not_run_again(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    before = layout.metrics(1).read_text()
    r = invoke(str(layout.root), "--iter", "1", "--json")
    assert r.exit_code == 0 and r.stdout == ""
    assert layout.metrics(1).read_text() == before
    assert not layout.logs.exists()


def test_leftovers_of_killed_writes_are_removed_when_a_run_starts(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    (layout.iter_dir(1) / ".tmp-metrics.json.x1").write_text("{")
    (layout.iter_dir(1) / ".tmp-model.abc").mkdir()
    assert invoke(str(layout.root), "--iter", "1").exit_code == 0
    assert not any(p.name.startswith(".tmp-") for p in layout.root.rglob("*"))


# --- the live panels (tierctl.live), fed with events as the runner delivers them -------------------


def _events(n: int = 1) -> list:
    from tierctl.core.events import Event

    t = 1000.0
    out = [Event(t, n, "prune", "start")]
    for layer in range(2):
        for kind, (d, s, k) in (("self_attn.q_proj", (0.9, 0.1, 0.0)), ("mlp.down_proj", (0.8, 0.2, 0.0))):
            out.append(Event(t, n, "prune", "layer", {"name": f"model.layers.{layer}.{kind}", "dense": d, "semi": s,
                                                      "topk": k, "sparsity": s / 2}))
        out.append(Event(t, n, "prune", "progress", {"done": layer + 1, "total": 2, "unit": "layers"}))
    out += [Event(t + 5, n, "prune", "metric", {"name": "ppl_pruned", "value": 41.0}),
            Event(t + 5, n, "prune", "end", {"status": "ok"}),
            Event(t + 6, n, "finetune", "start")]
    for step, loss in enumerate([4.0, 3.5, 3.2, 3.0]):
        out += [Event(t + 7 + step, n, "finetune", "metric", {"name": "loss", "value": loss}),
                Event(t + 7 + step, n, "finetune", "progress", {"done": step + 1, "total": 8, "unit": "steps"})]
    return out


def _text(view) -> str:
    import io

    from rich.console import Console

    out = Console(file=io.StringIO(), width=100, color_system=None, record=True)
    out.print(view.render())
    return out.export_text()


def test_live_panels_show_the_running_step_layers_loss_and_iterations(tmp_path):
    import io

    from rich.console import Console

    from tierctl.live import LiveView

    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    view = LiveView(layout, Console(file=io.StringIO(), width=100, height=60))
    view.on_step(1, "prune", None)
    for e in _events(n=2):
        view.on_event(e, e.to_json())
    text = _text(view)
    assert "camp — iteration 2" in text
    assert "✓ done prune" in text and "▶ running finetune" in text and "4/8 steps" in text
    assert "tiers per layer" in text and "layer" in text and "q" in text and "down" in text
    assert "loss 3.0000" in text and "min 3.0000" in text
    iterations = text[text.index("iterations"):]
    row2 = next(line for line in iterations.splitlines() if line.lstrip("│ ").startswith("2 "))
    assert "✓ done" in row2 and "▶ running" in row2  # nothing of iteration 2 is on disk: the events say so


def test_live_panels_redraw_at_their_own_pace_not_per_event(tmp_path):
    import io
    import time

    from rich.console import Console

    from tierctl.live import REFRESH_HZ, LiveView

    layout = make_campaign(tmp_path)
    console = Console(file=io.StringIO(), width=100, height=60, force_terminal=True)
    events = _events() * 250  # 5000+ events
    t0 = time.monotonic()
    with LiveView(layout, console) as view:
        for e in events:
            view.on_event(e, "")
    elapsed = time.monotonic() - t0
    assert view.model.events_applied == len(events)
    assert view.renders <= 3 + elapsed * REFRESH_HZ * 2
