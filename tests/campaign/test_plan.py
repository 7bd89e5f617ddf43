"""What `tierctl run` runs, what it refuses (before writing anything), and what --force removes."""

from __future__ import annotations

import json

import pytest

from tests.campaign.step_files import event, iteration_done, prune_done, reference_done
from tests.helpers import make_campaign
from tierctl.campaign.plan import RunRequest, invalidate, plan_run
from tierctl.campaign.state import campaign_status
from tierctl.errors import BadInput


def plan(layout, **kw):
    return plan_run(layout, campaign_status(layout), RunRequest(**kw))


@pytest.mark.parametrize(("kw", "message"), [
    ({"iteration": -1}, r"--iter -1: .*schedule.csv has iterations 1..5 \(and 0, the reference\)"),
    ({"iteration": 6}, r"--iter 6: .*schedule.csv has iterations 1..5"),
    ({"iteration": 0, "step": "prune"}, r"--step prune: iteration 0 \(the reference\) has only an eval step"),
    ({}, r"give --iter N or --all"),
    ({"iteration": 1, "all": True}, r"--all and --iter"),
    ({"all": True, "step": "prune"}, r"--step runs one step of one iteration"),
    ({"iteration": 1, "step": "train"}, r"--step train: must be one of prune, finetune, eval"),
])
def test_bad_requests_are_refused(tmp_path, kw, message):
    with pytest.raises(BadInput, match=message):
        plan(make_campaign(tmp_path), **kw)


def test_a_fresh_iteration_runs_its_three_steps(tmp_path):
    assert plan(make_campaign(tmp_path), iteration=1) == [(1, "prune"), (1, "finetune"), (1, "eval")]


def test_all_runs_every_step_not_done_in_order(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    prune_done(layout, 2)
    todo = plan(layout, all=True)
    assert todo[:4] == [(0, "eval"), (2, "finetune"), (2, "eval"), (3, "prune")]
    assert len(todo) == 1 + 2 + 3 * 3
    reference_done(layout)
    assert plan(layout, all=True)[0] == (2, "finetune")


def test_iteration_0_runs_alone_once_and_again_with_force(tmp_path):
    layout = make_campaign(tmp_path)
    assert plan(layout, iteration=0) == [(0, "eval")]
    reference_done(layout)
    assert plan(layout, iteration=0) == []
    req = RunRequest(iteration=0, force=True)
    assert plan_run(layout, campaign_status(layout), req) == [(0, "eval")]
    invalidate(layout, req)
    assert campaign_status(layout).reference.steps["eval"] == "pending"


def test_a_resume_skips_the_steps_that_are_done(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    event(layout, 1, "finetune", "start")  # killed
    assert plan(layout, iteration=1) == [(1, "finetune"), (1, "eval")]


def test_a_complete_iteration_has_nothing_to_run(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    assert plan(layout, iteration=1) == []
    assert plan(layout, iteration=1, step="prune") == []


def test_an_iteration_needs_the_previous_one_complete(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    with pytest.raises(BadInput, match=r"iteration 2 needs iteration 1 complete: its finetune step is pending"):
        plan(layout, iteration=2)


def test_a_step_needs_the_earlier_steps_of_its_iteration(tmp_path):
    layout = make_campaign(tmp_path)
    with pytest.raises(BadInput, match=r"--step eval of iteration 1 needs its prune step, which is pending"):
        plan(layout, iteration=1, step="eval")


def test_outputs_of_a_later_iteration_over_an_incomplete_one_are_refused(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    iteration_done(layout, 2)
    metrics = json.loads(layout.metrics(1).read_text())
    metrics["ppl"] = None
    layout.metrics(1).write_text(json.dumps(metrics))
    with pytest.raises(BadInput, match=r"iter2 has outputs although iteration 1 is not complete"):
        plan(layout, all=True)


def test_force_of_a_done_fine_tune_without_its_keep_file_is_refused(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    with pytest.raises(BadInput, match=r"--force --step finetune: .* redo iteration 1 from its prune"):
        plan(layout, iteration=1, step="finetune", force=True)


def test_force_prune_removes_the_iteration_and_every_later_one(tmp_path):
    layout = make_campaign(tmp_path)
    for n in (1, 2, 3):
        iteration_done(layout, n)
    req = RunRequest(iteration=2, force=True)
    assert plan_run(layout, campaign_status(layout), req) == [(2, "prune"), (2, "finetune"), (2, "eval")]
    invalidate(layout, req)
    assert layout.iterations_on_disk() == [1]
    assert campaign_status(layout).iteration(1).complete


def test_force_eval_clears_only_the_ppl(tmp_path):
    layout = make_campaign(tmp_path)
    for n in (1, 2):
        iteration_done(layout, n)
    req = RunRequest(iteration=1, step="eval", force=True)
    assert plan_run(layout, campaign_status(layout), req) == [(1, "eval")]
    invalidate(layout, req)
    st = campaign_status(layout)
    assert st.iteration(1).steps == {"prune": "done", "finetune": "done", "eval": "pending"}
    assert st.iteration(1).ppl_pruned == 40.0
    assert st.iteration(2).complete


def test_force_all_removes_every_iteration(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    reference_done(layout)
    req = RunRequest(all=True, force=True)
    assert len(plan_run(layout, campaign_status(layout), req)) == 1 + 15
    invalidate(layout, req)
    assert layout.iterations_on_disk() == []
