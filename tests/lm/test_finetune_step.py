"""The fine-tune step (`python -m tierctl.steps finetune`): outputs, ledger, done-ness, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import make_campaign
from tests.lm.test_finetune import BLOCK, K, prune_for_test
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import read_events
from tierctl.errors import StepFailed
from tierctl.steps.finetune import ledger_of, main

SCHEDULE_EPOCHS = "iteration,dense,mid_2_4,topk,epochs\n1,0.5,0.25,0.25,{epochs}\n"


def pruned_iteration(layout: CampaignLayout, n: int = 1) -> dict[str, torch.Tensor]:
    """What the prune step leaves in iter<N>: model/, tiers.safetensors, metrics.json. Returns the maps."""
    from tierctl.core.tiermap_io import save_tiers
    from tierctl.lm.models import load_model, save_model

    model, tok = load_model("tiny-llama", device="cpu")
    tiers = prune_for_test(model)
    save_model(model, tok, layout.model(n))
    save_tiers(layout.tiers(n), tiers, BLOCK, K, n)
    layout.metrics(n).write_text(json.dumps({"iteration": n, "mask_violations": None, "ppl": None,
                                             "timings": {"prune_s": 1.0}}), encoding="utf-8")
    return tiers


def campaign(tmp_path: Path, epochs: int = 2, name: str = "camp", run: dict[str, Any] | None = None,
             **finetune: Any) -> CampaignLayout:
    """A campaign whose iteration 1 is pruned (half DENSE, a quarter SEMI, a quarter TOPK blocks)."""
    layout = make_campaign(tmp_path, name=name, schedule=SCHEDULE_EPOCHS.format(epochs=epochs), run=run or {},
                           finetune={"batch_size": 4, "seqlen": 64, "tokens_per_epoch": 1024, "log_every": 2,
                                     "lr": 1e-3, **finetune})
    pruned_iteration(layout)
    return layout


def model_weights(layout: CampaignLayout, n: int = 1) -> dict[str, torch.Tensor]:
    return load_file(str(layout.model(n) / "model.safetensors"))


def run_main(layout: CampaignLayout, n: int = 1) -> int:
    return main(["--campaign", str(layout.root), "--iter", str(n)])


def metrics(layout: CampaignLayout, n: int = 1) -> dict[str, Any]:
    return json.loads(layout.metrics(n).read_text())


def test_step_fine_tunes_writes_the_ledger_and_keeps_the_masks(tmp_path: Path) -> None:
    layout = campaign(tmp_path)
    pruned = model_weights(layout)

    assert run_main(layout) == 0

    ledger = json.loads((layout.model(1) / "finetune.json").read_text())
    assert ledger["epochs"] == 2 and ledger["steps"] == 8 and ledger["tokens"] == 8 * 4 * 64
    assert ledger["mask_violations"] == 0 and ledger["tier_violations"] == 0
    assert ledger["composition"] == pytest.approx({"dense": 0.5, "semi": 0.25, "topk": 0.25})
    m = metrics(layout)
    assert m["mask_violations"] == 0 and m["finetune"] == ledger
    assert m["timings"]["finetune_s"] == ledger["seconds"] and m["timings"]["prune_s"] == 1.0
    assert not torch.equal(model_weights(layout)["model.layers.0.mlp.up_proj.weight"],
                           pruned["model.layers.0.mlp.up_proj.weight"])
    assert not layout.finetune_checkpoint(1).exists()

    events = [e for e in read_events(layout.events(1)) if e.step == "finetune"]
    assert [events[0].event, events[-1].event, events[-1].get("status")] == ["start", "end", "ok"]
    progress = [e for e in events if e.event == "progress"]
    done = [e.get("done") for e in progress]  # from the first step, then at least at every logged step
    assert done[0] == 1 and {2, 4, 6, 8} <= set(done) and done == sorted(done) and done[-1] == 8
    assert {(e.get("total"), e.get("unit"), e.get("phase")) for e in progress} == {(8, "steps", "finetune")}
    assert [e.get("tokens") for e in progress] == [d * 4 * 64 for d in done]
    names = [e.get("name") for e in events if e.event == "metric"]
    assert names == ["loss", "lr", "tokens_per_s"] * 4


def test_pruned_entries_stay_exactly_zero_in_the_saved_model(tmp_path: Path) -> None:
    layout = campaign(tmp_path, lr=1e-1)
    from tierctl.core.tiermap_io import load_tiers
    from tierctl.core.tiers import keep_mask

    tiers, _ = load_tiers(layout.tiers(1))
    pruned = model_weights(layout)
    assert run_main(layout) == 0
    tuned = model_weights(layout)
    for name, t in tiers.items():
        keep = keep_mask(pruned[f"{name}.weight"], t, BLOCK)
        assert torch.count_nonzero(tuned[f"{name}.weight"][~keep]) == 0, name
        assert not torch.equal(tuned[f"{name}.weight"], pruned[f"{name}.weight"]), name


def test_a_done_iteration_is_not_trained_again(tmp_path: Path) -> None:
    layout = campaign(tmp_path)
    assert run_main(layout) == 0
    first = (layout.model(1) / "model.safetensors").read_bytes()
    m = metrics(layout)
    del m["finetune"], m["mask_violations"]
    layout.metrics(1).write_text(json.dumps(m))
    n_events = len(read_events(layout.events(1)))

    assert run_main(layout) == 0

    assert (layout.model(1) / "model.safetensors").read_bytes() == first
    assert metrics(layout)["mask_violations"] == 0 and metrics(layout)["finetune"]["steps"] == 8
    second = read_events(layout.events(1))[n_events:]
    assert [e.event for e in second] == ["start", "log", "end"]


def test_epochs_0_leaves_the_pruned_model_bitwise_and_marks_done(tmp_path: Path) -> None:
    layout = campaign(tmp_path, epochs=0)
    files = {p.name: p.read_bytes() for p in layout.model(1).iterdir()}

    assert run_main(layout) == 0

    ledger = json.loads((layout.model(1) / "finetune.json").read_text())
    assert ledger["epochs"] == 0 and ledger["skipped"] is True and ledger["mask_violations"] == 0
    assert {p.name: p.read_bytes() for p in layout.model(1).iterdir() if p.name != "finetune.json"} == files
    assert metrics(layout)["mask_violations"] == 0


def test_a_revived_weight_in_the_pruned_model_fails_the_step_naming_the_matrix(tmp_path: Path) -> None:
    layout = campaign(tmp_path)
    from tierctl.core.tiermap_io import load_tiers
    from tierctl.core.tiers import SEMI

    tiers, _ = load_tiers(layout.tiers(1))
    name = "model.layers.1.self_attn.o_proj"
    r, c = (tiers[name] == SEMI).nonzero()[0].tolist()
    path = layout.model(1) / "model.safetensors"
    sd = load_file(str(path))
    w = sd[f"{name}.weight"]
    block = w[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK]  # a view into w
    i, j = (block == 0).nonzero()[0].tolist()
    block[i, j] = 0.5  # a third survivor in a 2:4 group
    from safetensors.torch import save_file

    save_file(sd, str(path), metadata={"format": "pt"})
    pruned = path.read_bytes()

    assert run_main(layout) == 1

    end = read_events(layout.events(1))[-1]
    assert end.event == "end" and end.get("status") == "failed"
    assert name in end.get("error") and "mask violation" in end.get("error")
    assert not (layout.model(1) / "finetune.json").exists()
    assert path.read_bytes() == pruned  # the pruned model stays for a rerun


def test_ledger_catches_a_weight_revived_after_fine_tune() -> None:
    from tierctl.lm.finetune import build_masks
    from tierctl.lm.models import load_model, prunable_linears

    model, _ = load_model("tiny-llama", device="cpu")
    tiers = prune_for_test(model)
    keep = build_masks(model, tiers, BLOCK)
    weights = {n: lin.weight.detach().clone() for n, lin in prunable_linears(model).items()}
    assert ledger_of(weights, tiers, keep, BLOCK, K)["mask_violations"] == 0
    name = "model.layers.0.mlp.down_proj"
    i, j = (~keep[name]).nonzero()[0].tolist()
    weights[name][i, j] = 1e-6
    with pytest.raises(StepFailed, match=f"mask violation in {name}: 1 pruned entries"):
        ledger_of(weights, tiers, keep, BLOCK, K)


def test_fine_tune_before_prune_is_bad_input(tmp_path: Path) -> None:
    layout = make_campaign(tmp_path, schedule=SCHEDULE_EPOCHS.format(epochs=1))
    assert run_main(layout) == 1  # refused after its start event: a failed step


@pytest.mark.slow
@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    over = {"tokens_per_epoch": 2048, "checkpoint_every": 4, "batch_size": 2, "seqlen": 32}
    straight = campaign(tmp_path, epochs=2, name="straight", **over)
    killed = campaign(tmp_path, epochs=2, name="killed", **over)
    total = 2 * 2048 // 32 // 2
    cmd = [sys.executable, "-m", "tierctl.steps", "finetune", "--iter", "1", "--campaign"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    proc = subprocess.Popen([*cmd, str(killed.root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    state = killed.finetune_checkpoint(1) / "state.json"
    deadline = time.time() + 120
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed.model(1) / "finetune.json").exists()
    done_at_kill = json.loads(state.read_text())["step"]
    assert 0 < done_at_kill < total

    assert subprocess.run([*cmd, str(killed.root)], capture_output=True, env=env).returncode == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses: the same threads give the same float sums
    try:
        assert run_main(straight) == 0
    finally:
        torch.set_num_threads(threads)

    ledger = json.loads((killed.model(1) / "finetune.json").read_text())
    assert ledger["resumed_from"] == done_at_kill and ledger["steps"] == total
    a, b = model_weights(straight), model_weights(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_wanda_baseline_iteration_fine_tunes_with_its_zeros_held(tmp_path: Path) -> None:
    from tierctl.steps.prune import main as prune_main

    layout = make_campaign(tmp_path, prune={"method": "wanda-unstructured", "sparsity": 0.5},
                           finetune={"tokens_per_epoch": 256, "seqlen": 32, "batch_size": 2, "lr": 1e-2})
    assert prune_main(["--campaign", str(layout.root), "--iter", "1"]) == 0
    before = model_weights(layout)
    assert run_main(layout) == 0
    after = model_weights(layout)
    m = metrics(layout)
    assert m["mask_violations"] == 0 and m["finetune"]["steps"] > 0
    for name, w in before.items():
        assert torch.equal(after[name][w == 0], torch.zeros_like(after[name][w == 0])), name
    assert any(not torch.equal(after[n], before[n]) for n in before)


def test_the_rows_lr_and_tokens_per_epoch_reach_the_optimizer(tmp_path: Path) -> None:
    # campaign.toml says lr 1e-3 and 1024 tokens per epoch (4 steps of 4 x 64); the row says 3e-3 and 512.
    layout = campaign(tmp_path, epochs=1, log_every=1)
    layout.schedule.write_text("iteration,dense,mid_2_4,topk,epochs,lr,tokens_per_epoch\n"
                               "1,0.5,0.25,0.25,1,3e-3,512\n", encoding="utf-8")

    assert run_main(layout) == 0

    lrs = [e.get("value") for e in read_events(layout.events(1)) if e.event == "metric" and e.get("name") == "lr"]
    # 2 steps (512 tokens), warm-up ceil(0.1 * 2) = 1 step, so step 2 runs at the peak: the row's lr.
    assert lrs == [pytest.approx(3e-3), pytest.approx(3e-3)]
    ledger = metrics(layout)["finetune"]
    assert (ledger["lr"], ledger["tokens_per_epoch"], ledger["steps"]) == (3e-3, 512, 2)


def test_blank_knob_cells_keep_the_campaign_toml_values() -> None:
    from tierctl.campaign.config import FinetuneConfig
    from tierctl.core.schedule import parse_schedule
    from tierctl.steps.finetune import settings_for

    rows = parse_schedule("iteration,dense,mid_2_4,topk,epochs,lr,tokens_per_epoch\n"
                          "1,0.9,0.1,0,2,,\n2,0.8,0.2,0,3,2e-4,0\n").rows
    toml = FinetuneConfig(lr=1e-3, tokens_per_epoch=1024)

    assert [(s.epochs, s.lr, s.tokens_per_epoch) for s in (settings_for(toml, r) for r in rows)] == \
        [(2, 1e-3, 1024), (3, 2e-4, 0)]
