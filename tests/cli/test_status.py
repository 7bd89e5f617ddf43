"""`tierctl status CAMPAIGN [--json]`: read from the directory; bad input is one line and exit 2."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.campaign.step_files import event, iteration_done, prune_done, reference_done
from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLock
from tierctl.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["status", *args], env={"COLUMNS": "120", "NO_COLOR": "1"})


def test_json_is_spec_section_7_with_the_reference_first(tmp_path):
    layout = make_campaign(tmp_path)
    reference_done(layout, ppl=20.0, interval=[19.0, 21.0])
    iteration_done(layout, 1)
    prune_done(layout, 2, comp={"dense": 0.8, "semi": 0.1, "topk": 0.1}, ppl_pruned=55.0)
    r = invoke(str(layout.root), "--json")
    assert r.exit_code == 0
    data = json.loads(r.stdout)
    none = {"ppl_pruned_interval": None, "ppl_interval": None, "ppl_pruned_ratio": None, "ppl_ratio": None,
            "zeroshot": None}
    assert data == {"campaign": "camp", "iterations": [
        {"iteration": 0, "steps": {"eval": "done"}, "composition": None, "sparsity": 0.0, "ppl_pruned": None,
         "ppl": 20.0, **none, "ppl_interval": [19.0, 21.0], "ppl_ratio": 1.0},
        {"iteration": 1, "steps": {"prune": "done", "finetune": "done", "eval": "done"},
         "composition": {"dense": 0.9, "semi": 0.1, "topk": 0.0}, "sparsity": 0.05, "ppl_pruned": 40.0, "ppl": 30.0,
         **none, "ppl_interval": [27.0, 33.0], "ppl_pruned_ratio": 2.0, "ppl_ratio": 1.5},
        {"iteration": 2, "steps": {"prune": "done", "finetune": "pending", "eval": "pending"},
         "composition": {"dense": 0.8, "semi": 0.1, "topk": 0.1}, "sparsity": 0.05, "ppl_pruned": 55.0, "ppl": None,
         **none, "ppl_pruned_ratio": 2.75},
        *[{"iteration": n, "steps": {"prune": "pending", "finetune": "pending", "eval": "pending"},
           "composition": None, "sparsity": None, "ppl_pruned": None, "ppl": None, **none} for n in (3, 4, 5)],
    ], "halted": None}


def test_the_table_shows_steps_composition_sparsity_ppl_and_what_is_next(tmp_path):
    layout = make_campaign(tmp_path)
    reference_done(layout, ppl=20.0)
    iteration_done(layout, 1)
    r = invoke(str(layout.root))
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0].strip() == "campaign camp"
    row1 = next(line for line in lines if line.lstrip().startswith("1 "))
    assert "✓ done" in row1 and "90/10/0" in row1 and "5.0%" in row1 and "40.00" in row1 and "30.00" in row1
    assert "27.00-33.00" in row1 and "1.50x" in row1  # its 95% interval, and 30 / 20
    row0 = next(line for line in lines if line.lstrip().startswith("0 "))
    assert "reference" in row0 and "20.00" in row0 and "18.00-22.00" in row0 and "1.00x" in row0
    row2 = next(line for line in lines if line.lstrip().startswith("2 "))
    assert row2.count("· pending") == 3
    assert lines[-1] == f"next: iteration 2 prune — tierctl run {layout.root} --all"


def test_a_failed_step_is_shown_with_its_error_and_log(tmp_path):
    layout = make_campaign(tmp_path)
    event(layout, 1, "prune", "start")
    event(layout, 1, "prune", "end", status="failed", error="ValueError: boom")
    r = invoke(str(layout.root))
    assert "✗ failed" in r.stdout
    assert f"iteration 1 prune failed: ValueError: boom (log: {layout.root}/logs/iter1-prune.log)" in r.stdout


def test_a_stopped_step_reads_interrupted_in_the_table_the_json_and_the_note(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    event(layout, 1, "finetune", "start")
    event(layout, 1, "finetune", "end", status="failed", error="interrupted")  # Ctrl-C / SIGTERM / cancel
    r = invoke(str(layout.root), "--json")
    first = next(it for it in json.loads(r.stdout)["iterations"] if it["iteration"] == 1)
    assert first["steps"] == {"prune": "done", "finetune": "interrupted", "eval": "pending"}
    r = invoke(str(layout.root))
    assert "↻ interrupted" in r.stdout and "failed" not in r.stdout
    assert (f"iteration 1 finetune interrupted: running it again goes on "
            f"(log: {layout.root}/logs/iter1-finetune.log)") in r.stdout


def test_a_running_campaign_names_the_step_and_the_holder(tmp_path):
    layout = make_campaign(tmp_path)
    event(layout, 1, "prune", "start")
    with CampaignLock(layout.lock):
        r = invoke(str(layout.root), "--json")
        assert json.loads(r.stdout)["iterations"][1]["steps"]["prune"] == "running"
        r = invoke(str(layout.root))
    assert "▶ running" in r.stdout
    assert r.stdout.splitlines()[-1].startswith("running: iteration 1 prune (pid ")


def test_a_name_under_campaigns_is_found(tmp_path, monkeypatch):
    make_campaign(tmp_path / "campaigns", name="demo")
    monkeypatch.chdir(tmp_path)
    r = invoke("demo", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["campaign"] == "demo"


def test_a_missing_campaign_is_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("nope")
    assert r.exit_code == 2
    assert r.stderr == "tierctl: nope: no such campaign (looked for nope and campaigns/nope)\n"


def test_a_broken_schedule_is_exit_2_naming_the_file(tmp_path):
    layout = make_campaign(tmp_path)
    layout.schedule.write_text("iteration,dense\n1,x\n")
    r = invoke(str(layout.root))
    assert r.exit_code == 2
    assert r.stderr.startswith(f"tierctl: {layout.schedule}") and len(r.stderr.splitlines()) == 1


def test_a_schedule_contradicting_history_is_exit_2(tmp_path):
    layout = make_campaign(tmp_path)
    iteration_done(layout, 1)
    layout.schedule.write_text(layout.schedule.read_text().replace("1,0.90,0.10,0.00,0.10,0.00,2",
                                                                   "1,0.90,0.10,0.00,0.10,0.00,1"))
    r = invoke(str(layout.root))
    assert r.exit_code == 2
    assert "iteration 1 column epochs is 1 but iteration 1 already ran with 2" in r.stderr


def test_a_running_step_shows_its_progress_and_time_left(tmp_path):
    layout = make_campaign(tmp_path)
    prune_done(layout, 1)
    event(layout, 1, "finetune", "start")
    event(layout, 1, "finetune", "progress", done=120, total=677, unit="steps", phase="finetune", elapsed_s=252.0,
          eta_s=1170.0, tokens=61440)
    with CampaignLock(layout.lock):
        r = invoke(str(layout.root))
    line = next(x for x in r.stdout.splitlines() if "fine-tuning:" in x)
    assert line.strip().startswith("fine-tuning: step 120 of 677 (18%), 61,440 tokens, 4:1")  # 4:12 + a moment
    assert "left" in line


def test_what_comes_next_says_where_a_stopped_fine_tune_resumes(tmp_path):
    layout = make_campaign(tmp_path)
    reference_done(layout)
    prune_done(layout, 1)
    event(layout, 1, "finetune", "start")
    event(layout, 1, "finetune", "end", status="failed", error="interrupted")
    ckpt = layout.finetune_checkpoint(1)
    ckpt.mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"step": 450, "fingerprint": {"plan": {"total_steps": 677}}}))
    r = invoke(str(layout.root))
    assert r.stdout.splitlines()[-1] == (f"next: iteration 1 finetune — the fine-tune resumes from its checkpoint at "
                                         f"step 450 of 677 — tierctl run {layout.root} --all")
