"""`tierctl init NAME`: campaign.toml and schedule.csv, or exit 2 with one line and nothing written."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from tierctl.campaign.config import CampaignConfig, load_config
from tierctl.cli import app
from tierctl.core.schedule import SEED_SCHEDULE_CSV, load_schedule, parse_schedule

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["init", *args], env={"COLUMNS": "100", "NO_COLOR": "1"})


def tree(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_defaults_make_the_smollm2_pydoc_campaign_with_the_seed_schedule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("exp1", "--no-check")  # the check would resolve smollm2 (tests/cli/test_bad_inputs.py checks)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "created campaigns/exp1 (campaign.toml, schedule.csv); run it with: tierctl run " \
                       "campaigns/exp1 --all\n"
    assert tree(tmp_path) == ["campaigns", "campaigns/exp1", "campaigns/exp1/campaign.toml",
                              "campaigns/exp1/schedule.csv"]
    assert load_config(tmp_path / "campaigns/exp1/campaign.toml") == CampaignConfig()
    assert load_schedule(tmp_path / "campaigns/exp1/schedule.csv") == parse_schedule(SEED_SCHEDULE_CSV)


def test_every_option_lands_in_campaign_toml(tmp_path):
    sched = tmp_path / "s.csv"
    sched.write_text("iteration,dense,mid_2_4,topk,epochs\n1,0.5,0.5,0.0,1\n")  # transitions derived
    text = tmp_path / "corpus.txt"
    text.write_text("some text\n")
    r = invoke("exp2", "--dir", str(tmp_path / "c"), "--model", "tiny-llama", "--calib", f"text:{text}",
               "--eval", "wikitext2", "--schedule", str(sched), "--nsamples", "8", "--seqlen", "128",
               "--block-size", "8", "--topk", "4", "--device", "cpu", "--dtype", "bfloat16", "--seed", "7",
               "--method", "wanda-nm", "--no-check")
    assert r.exit_code == 0, r.stderr
    cfg = load_config(tmp_path / "c/exp2/campaign.toml")
    assert (cfg.model.name, cfg.model.device, cfg.model.dtype) == ("tiny-llama", "cpu", "bfloat16")
    assert (cfg.data.calib, cfg.data.eval) == (f"text:{text.resolve()}", "wikitext2")
    assert (cfg.data.nsamples, cfg.data.seqlen, cfg.data.seed) == (8, 128, 7)
    assert (cfg.finetune.seqlen, cfg.finetune.seed) == (128, 7)
    assert (cfg.tiers.block_size, cfg.tiers.topk_per_block, cfg.prune.method) == (8, 4, "wanda-nm")
    assert (tmp_path / "c/exp2/schedule.csv").read_text() == \
        "iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs\n1,0.50,0.50,0.00,0.50,0.00,1\n"


def test_a_model_directory_and_a_gguf_file_are_stored_as_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    (tmp_path / "m/config.json").write_text("{}")
    (tmp_path / "w.gguf").write_bytes(b"GGUF")
    assert invoke("a", "--model", "m", "--no-check").exit_code == 0
    assert invoke("b", "--model", "w.gguf", "--no-check").exit_code == 0
    assert invoke("c", "--model", "HuggingFaceTB/SmolLM2-360M", "--no-check").exit_code == 0
    assert load_config(tmp_path / "campaigns/a/campaign.toml").model.name == str(tmp_path / "m")
    assert load_config(tmp_path / "campaigns/b/campaign.toml").model.name == str(tmp_path / "w.gguf")
    assert load_config(tmp_path / "campaigns/c/campaign.toml").model.name == "HuggingFaceTB/SmolLM2-360M"


def test_an_existing_campaign_is_refused_and_left_alone(tmp_path):
    assert invoke("exp", "--dir", str(tmp_path), "--no-check").exit_code == 0
    before = (tmp_path / "exp/campaign.toml").read_text()
    r = invoke("exp", "--dir", str(tmp_path), "--model", "tiny-llama")
    assert r.exit_code == 2
    assert r.stderr == f"tierctl: {tmp_path}/exp: already exists (a campaign is there); choose another name " \
                       "or --dir\n"
    assert (tmp_path / "exp/campaign.toml").read_text() == before


@pytest.mark.parametrize(("args", "message"), [
    (["../escape"], "tierctl: campaign name '../escape': use a plain directory name (letters, digits, '.', '_', '-')"),
    (["a/b"], "tierctl: campaign name 'a/b': use a plain directory name (letters, digits, '.', '_', '-')"),
    ([".hidden"], "tierctl: campaign name '.hidden': use a plain directory name (letters, digits, '.', '_', '-')"),
    (["x", "--model", "tiny-gpt"], "tierctl: --model tiny-gpt: unknown preset (presets: smollm2-135m, tiny-llama, "
                                   "tiny-qwen2, tiny-mistral, tiny-opt)"),
    (["x", "--model", "./nowhere/model"], "tierctl: --model ./nowhere/model: no such file or directory, and not a "
                                          "hub id (name or org/name)"),
    (["x", "--model", "missing.gguf"], "tierctl: --model missing.gguf: no such file or directory, and not a hub id "
                                       "(name or org/name)"),
    (["x", "--calib", "text:/no/such/file"], "tierctl: --calib text:/no/such/file: no such file"),
    (["x", "--eval", "imdb"], "tierctl: --eval imdb: unknown text source (use pydoc, text:PATH, wikitext2, c4, ptb)"),
    (["x", "--nsamples", "0"], "tierctl: --nsamples: must be in 1..65536, got 0"),
    (["x", "--block-size", "6"], "tierctl: --block-size: must be a multiple of 4 (2:4 groups), got 6"),
    (["x", "--topk", "300"], "tierctl: --topk: must be in 1..256, got 300"),
    (["x", "--device", "tpu"], "tierctl: --device: must be one of auto, cpu, cuda, got 'tpu'"),
    (["x", "--dtype", "int8"], "tierctl: --dtype: must be one of float32, bfloat16, float16, got 'int8'"),
    (["x", "--method", "magnitude"], "tierctl: --method: must be one of progressive, wanda-unstructured, wanda-nm, "
                                     "none, got 'magnitude'"),
    (["x", "--schedule", "none.csv"], "tierctl: --schedule none.csv: no such file"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = invoke(*args)
    assert r.exit_code == 2
    assert r.stderr == message + "\n"
    assert r.stdout == ""
    assert os.listdir(tmp_path) == []


def test_an_invalid_schedule_is_refused_naming_its_row_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text(SEED_SCHEDULE_CSV.replace("2,0.80,0.10,0.10,0.10,0.10,2", "2,0.80,0.10,0.20,0.10,0.10,2"))
    r = invoke("x", "--schedule", str(bad))
    assert r.exit_code == 2
    assert r.stderr.startswith(f"tierctl: {bad}: ") and "iteration 2" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    assert os.listdir(tmp_path) == ["bad.csv"]


def test_a_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("")
    r = invoke("x", "--dir", str(tmp_path / "f"))
    assert r.exit_code == 2
    assert r.stderr == f"tierctl: --dir {tmp_path}/f: not a directory\n"
