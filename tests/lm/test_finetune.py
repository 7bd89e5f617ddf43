"""Masked fine-tune (lm/finetune.py): masks hold, schedule and data order, resume is exact."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tierctl.errors import BadInput
from tierctl.lm.finetune import (
    FinetuneSettings,
    Plan,
    build_masks,
    epoch_order,
    finetune,
    lr_at,
    make_plan,
    mask_violations,
    train_windows,
)
from tierctl.lm.models import load_model, prunable_linears

BLOCK, K = 16, 10


def prune_for_test(model: Any, dense: float = 0.5, topk: float = 0.25) -> dict[str, torch.Tensor]:
    """One progressive iteration on every prunable matrix (norms from a seeded generator): the pruned
    weights are written into `model`; returns the tier maps. Half the blocks end DENSE, a quarter
    SEMI and a quarter TOPK, so all three kinds of mask are exercised."""
    from tierctl.core.tiers import progressive_step

    g = torch.Generator().manual_seed(1)
    tiers = {}
    with torch.no_grad():
        for name, lin in prunable_linears(model).items():
            w = lin.weight
            norm = torch.rand(w.shape[1], generator=g) + 0.5
            start = torch.zeros(w.shape[0] // BLOCK, w.shape[1] // BLOCK, dtype=torch.uint8)
            new, keep = progressive_step(w, norm, start, dense, topk, block_size=BLOCK, k=K)
            w.mul_(keep.to(w.dtype))
            tiers[name] = new
    return tiers


def pruned_tiny() -> tuple[Any, Any, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model, tok = load_model("tiny-llama", device="cpu")
    tiers = prune_for_test(model)
    return model, tok, tiers, build_masks(model, tiers, BLOCK)


def random_windows(n: int, seqlen: int, vocab: int = 512, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def weights_of(model: Any) -> dict[str, torch.Tensor]:
    return {name: lin.weight.detach().clone() for name, lin in prunable_linears(model).items()}


# ---- masks hold ----


def test_masks_hold_after_50_steps_at_lr_0_1() -> None:
    model, _, tiers, keep = pruned_tiny()
    before = weights_of(model)
    settings = FinetuneSettings(epochs=1, lr=1e-1, batch_size=1, seqlen=32, warmup_ratio=0.0, weight_decay=0.1)
    result = finetune(model, random_windows(50, 32), keep, settings)

    assert result.steps == 50
    after = weights_of(model)
    bad = mask_violations(after, tiers, keep, BLOCK, K)
    assert all(v == {"revived": 0, "tier": 0} for v in bad.values())
    for name, w in after.items():
        assert torch.count_nonzero(w[~keep[name]]) == 0, name  # every pruned entry exactly 0
        assert not torch.equal(w, before[name]), name  # and the kept ones did train
    some = next(iter(keep))
    assert (~keep[some]).any()  # the masks do prune something


def test_training_without_masks_revives_pruned_weights_and_the_ledger_sees_it() -> None:
    model, _, tiers, keep = pruned_tiny()
    settings = FinetuneSettings(epochs=1, lr=1e-2, batch_size=1, seqlen=32, warmup_ratio=0.0)
    finetune(model, random_windows(5, 32), {}, settings)  # no masks: what masking protects against

    bad = mask_violations(weights_of(model), tiers, keep, BLOCK, K)
    assert all(v["revived"] > 0 and v["tier"] > 0 for v in bad.values())


def test_masks_come_from_tiers_and_pruned_weights() -> None:
    model, _, tiers, keep = pruned_tiny()
    for name, lin in prunable_linears(model).items():
        w, t, m = lin.weight.detach(), tiers[name], keep[name]
        dense_blocks = (t == 0).repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)
        assert m[dense_blocks].all()  # DENSE: every entry, zero or not
        assert torch.equal(m[~dense_blocks], w[~dense_blocks] != 0)  # SEMI / TOPK: the survivors


def test_build_masks_refuses_tier_maps_of_another_model() -> None:
    model, _, tiers, _ = pruned_tiny()
    tiers.pop("model.layers.1.mlp.down_proj")
    with pytest.raises(BadInput, match="model.layers.1.mlp.down_proj"):
        build_masks(model, tiers, BLOCK)


def test_fine_tuning_lowers_the_loss_on_text() -> None:
    from tierctl.lm.text import token_stream

    model, tok, _, keep = pruned_tiny()
    windows = train_windows(token_stream("pydoc", tok, "train"), 64)[:24]
    settings = FinetuneSettings(epochs=2, lr=1e-2, batch_size=4, seqlen=64, log_every=1)
    result = finetune(model, windows, keep, settings)
    assert result.losses[-1][1] < result.losses[0][1] - 0.5


def test_grad_accumulation_sees_the_same_data_as_a_bigger_batch() -> None:
    """batch 2 x grad_accum 2 takes the same 4 windows per step as batch 4 (as do 2 ranks x batch 2)."""
    runs = []
    for batch, accum in ((4, 1), (2, 2)):
        model, _, _, keep = pruned_tiny()
        settings = FinetuneSettings(epochs=1, lr=1e-3, batch_size=batch, grad_accum=accum, seqlen=32, log_every=1)
        runs.append((finetune(model, random_windows(16, 32), keep, settings), weights_of(model)))
    (big, w_big), (acc, w_acc) = runs
    assert [s for s, _ in acc.losses] == [1, 2, 3, 4]
    assert [v for _, v in acc.losses] == pytest.approx([v for _, v in big.losses], rel=1e-5)
    for name, w in w_acc.items():
        torch.testing.assert_close(w, w_big[name], rtol=0, atol=1e-5)  # Adam: lr * (tiny noise / tiny grad)


# ---- schedule, data order, plan ----


def test_lr_warms_up_linearly_then_decays_by_cosine() -> None:
    plan = Plan(windows=100, per_epoch=100, global_batch=10, steps_per_epoch=10, total_steps=10, warmup_steps=2)
    lrs = [lr_at(s, plan, 1.0) for s in range(10)]
    assert lrs[:2] == [0.5, 1.0]
    assert lrs[2] == 1.0
    assert lrs[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] > 0


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch() -> None:
    a = epoch_order(50, seed=3, epoch=0)
    assert sorted(a.tolist()) == list(range(50))
    assert torch.equal(a, epoch_order(50, seed=3, epoch=0))
    assert not torch.equal(a, epoch_order(50, seed=3, epoch=1))
    assert not torch.equal(a, epoch_order(50, seed=4, epoch=0))


def test_plan_spends_the_token_budget_in_global_batches() -> None:
    s = FinetuneSettings(epochs=3, batch_size=2, grad_accum=2, seqlen=64, tokens_per_epoch=64 * 20, warmup_ratio=0.1)
    assert make_plan(100, s, world=2) == Plan(windows=100, per_epoch=20, global_batch=8, steps_per_epoch=2,
                                              total_steps=6, warmup_steps=1)
    assert make_plan(10, s).per_epoch == 10  # the budget cannot exceed the text
    assert make_plan(100, FinetuneSettings(epochs=1, batch_size=4, seqlen=64)).steps_per_epoch == 25


def test_plan_refuses_an_epoch_shorter_than_one_step() -> None:
    with pytest.raises(BadInput, match=r"\[finetune\] batch_size 4"):
        make_plan(3, FinetuneSettings(epochs=1, batch_size=4, seqlen=64))


def test_train_windows_are_consecutive_and_drop_the_tail() -> None:
    w = train_windows(torch.arange(10), 3)
    assert w.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(BadInput, match="seqlen 11"):
        train_windows(torch.arange(10), 11)


# ---- checkpoints and resume ----


class Stop(Exception):
    pass


def stop_at(k: int):
    def hook(done: int) -> None:
        if done == k:
            raise Stop

    return hook


RESUME = dict(epochs=2, lr=1e-2, batch_size=2, grad_accum=2, seqlen=32, checkpoint_every=3, weight_decay=0.01)


def run(ckpt: Path | None, stop: int | None = None, sink: Any = None, clock: Any = None,
        on_step: Any = None, **over: Any) -> tuple[Any, Any]:
    model, _, _, keep = pruned_tiny()
    settings = FinetuneSettings(**{**RESUME, **over})
    hooks = [h for h in (on_step, stop_at(stop) if stop else None) if h is not None]
    extra = {"clock": clock} if clock is not None else {}
    try:
        result = finetune(model, random_windows(20, 32), keep, settings, checkpoint=ckpt,
                          identity={"model_files": [("model.safetensors", 123)]},  # tuples: as JSON, lists
                          on_step=(lambda done: [h(done) for h in hooks]) if hooks else None, sink=sink, **extra)
    except Stop:
        result = None
    return model, result


def test_resume_after_a_stop_mid_epoch_ends_with_bitwise_equal_weights(tmp_path: Path) -> None:
    straight, _ = run(None)
    _, stopped = run(tmp_path / "ckpt", stop=7)  # 5 steps per epoch: checkpoints at 3, 5, 6; stops in epoch 1
    assert stopped is None
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["step"] == 6
    resumed, result = run(tmp_path / "ckpt")

    assert result.resumed_from == 6 and result.steps == 10
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_checkpoint_is_safetensors_and_json_only(tmp_path: Path) -> None:
    run(tmp_path / "ckpt", stop=4)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["model.safetensors", "optimizer.safetensors", "state.json"]
    from safetensors.torch import load_file

    optim = load_file(str(tmp_path / "ckpt" / "optimizer.safetensors"))
    assert optim["step:model.layers.0.mlp.up_proj.weight"].item() == 3.0
    assert optim["exp_avg:model.layers.0.mlp.up_proj.weight"].shape == (192, 64)


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path: Path) -> None:
    run(tmp_path / "ckpt", stop=4)
    _, result = run(tmp_path / "ckpt", lr=2e-2)
    assert result.resumed_from == 0


def test_a_checkpoint_resumes_with_the_global_batch_split_differently(tmp_path: Path) -> None:
    straight, _ = run(None)
    run(tmp_path / "ckpt", stop=7)  # batch 2 x grad_accum 2
    resumed, result = run(tmp_path / "ckpt", batch_size=4, grad_accum=1)  # as 2 processes x batch 2 would
    assert result.resumed_from == 6
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)


def test_a_checkpoint_at_the_last_step_resumes_to_the_same_result(tmp_path: Path) -> None:
    first, done = run(tmp_path / "ckpt")
    again, result = run(tmp_path / "ckpt")
    assert result.resumed_from == 10 and result.final_loss == done.final_loss
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))


class Minutes:
    """A clock the test moves: each optimizer step takes `per_step` minutes."""

    def __init__(self, per_step: float) -> None:
        self.now, self.per_step = 0.0, per_step

    def __call__(self) -> float:
        return self.now

    def step(self, done: int) -> None:
        self.now += 60 * self.per_step


def test_a_checkpoint_is_written_once_checkpoint_minutes_have_passed(tmp_path: Path) -> None:
    clock = Minutes(per_step=3)  # 5 steps per epoch: no epoch end and no checkpoint_every before step 5
    run(tmp_path / "ckpt", stop=4, clock=clock, on_step=clock.step, checkpoint_every=0, checkpoint_minutes=5)
    # The check after step k sees (k - 1) * 3 minutes (the clock moves after it): step 3 sees 6 >= 5 and
    # saves; step 4 sees 3 minutes since that checkpoint and does not.
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["step"] == 3


def test_no_time_checkpoint_when_checkpoint_minutes_is_0(tmp_path: Path) -> None:
    clock = Minutes(per_step=60)
    run(tmp_path / "ckpt", stop=2, clock=clock, on_step=clock.step, checkpoint_every=0, checkpoint_minutes=0)
    assert not (tmp_path / "ckpt").exists()


def test_progress_is_reported_from_the_first_optimizer_step(tmp_path: Path) -> None:
    from tierctl.core.events import EventSink, read_events

    sink = EventSink(1, "finetune", tmp_path / "events.jsonl", stream=None)
    run(None, sink=sink, epochs=1, log_every=10)  # 5 steps: the loss only at the last one
    progress = [e for e in read_events(tmp_path / "events.jsonl") if e.event == "progress"]
    first = progress[0].data
    assert (first["done"], first["total"], first["unit"], first["phase"]) == (1, 5, "steps", "finetune")
    assert first["tokens"] == 4 * 32  # global batch 2 x 2 windows of 32 tokens
    assert first["elapsed_s"] > 0 and first["eta_s"] > 0
    assert progress[-1].data["done"] == 5 and progress[-1].data["eta_s"] == 0
    assert progress[-1].data["tokens"] == 5 * 4 * 32


def test_a_loss_that_becomes_nan_fails_at_the_optimizer_step_where_it_first_appears() -> None:
    from tierctl.errors import StepFailed

    model, _, _, keep = pruned_tiny()
    with torch.no_grad():  # a non-finite weight makes the very first forward pass NaN
        next(iter(prunable_linears(model).values())).weight[0, 0] = float("nan")
    settings = FinetuneSettings(epochs=1, lr=1e-3, batch_size=1, seqlen=16, warmup_ratio=0.0, max_grad_norm=0.0)
    with pytest.raises(StepFailed, match=r"^fine-tune loss is nan at optimizer step 1 of 4 \(lr 0\.001\): "
                                         r"training diverged"):
        finetune(model, random_windows(4, 16), keep, settings)
