"""Campaign state is derived from the directory alone: files say done, events and the lock say the rest."""

from __future__ import annotations

import pytest

from tests.campaign.step_files import (
    COMP,
    eval_done,
    event,
    finetune_done,
    iteration_done,
    prune_done,
    reference_done,
)
from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLock
from tierctl.campaign.state import campaign_status
from tierctl.errors import BadInput


def steps(status, n):
    return status.iteration(n).steps


def test_a_new_campaign_has_every_iteration_of_the_schedule_pending(tmp_path):
    layout = make_campaign(tmp_path)
    st = campaign_status(layout)
    assert [it.iteration for it in st.iterations] == [1, 2, 3, 4, 5]
    assert all(it.steps == {"prune": "pending", "finetune": "pending", "eval": "pending"} for it in st.iterations)
    assert st.reference.iteration == 0 and st.reference.steps == {"eval": "pending"}
    assert st.next == (0, "eval")  # the reference first
    assert st.holder is None and st.running is None


def test_to_json_has_the_keys_of_spec_section_7_with_intervals_and_ratios(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    js = campaign_status(layout).to_json()
    assert set(js) == {"campaign", "iterations", "halted"}  # halted: the guardrail (docs/cli.md)
    assert js["campaign"] == "camp"
    assert js["iterations"][1] == {
        "iteration": 1, "steps": {"prune": "done", "finetune": "pending", "eval": "pending"},
        "composition": COMP, "sparsity": 0.05, "ppl_pruned": 40.0, "ppl": None,
        "ppl_pruned_interval": None, "ppl_interval": None, "ppl_pruned_ratio": None, "ppl_ratio": None,
        "zeroshot": None,
    }
    assert js["iterations"][2]["composition"] is None


def test_iteration_0_comes_first_and_every_ppl_has_its_ratio_to_it(tmp_path):
    layout = make_campaign(tmp_path)
    reference_done(layout, ppl=20.0, interval=[19.0, 21.0])
    iteration_done(layout, 1)  # ppl_pruned 40, ppl 30
    first, second = campaign_status(layout).to_json()["iterations"][:2]
    assert first == {"iteration": 0, "steps": {"eval": "done"}, "composition": None, "sparsity": 0.0,
                     "ppl_pruned": None, "ppl": 20.0, "ppl_pruned_interval": None, "ppl_interval": [19.0, 21.0],
                     "ppl_pruned_ratio": None, "ppl_ratio": 1.0, "zeroshot": None}
    assert second["iteration"] == 1 and second["ppl_ratio"] == 1.5 and second["ppl_pruned_ratio"] == 2.0


def test_each_step_is_done_when_its_output_file_is_in_place(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    assert steps(campaign_status(layout), 1) == {"prune": "done", "finetune": "pending", "eval": "pending"}
    finetune_done(layout, 1)
    assert steps(campaign_status(layout), 1) == {"prune": "done", "finetune": "done", "eval": "pending"}
    eval_done(layout, 1, ppl=31.5)
    st = campaign_status(layout)
    assert st.iteration(1).complete and st.iteration(1).ppl == 31.5
    assert st.next == (0, "eval")  # the reference was never measured
    reference_done(layout)
    assert campaign_status(layout).next == (2, "prune")


def test_a_temporary_metrics_file_of_a_killed_write_does_not_count(tmp_path):
    layout = make_campaign(tmp_path)
    layout.iter_dir(1).mkdir()
    (layout.iter_dir(1) / ".tmp-metrics.json.abc").write_text('{"iteration": 1}')
    assert steps(campaign_status(layout), 1)["prune"] == "pending"


def test_a_keep_file_and_a_model_without_metrics_are_not_a_done_prune(tmp_path):
    """The prune writes keep.safetensors and model/ before metrics.json: killed in between, it is not done."""
    layout = make_campaign(tmp_path)
    layout.model(1).mkdir(parents=True)
    (layout.model(1) / "config.json").write_text("{}")
    layout.keep(1).write_bytes(b"")
    assert steps(campaign_status(layout), 1) == {"prune": "pending", "finetune": "pending", "eval": "pending"}


def test_a_fine_tune_ledger_without_a_done_prune_is_not_a_done_fine_tune(tmp_path):
    layout = make_campaign(tmp_path)
    layout.model(1).mkdir(parents=True)
    (layout.model(1) / "finetune.json").write_text("{}")
    assert steps(campaign_status(layout), 1) == {"prune": "pending", "finetune": "pending", "eval": "pending"}


def test_a_fine_tune_whose_ledger_is_not_merged_yet_is_not_done(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    event(layout, 1, "finetune", "start")  # killed between the model swap and the metrics merge
    (layout.model(1) / "finetune.json").write_text('{"epochs": 2}')
    assert steps(campaign_status(layout), 1)["finetune"] == "interrupted"


def test_a_start_without_end_is_interrupted_when_no_process_holds_the_lock(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    event(layout, 1, "finetune", "start")
    st = campaign_status(layout)
    assert steps(st, 1)["finetune"] == "interrupted"
    assert "interrupted" in st.iteration(1).errors["finetune"]


def test_an_end_event_of_a_signal_or_cancel_is_interrupted_not_failed(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    event(layout, 1, "finetune", "start")
    event(layout, 1, "finetune", "end", status="failed", error="interrupted")
    st = campaign_status(layout)
    assert steps(st, 1)["finetune"] == "interrupted"
    assert st.iteration(1).next_step == "finetune"  # a rerun goes on with it


def test_a_start_without_end_is_running_while_the_lock_is_held(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    event(layout, 1, "finetune", "start")
    with CampaignLock(layout.lock):
        st = campaign_status(layout)
        assert steps(st, 1)["finetune"] == "running"
        assert st.running == (1, "finetune")
        assert st.holder is not None


def test_only_the_newest_start_can_be_running(tmp_path):
    layout = make_campaign(tmp_path)
    event(layout, 1, "prune", "start")  # killed, then the run was resumed with the prune again
    event(layout, 1, "prune", "start")
    with CampaignLock(layout.lock):
        assert steps(campaign_status(layout), 1)["prune"] == "running"


def test_a_failed_end_event_gives_failed_and_its_error(tmp_path):
    layout = make_campaign(tmp_path)
    event(layout, 1, "prune", "start")
    event(layout, 1, "prune", "end", status="failed", error="RuntimeError: out of memory")
    st = campaign_status(layout)
    assert steps(st, 1)["prune"] == "failed"
    assert st.iteration(1).errors == {"prune": "RuntimeError: out of memory"}


def test_an_ok_end_whose_outputs_are_gone_is_pending_again(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    import json

    metrics = json.loads(layout.metrics(1).read_text())
    metrics["ppl"] = None  # what --force --step eval does before the redo
    layout.metrics(1).write_text(json.dumps(metrics))
    assert steps(campaign_status(layout), 1)["eval"] == "pending"


def test_missing_before_names_the_first_step_not_done(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    prune_done(layout, 2)
    st = campaign_status(layout)
    assert st.missing_before(2) is None
    assert st.missing_before(3) == (2, "finetune", "pending")


def test_a_broken_metrics_file_makes_the_prune_failed_naming_the_file_and_the_repair(tmp_path):
    layout = make_campaign(tmp_path)
    layout.iter_dir(1).mkdir()
    layout.metrics(1).write_text("{not json")
    it = campaign_status(layout).iterations[0]  # never blocks: `run --iter 1 --force` must stay possible
    assert it.steps == {"prune": "failed", "finetune": "pending", "eval": "pending"}
    assert it.errors["prune"] == (f"{layout.metrics(1)}: not valid JSON (Expecting property name enclosed in double "
                                  f"quotes: line 1 column 2 (char 1)): damaged; redo the iteration with: tierctl run "
                                  f"{layout.root} --iter 1 --force")


def test_a_schedule_edited_under_a_done_prune_is_refused_naming_iteration_and_column(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    text = layout.schedule.read_text().replace("1,0.90,0.10,0.00,0.10,0.00,2", "1,0.85,0.15,0.00,0.15,0.00,2")
    text = text.replace("2,0.80,0.10,0.10,0.10,0.10,2", "2,0.80,0.10,0.10,0.05,0.10,2")
    layout.schedule.write_text(text)
    with pytest.raises(BadInput, match=r"schedule.csv: iteration 1 column dense is 0.85 but iteration 1 already "
                                       r"ran with 0.9"):
        campaign_status(layout)


def test_epochs_may_change_until_the_fine_tune_ran(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    layout.schedule.write_text(layout.schedule.read_text().replace("1,0.90,0.10,0.00,0.10,0.00,2",
                                                                   "1,0.90,0.10,0.00,0.10,0.00,4"))
    assert campaign_status(layout).iteration(1).steps["prune"] == "done"
    finetune_done(layout, 1)
    with pytest.raises(BadInput, match=r"iteration 1 column epochs is 4 but iteration 1 already ran with 2"):
        campaign_status(layout)


def test_rows_of_iterations_not_run_yet_may_be_edited(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    text = layout.schedule.read_text().replace("5,0.35,0.45,0.20,0.15,0.00,3", "5,0.40,0.40,0.20,0.10,0.00,3")
    layout.schedule.write_text(text)
    assert campaign_status(layout).iteration(1).complete


def test_deleting_the_row_of_an_iteration_that_ran_is_refused(tmp_path):
    layout = make_campaign(tmp_path)
    for n in (1, 2):
        iteration_done(layout, n)
    layout.schedule.write_text("\n".join(layout.schedule.read_text().splitlines()[:2]) + "\n")
    with pytest.raises(BadInput, match=r"has iterations 1..1 but iteration 2 already ran"):
        campaign_status(layout)
