"""`tierctl run`: refusals (exit 2, one line, nothing written), the one-runner lock, and real runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.campaign.step_files import iteration_done, prune_done
from tests.helpers import make_campaign
from tierctl.campaign.holder import last_progress
from tierctl.campaign.layout import CampaignLayout, CampaignLock, holder_of
from tierctl.campaign.lock import parse_record
from tierctl.campaign.runner import process_groups
from tierctl.cli import app
from tierctl.core.events import read_events

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["run", *args], env={"COLUMNS": "100", "NO_COLOR": "1"})


def files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("args", "message"), [
    (["--iter", "0", "--step", "prune"], "--step prune: iteration 0 (the reference) has only an eval step"),
    (["--iter", "6"], "--iter 6: {schedule} has iterations 1..5 (and 0, the reference)"),
    ([], "give --iter N or --all"),
    (["--iter", "2"], "iteration 2 needs iteration 1 complete: its prune step is pending (run: tierctl run {root} "
                      "--iter 1)"),
    (["--iter", "1", "--step", "eval"], "--step eval of iteration 1 needs its prune step, which is pending (run: "
                                        "tierctl run {root} --iter 1)"),
    (["--all", "--step", "prune"], "--step runs one step of one iteration: use it with --iter N, not --all"),
    (["--iter", "1", "--launcher", "mpirun"], "--launcher mpirun: must be one of local, torchrun, slurm"),
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


def test_an_unknown_preset_in_a_hand_edited_campaign_toml_is_refused_before_any_step(tmp_path):
    layout = make_campaign(tmp_path, model="tiny-gpt")
    r = invoke(str(layout.root), "--iter", "1")
    assert r.exit_code == 2
    assert r.stderr == (f"tierctl: {layout.config}: [model] name tiny-gpt: unknown preset (presets: smollm2-135m, "
                        "tiny-llama, tiny-qwen2, tiny-mistral, tiny-opt)\n")
    assert files(layout.root) == ["campaign.toml", "schedule.csv"]


def test_a_missing_text_file_is_refused_before_any_step(tmp_path):
    layout = make_campaign(tmp_path, data={"eval": f"text:{tmp_path}/gone.txt"})
    r = invoke(str(layout.root), "--all")
    assert r.exit_code == 2
    assert r.stderr == f"tierctl: {layout.config}: [data] eval text:{tmp_path}/gone.txt: no such file\n"
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
                        f"{socket.gethostname()} (between steps); wait for it with --wait, or stop it with: "
                        f"tierctl cancel {layout.root}\n")
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
    assert parse_record(layout.lock.read_text()).runner.pid == holder.pid
    r = invoke(str(layout.root), "--iter", "1")
    assert r.exit_code == 0, r.stderr
    assert parse_record(layout.lock.read_text()).runner.pid == os.getpid()


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
    # At 100 columns the table spends its width on the ppl interval and ratio: one `steps` column.
    assert "▶ finetune" in row2  # nothing of iteration 2 is on disk: the events say so


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


# --- end to end: the real steps on copies of the shipped tiny-smoke campaign -------------------------

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "campaigns" / "tiny-smoke"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def smoke_copy(dest: Path, rows: int | None = None, reference: CampaignLayout | None = None) -> CampaignLayout:
    """campaign.toml and schedule.csv of tiny-smoke (its first `rows` iterations) in a fresh directory; with
    `reference`, also its measured iteration 0 (the unpruned reference: the same model, texts and windows), so
    a test about iterations 1.. does not measure it again."""
    dest.mkdir(parents=True)
    shutil.copy(SMOKE / "campaign.toml", dest / "campaign.toml")
    lines = (SMOKE / "schedule.csv").read_text().splitlines()
    (dest / "schedule.csv").write_text("\n".join(lines[: rows + 1] if rows else lines) + "\n")
    layout = CampaignLayout(dest)
    if reference is not None:
        shutil.copytree(reference.iter_dir(0), layout.iter_dir(0))
    return layout


def tierctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tierctl", *args], capture_output=True, text=True, env=ENV,
                          timeout=900)


def start_run(layout: CampaignLayout) -> subprocess.Popen:
    """`tierctl run --all --no-check` with stdout piped (so: events as JSON lines). The start-up check of
    tiny-smoke is the subject of tests/cli/test_bad_inputs.py and of the uninterrupted run, not of these."""
    return subprocess.Popen([sys.executable, "-m", "tierctl", "run", str(layout.root), "--all", "--no-check"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def read_until(proc: subprocess.Popen, pred) -> dict:
    for line in proc.stdout:
        event = json.loads(line)
        if pred(event):
            return event
    raise AssertionError(f"the run ended (exit {proc.wait()}) before the awaited event: {proc.stderr.read()}")


def step_group(runner_pid: int) -> int:
    """The process group of the step the runner is running (its only child, in a session of its own)."""
    (group,) = process_groups(runner_pid)
    return group


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def assert_same_outputs(a: CampaignLayout, b: CampaignLayout, n: int) -> None:
    """Same tier maps and the same final weights, bit for bit."""
    import torch

    ta, tb = tensors(a.tiers(n)), tensors(b.tiers(n))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    files = sorted(p.name for p in a.model(n).glob("*.safetensors"))
    assert files and files == sorted(p.name for p in b.model(n).glob("*.safetensors"))
    for name in files:
        wa, wb = tensors(a.model(n) / name), tensors(b.model(n) / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f"iter{n}/model/{name}"
    ma, mb = json.loads(a.metrics(n).read_text()), json.loads(b.metrics(n).read_text())
    assert (ma["ppl_pruned"], ma["ppl"]) == (mb["ppl_pruned"], mb["ppl"])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """tiny-smoke run once, uninterrupted, with `--all`: the reference of the interrupted runs."""
    layout = smoke_copy(tmp_path_factory.mktemp("reference") / "tiny-smoke")
    return layout, tierctl("run", str(layout.root), "--all")


@pytest.mark.slow
def test_tiny_smoke_runs_every_iteration_and_prints_exactly_the_step_events(smoke_run):
    layout, out = smoke_run
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = out.stdout.splitlines()
    events = [json.loads(line) for line in lines]
    phases = [(e["iter"], e["step"], e["event"]) for e in events if e["event"] in ("start", "end")]
    steps = ("prune", "finetune", "eval")
    assert phases == [(0, "eval", "start"), (0, "eval", "end")] + \
        [(n, s, kind) for n in (1, 2, 3) for s in steps for kind in ("start", "end")]  # the reference first
    assert all(e["status"] == "ok" for e in events if e["event"] == "end")
    for n in (0, 1, 2, 3):  # stdout carries each iteration's events.jsonl, line for line
        assert [line for line, e in zip(lines, events, strict=True) if e["iter"] == n] == \
            layout.events(n).read_text().splitlines()


@pytest.mark.slow
def test_after_the_run_status_json_says_every_step_is_done(smoke_run):
    layout, _ = smoke_run
    out = tierctl("status", str(layout.root), "--json")
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["campaign"] == "tiny-smoke"
    rows = [(0.90, 0.10, 0.00), (0.80, 0.10, 0.10), (0.65, 0.20, 0.15)]
    reference, *iterations = status["iterations"]
    assert reference["iteration"] == 0 and reference["steps"] == {"eval": "done"} and reference["ppl_ratio"] == 1.0
    low, high = reference["ppl_interval"]
    assert low < reference["ppl"] < high
    for it, (dense, semi, topk) in zip(iterations, rows, strict=True):
        assert it["steps"] == {"prune": "done", "finetune": "done", "eval": "done"}
        comp = it["composition"]
        assert comp["dense"] == pytest.approx(dense, abs=0.03) and comp["topk"] == pytest.approx(topk, abs=0.03)
        assert comp["semi"] == pytest.approx(semi, abs=0.03)
        assert it["ppl"] > 1 and it["ppl_pruned"] > 1
        assert json.loads(layout.metrics(it["iteration"]).read_text())["mask_violations"] == 0
        assert it["ppl_ratio"] == it["ppl"] / reference["ppl"] and it["ppl_interval"][0] < it["ppl"]
    assert [it["sparsity"] for it in iterations] == sorted(it["sparsity"] for it in iterations)


@pytest.mark.slow
def test_kill_9_of_the_fine_tune_or_of_the_runner_then_resume_ends_as_an_uninterrupted_run(smoke_run, tmp_path):
    reference, _ = smoke_run
    layout = smoke_copy(tmp_path / "tiny-smoke", rows=2, reference=reference)
    proc = start_run(layout)
    read_until(proc, lambda e: e["iter"] == 1 and e["step"] == "finetune" and e["event"] == "progress"
               and e["done"] >= 3)
    step = step_group(proc.pid)
    os.killpg(step, signal.SIGSTOP)  # hold it still while we look
    assert layout.finetune_checkpoint(1).is_dir()  # so the resume has a checkpoint to resume from
    assert not any(e.event == "end" for e in read_events(layout.events(1)) if e.step == "finetune")
    second = tierctl("run", str(layout.root), "--all")  # one runner per campaign
    assert second.returncode == 2
    assert f"campaign is being run by pid {proc.pid} on " in second.stderr
    os.killpg(step, signal.SIGKILL)
    proc.stdout.read()
    assert proc.wait() == 1
    err = proc.stderr.read()
    assert err.startswith(f"tierctl: iteration 1 finetune interrupted: its process was killed by SIGKILL, not by "
                          f"tierctl cancel: often the out-of-memory killer (log: {layout.step_log(1, 'finetune')}); "
                          f"iteration 1: the fine-tune resumes from its checkpoint at step ")
    assert err.endswith(f"; resume with: tierctl run {layout.root} --all\n") and err.count("\n") == 1
    assert json.loads(tierctl("status", str(layout.root), "--json").stdout)["iterations"][1]["steps"] == \
        {"prune": "done", "finetune": "interrupted", "eval": "pending"}  # resumable: it was killed

    # Resume; this time kill -9 the runner itself while iteration 2 prunes.
    proc = start_run(layout)
    read_until(proc, lambda e: e["iter"] == 2 and e["step"] == "prune" and e["event"] == "start")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = [e.get("msg", "") for e in read_events(layout.events(1)) if e.event == "log"]
    assert any(m.startswith("the fine-tune resumes from its checkpoint at step ") for m in resumed)
    deadline = time.monotonic() + 120
    while holder_of(layout.lock) is not None:  # the orphaned step kept the lock until it ended
        assert time.monotonic() < deadline
        time.sleep(0.2)
    # ... and finished its work: losing its reader (the runner's pipe) did not stop it.
    assert [e.get("status") for e in read_events(layout.events(2)) if e.step == "prune" and e.event == "end"] == ["ok"]

    out = tierctl("run", str(layout.root), "--all", "--no-check")
    assert out.returncode == 0, out.stderr
    for n in (1, 2):
        assert_same_outputs(reference, layout, n)


@pytest.mark.slow
def test_ctrl_c_stops_the_step_group_and_leaves_the_campaign_resumable(smoke_run, tmp_path):
    reference, _ = smoke_run
    layout = smoke_copy(tmp_path / "tiny-smoke", rows=1, reference=reference)
    proc = start_run(layout)
    read_until(proc, lambda e: e["step"] == "finetune" and e["event"] == "progress")
    step = step_group(proc.pid)
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()
    assert proc.wait() == 130
    err = proc.stderr.read()
    where = r"(resumes from its checkpoint at step \d+ of \d+|starts from its first step \(it has no checkpoint yet\))"
    assert re.fullmatch(r"tierctl: interrupted \(SIGINT\): stopped iteration 1 finetune; iteration 1: the fine-tune "
                        + where + r"; resume with: tierctl run " + re.escape(str(layout.root)) + r" --all\n", err)
    with pytest.raises(ProcessLookupError):
        os.killpg(step, 0)  # nothing of the step is left
    assert holder_of(layout.lock) is None
    ends = [e for e in read_events(layout.events(1)) if e.step == "finetune" and e.event == "end"]
    assert [(e.get("status"), e.get("error")) for e in ends] == [("failed", "interrupted")]

    out = tierctl("run", str(layout.root), "--all", "--no-check")
    assert out.returncode == 0, out.stderr
    assert_same_outputs(reference, layout, 1)


# --- a runner killed with kill -9 while its fine-tune goes on (an orphaned step) -----------------------


def orphan_during_finetune(layout: CampaignLayout) -> tuple[int, int]:
    """(runner pid, step pid): `tierctl run --all` in a session of its own, its process group killed with
    SIGKILL during iteration 1's fine-tune. The step goes on, orphaned; it is stopped (SIGSTOP) first so
    that what it has done stays still while the test looks; SIGCONT lets it go on."""
    proc = subprocess.Popen([sys.executable, "-m", "tierctl", "run", str(layout.root), "--all", "--no-check"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    read_until(proc, lambda e: e["iter"] == 1 and e["step"] == "finetune" and e["event"] == "progress")
    (step,) = process_groups(proc.pid) - {proc.pid}
    os.killpg(step, signal.SIGSTOP)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    return proc.pid, step


def orphan_phrase(layout: CampaignLayout, runner: int, step: int) -> str:
    progress = last_progress(layout.events(1), 1, "finetune")
    return (f"an orphaned step: iteration 1 finetune, {progress}, pid {step} on {socket.gethostname()} "
            f"(its runner pid {runner} died)")


def sigterm_pending(pid: int) -> bool:
    """Has `pid` (stopped) a SIGTERM waiting for it?"""
    with open(f"/proc/{pid}/status") as f:
        pending = next(line for line in f if line.startswith("ShdPnd:")).split()[1]
    return bool(int(pending, 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.slow
def test_orphaned_fine_tunes_cancelled_or_waited_for_end_as_an_uninterrupted_run(smoke_run, tmp_path):
    """Two kill -9s of the runner during the fine-tune: the first orphan is cancelled (and the run resumed),
    the second waited for by `run --all --wait`; the campaign ends as an uninterrupted one."""
    reference, _ = smoke_run
    layout = smoke_copy(tmp_path / "tiny-smoke", rows=1, reference=reference)
    runner, step = orphan_during_finetune(layout)
    orphan = orphan_phrase(layout, runner, step)
    refused = tierctl("run", str(layout.root), "--all")
    assert (refused.returncode, refused.stderr) == (2, f"tierctl: {layout.root}: campaign is held by {orphan}; wait "
                                                       f"for it with --wait, or stop it with: tierctl cancel "
                                                       f"{layout.root}\n")

    # (b) cancel stops the orphan: SIGTERM (pending while it is stopped), then it goes on and ends "interrupted".
    cancelling = subprocess.Popen([sys.executable, "-m", "tierctl", "cancel", str(layout.root), "--wait"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 60
    while not sigterm_pending(step):
        assert time.monotonic() < deadline and cancelling.poll() is None
        time.sleep(0.05)
    os.killpg(step, signal.SIGCONT)
    out, err = cancelling.communicate(timeout=120)
    where = r"(resumes from its checkpoint at step \d+ of \d+|starts from its first step \(it has no checkpoint yet\))"
    assert (cancelling.returncode, err) == (0, "")
    assert re.fullmatch(re.escape(f"stopped {orphan}; the campaign is free: iteration 1: the fine-tune ") + where
                        + re.escape(f"; resume with tierctl run {layout.root} --all\n"), out)
    ends = [e for e in read_events(layout.events(1)) if e.step == "finetune" and e.event == "end"]
    assert [(e.get("status"), e.get("error")) for e in ends] == [("failed", "interrupted")]

    # (a) the resumed run is killed too; `run --all --wait` waits for its orphan, then runs the eval.
    runner, step = orphan_during_finetune(layout)
    orphan = orphan_phrase(layout, runner, step)
    it = json.loads(tierctl("status", str(layout.root), "--json").stdout)["iterations"][1]  # [0]: the reference
    assert (it["steps"]["finetune"], it["pid"], it["orphaned"]) == ("running", step, True)
    waiting = subprocess.Popen([sys.executable, "-m", "tierctl", "run", str(layout.root), "--all", "--wait",
                                "--no-check"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    assert waiting.stderr.readline() == f"waiting for {orphan}\n"
    os.killpg(step, signal.SIGCONT)
    out, err = waiting.communicate(timeout=600)
    assert (waiting.returncode, err) == (0, "")
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["step"], e["event"]) for e in events if e["event"] in ("start", "end")] == [("eval", "start"),
                                                                                           ("eval", "end")]
    assert_same_outputs(reference, layout, 1)
