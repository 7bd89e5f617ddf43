"""steps/common: the scaffolding around every step (events, exit codes, metrics.json, inputs)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.helpers import make_campaign
from tierctl.core.events import read_events
from tierctl.errors import BadInput
from tierctl.steps.__main__ import main as steps_main
from tierctl.steps.common import input_model_spec, run_step


@pytest.fixture
def layout(tmp_path):
    return make_campaign(tmp_path)


def args(layout, n=1, *extra):
    return ["--campaign", str(layout.root), "--iter", str(n), *extra]


def test_a_successful_body_is_framed_by_start_and_end_ok(layout, capsys):
    seen = {}

    def body(ctx):
        seen.update(iteration=ctx.iteration, dense=ctx.row.dense, model=ctx.config.model.name, device=ctx.device)
        ctx.sink.progress(1, 2, "windows")

    assert run_step("eval", body, args(layout, 2)) == 0
    assert seen == {"iteration": 2, "dense": 0.8, "model": "tiny-llama", "device": "cpu"}
    events = read_events(layout.events(2))
    assert [e.event for e in events] == ["start", "progress", "end"]
    assert events[-1].data == {"status": "ok"} and all(e.step == "eval" and e.iter == 2 for e in events)
    assert [json.loads(x)["event"] for x in capsys.readouterr().out.splitlines()] == ["start", "progress", "end"]


def test_device_flag_overrides_the_campaign(layout):
    got = []
    assert run_step("eval", lambda ctx: got.append(ctx.device), args(layout, 1, "--device", "auto")) == 0
    assert got == ["auto"]


def test_bad_input_in_the_body_ends_failed_with_exit_1(layout, capsys):
    def body(ctx):
        raise BadInput("iter1/model missing: run the prune step of iteration 1 first")

    assert run_step("eval", body, args(layout)) == 1  # after the start event: a step that failed
    end = read_events(layout.events(1))[-1]
    assert end.event == "end" and end.data == {
        "status": "failed", "error": "iter1/model missing: run the prune step of iteration 1 first"}
    msg = "tierctl eval: iter1/model missing: run the prune step of iteration 1 first"
    assert capsys.readouterr().err.strip() == msg


def test_a_crash_ends_failed_with_a_one_line_error_and_the_traceback_on_stderr(layout, capsys):
    def body(ctx):
        raise RuntimeError("CUDA out of memory\nTried to allocate 2 GiB")

    assert run_step("prune", body, args(layout)) == 1
    end = read_events(layout.events(1))[-1]
    assert end.data == {"status": "failed", "error": "RuntimeError: CUDA out of memory"}
    err = capsys.readouterr().err
    assert "Traceback" in err and "Tried to allocate" in err


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_failed_interrupted(layout, signum, code):
    def body(ctx):
        os.kill(os.getpid(), signum)
        raise AssertionError("the signal should have interrupted the body")

    before = signal.getsignal(signal.SIGTERM)
    assert run_step("finetune", body, args(layout)) == code
    assert read_events(layout.events(1))[-1].data == {"status": "failed", "error": "interrupted"}
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_an_iteration_outside_the_schedule_writes_nothing(layout, capsys):
    assert run_step("eval", lambda ctx: None, args(layout, 6)) == 2
    err = capsys.readouterr().err
    assert "--iter 6" in err and "iterations 1..5" in err
    assert not layout.iter_dir(6).exists()


def test_a_missing_campaign_is_bad_input(tmp_path, capsys):
    assert run_step("eval", lambda ctx: None, ["--campaign", str(tmp_path / "nope"), "--iter", "1"]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_a_bad_campaign_toml_is_bad_input_and_writes_nothing(layout, capsys):
    layout.config.write_text("[model]\nnmae = 'x'\n")
    assert run_step("eval", lambda ctx: None, args(layout)) == 2
    assert "unknown key 'nmae'" in capsys.readouterr().err
    assert not layout.iter_dir(1).exists()


def test_only_rank_0_emits_events(layout, monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    ranks = []
    assert run_step("finetune", lambda ctx: ranks.append((ctx.rank, ctx.is_main)), args(layout)) == 0
    assert ranks == [(1, False)]
    assert not layout.events(1).exists() and capsys.readouterr().out == ""


def test_input_model_is_the_base_model_then_the_previous_iteration(layout):
    specs = []

    def body(ctx):
        specs.append(input_model_spec(ctx))

    assert run_step("prune", body, args(layout, 1)) == 0
    assert specs == ["tiny-llama"]
    assert run_step("prune", body, args(layout, 3)) == 1
    assert "iter2/model missing: run iteration 2 first" in read_events(layout.events(3))[-1].get("error")
    layout.model(2).mkdir(parents=True)
    assert run_step("prune", body, args(layout, 3)) == 0
    assert specs[-1] == str(layout.model(2))


def test_dispatcher_refuses_an_unknown_step(capsys):
    assert steps_main(["compress", "--iter", "1"]) == 2
    assert "prune|finetune|eval" in capsys.readouterr().err
