"""lm/evaluate (Wanda's perplexity protocol) and the eval step run as a subprocess."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tierctl.core.events import read_events
from tierctl.errors import BadInput
from tierctl.lm.evaluate import INTERVAL, PROTOCOL, evaluate_source, perplexity, ppl_interval
from tierctl.lm.text import eval_windows, token_stream

ROOT = Path(__file__).resolve().parents[2]


def direct_ppl(model, windows: torch.Tensor) -> float:
    """The protocol written out: one window at a time, exp of the mean of per-window mean NLLs."""
    nlls = []
    with torch.no_grad():
        for w in windows:
            logits = model(input_ids=w[None]).logits[0]
            nlls.append(F.cross_entropy(logits[:-1].float(), w[1:]).item())
    return math.exp(sum(nlls) / len(nlls))


@pytest.fixture
def windows(tiny_llama) -> torch.Tensor:
    return eval_windows(token_stream("pydoc", tiny_llama[1], "eval"), seqlen=48, max_windows=5)


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_perplexity_equals_the_direct_computation(tiny_llama, windows, batch_size):
    model = tiny_llama[0]
    assert perplexity(model, windows, batch_size=batch_size) == pytest.approx(direct_ppl(model, windows), rel=1e-6)


def test_random_tiny_model_is_about_as_perplexed_as_its_vocabulary_is_large(tiny_llama, windows):
    # Weights ~ N(0, 0.02): near-uniform predictions over 512 tokens.
    assert 400 < perplexity(tiny_llama[0], windows) < 700


def test_perplexity_is_the_mean_of_window_nlls_not_of_tokens(tiny_llama, windows):
    model = tiny_llama[0]
    per_window = [math.log(perplexity(model, windows[i:i + 1])) for i in range(len(windows))]
    assert perplexity(model, windows, batch_size=2) == pytest.approx(math.exp(sum(per_window) / 5), rel=1e-9)


def test_ppl_interval_is_the_student_t_interval_of_the_window_nlls_through_exp():
    nlls = torch.tensor([2.0, 2.2, 2.4, 2.6], dtype=torch.float64)  # mean 2.3, sd 0.2582, se 0.1291
    low, high = ppl_interval([nlls[:3], nlls[3:]])
    half = 3.182446305284263 * 0.2581988897471611 / 2  # t(0.975, 3) * sd / sqrt(4)
    assert low == pytest.approx(math.exp(2.3 - half), rel=1e-12)
    assert high == pytest.approx(math.exp(2.3 + half), rel=1e-12)
    assert ppl_interval([nlls[:1]]) is None  # one window: no spread to measure


def test_interval_holds_the_ppl_and_narrows_with_more_windows(tiny_llama):
    model, tok = tiny_llama
    few = evaluate_source(model, tok, "pydoc", seqlen=16, max_windows=4, batch_size=4)
    many = evaluate_source(model, tok, "pydoc", seqlen=16, max_windows=64, batch_size=16)
    for r in (few, many):
        assert r.interval[0] < r.ppl < r.interval[1]
        assert r.info["interval"] == INTERVAL and r.info["windows"] in (4, 64)
    assert many.interval[1] - many.interval[0] < (few.interval[1] - few.interval[0]) / 2


def test_progress_is_reported_per_batch_in_windows(tiny_llama, windows):
    calls = []
    perplexity(tiny_llama[0], windows, batch_size=2, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_training_mode_is_restored(tiny_llama, windows):
    model = tiny_llama[0].train()
    perplexity(model, windows[:1])
    assert model.training


def test_bfloat16_model_gives_a_close_finite_perplexity(tiny_llama, windows):
    fp32 = perplexity(tiny_llama[0], windows)
    bf16 = perplexity(tiny_llama[0].to(torch.bfloat16), windows)
    assert math.isfinite(bf16) and bf16 == pytest.approx(fp32, rel=0.02)


def test_evaluate_source_records_the_protocol(tiny_llama):
    model, tok = tiny_llama
    result = evaluate_source(model, tok, "pydoc", seqlen=32, max_windows=3, batch_size=2)
    w = eval_windows(token_stream("pydoc", tok, "eval"), 32, 3)
    assert result.ppl == pytest.approx(direct_ppl(model, w), rel=1e-6)
    assert result.info == {"source": "pydoc", "seqlen": 32, "windows": 3, "tokens": 96, "protocol": PROTOCOL,
                           "interval": INTERVAL}


def test_seqlen_beyond_the_models_positions_is_bad_input(tiny_llama):
    with pytest.raises(BadInput, match="seqlen 2048 exceeds the model's max_position_embeddings 1024"):
        evaluate_source(*tiny_llama, "pydoc", seqlen=2048)


# ---- the eval step, end to end ----


def prepared_campaign(make_campaign, tiny_llama):
    """Iteration 1 as prune + fine-tune (0 epochs) would leave it, built by hand."""
    from tierctl.lm.models import save_model

    layout = make_campaign(data={"seqlen": 32, "eval_windows": 3, "batch_size": 2})
    save_model(*tiny_llama, layout.model(1))
    (layout.model(1) / "finetune.json").write_text(json.dumps({"epochs": 0, "skipped": True}))
    layout.metrics(1).write_text(json.dumps({"iteration": 1, "ppl_pruned": 1.0, "ppl": None,
                                             "timings": {"prune_s": 1.5}}))
    return layout


def run_steps(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tierctl.steps", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_eval_step_writes_ppl_and_protocol_and_emits_events(make_campaign, tiny_llama):
    layout = prepared_campaign(make_campaign, tiny_llama)
    proc = run_steps("eval", "--campaign", str(layout.root), "--iter", "1", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr

    metrics = json.loads(layout.metrics(1).read_text())
    windows = eval_windows(token_stream("pydoc", tiny_llama[1], "eval"), 32, 3)
    assert metrics["ppl"] == pytest.approx(direct_ppl(tiny_llama[0], windows), rel=1e-6)
    assert metrics["eval"] == {"source": "pydoc", "seqlen": 32, "windows": 3, "tokens": 96, "protocol": PROTOCOL,
                           "interval": INTERVAL}
    assert metrics["timings"]["prune_s"] == 1.5 and metrics["timings"]["eval_s"] > 0  # merged, not replaced
    assert metrics["ppl_pruned"] == 1.0

    events = read_events(layout.events(1))
    kinds = [e.event for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and events[-1].get("status") == "ok"
    assert [(e.get("done"), e.get("total"), e.get("unit")) for e in events if e.event == "progress"] == [
        (2, 3, "windows"), (3, 3, "windows")]
    assert {e.get("phase") for e in events if e.event == "progress"} == {"ppl"}
    assert [(e.get("name"), e.get("value")) for e in events if e.event == "metric"] == [("ppl", metrics["ppl"])]
    assert all(e.step == "eval" and e.iter == 1 for e in events)
    stdout_events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in stdout_events] == kinds


def test_eval_step_before_the_fine_tune_fails_naming_the_missing_step(make_campaign, tiny_llama, capsys):
    from tierctl.steps.eval import main

    layout = prepared_campaign(make_campaign, tiny_llama)
    (layout.model(1) / "finetune.json").unlink()
    assert main(["--campaign", str(layout.root), "--iter", "1"]) == 1  # it started (events written): a failed step
    assert "fine-tune step of iteration 1 has not finished" in capsys.readouterr().err
    end = read_events(layout.events(1))[-1]
    assert end.event == "end" and end.get("status") == "failed"
    assert json.loads(layout.metrics(1).read_text())["ppl"] is None


def test_eval_step_without_a_model_fails_naming_it(make_campaign, capsys):
    from tierctl.steps.eval import main

    layout = make_campaign()
    assert main(["--campaign", str(layout.root), "--iter", "1"]) == 1
    assert "iter1/model missing" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_perplexity_on_pydoc_is_reasonable():
    # The full pydoc eval split gives ppl ~15 at seqlen 512; a few windows land nearby.
    from tierctl.lm.models import load_model

    model, tok = load_model("smollm2-135m", device="cpu")
    result = evaluate_source(model, tok, "pydoc", seqlen=256, max_windows=4, batch_size=4)
    assert 5 < result.ppl < 40
