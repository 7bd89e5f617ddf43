"""The prune step (`python -m tierctl.steps prune`): docs/campaign.md files, events, refusals, baselines."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLayout
from tierctl.campaign.state import campaign_status
from tierctl.core.events import read_events
from tierctl.core.keepbits import unpack_keep
from tierctl.core.schedule import load_schedule
from tierctl.core.tiermap_io import load_tiers
from tierctl.core.tiers import count_violations
from tierctl.lm.keep_file import read_keep
from tierctl.lm.models import load_model, prunable_linears
from tierctl.steps.prune import main

ROOT = Path(__file__).resolve().parents[2]
EDITED_SCHEDULE = """iteration,dense,mid_2_4,topk,epochs
1,0.80,0.20,0.00,0
2,0.70,0.20,0.10,0
"""


def run_subprocess(layout: CampaignLayout, n: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "tierctl.steps", "prune", "--campaign", str(layout.root),
                           "--iter", str(n)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def run_main(layout: CampaignLayout, n: int) -> int:
    return main(["--campaign", str(layout.root), "--iter", str(n)])


def metrics(layout: CampaignLayout, n: int) -> dict[str, Any]:
    return json.loads(layout.metrics(n).read_text(encoding="utf-8"))


def raw_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata())


def expected_entry(blocks: int, dense: float, topk: float) -> dict[str, float]:
    d, t = round(dense * blocks), round(topk * blocks)
    return {"dense": d / blocks, "semi": (blocks - d - t) / blocks, "topk": t / blocks}


@pytest.mark.slow
def test_three_chained_prune_steps_write_every_spec_file(tmp_path: Path, capsys):
    layout = make_campaign(tmp_path)
    schedule = load_schedule(layout.schedule)
    for n in (1, 2, 3):
        # Iteration 1 as the runner starts it (a subprocess); 2 and 3 in this process, to save imports.
        if n == 1:
            proc = run_subprocess(layout, n)
            assert proc.returncode == 0, proc.stderr
            stdout = proc.stdout
        else:
            capsys.readouterr()
            assert run_main(layout, n) == 0
            stdout = capsys.readouterr().out
        row = schedule.row(n)

        maps, meta = load_tiers(layout.tiers(n))
        assert raw_metadata(layout.tiers(n)) == {"block_size": "16", "topk_per_block": "10", "iteration": str(n)}
        model, _ = load_model(str(layout.model(n)), device="cpu")
        linears = prunable_linears(model)
        assert list(maps) == sorted(linears) or set(maps) == set(linears)
        for name, lin in linears.items():
            assert count_violations(lin.weight, maps[name], 16, 10) == 0, name
            if n > 1:
                prev, _ = load_tiers(layout.tiers(n - 1))
                assert bool((maps[name] >= prev[name]).all()), name

        with safe_open(str(layout.act_norms(n)), framework="pt") as f:
            assert set(f.keys()) == set(linears)
            assert all(f.get_tensor(k).dtype == torch.float32 for k in f.keys())
            assert f.get_tensor("model.layers.1.mlp.down_proj").shape == (192,)
            assert f.metadata()["iteration"] == str(n) and f.metadata()["nsamples"] == "4"

        # The masks the prune applied, as bits (the random model has no zero weight of its own).
        keep = read_keep(layout.keep(n))
        assert keep.meta["input"] == ("tiny-llama" if n == 1 else f"iter{n - 1}/model")
        for name, lin in linears.items():
            assert torch.equal(unpack_keep(keep.bits[name], lin.weight.shape), lin.weight != 0), name

        m = metrics(layout, n)
        assert m["iteration"] == n and m["method"] == "progressive"
        assert m["schedule_row"] == asdict(row)
        assert m["ppl"] is None and m["mask_violations"] is None and m["prune_violations"] == 0
        assert set(m["per_layer"]) == set(linears)
        for name, entry in m["per_layer"].items():
            want = expected_entry(maps[name].numel(), row.dense, row.topk)
            assert {t: entry[t] for t in want} == pytest.approx(want), name
            assert entry["sparsity"] == pytest.approx(float((linears[name].weight == 0).float().mean()))
        zeros = sum(int((lin.weight == 0).sum()) for lin in linears.values())
        assert m["sparsity"] == pytest.approx(zeros / sum(lin.weight.numel() for lin in linears.values()))
        assert m["composition"]["dense"] == pytest.approx(row.dense, abs=0.02)
        assert m["composition"]["topk"] == pytest.approx(row.topk, abs=0.02)
        assert m["expected_sparsity"] <= m["sparsity"]
        assert math.isfinite(m["ppl_pruned"])
        assert m["eval"]["windows"] == 4 and m["eval"]["seqlen"] == 64 and "protocol" in m["eval"]
        assert m["calibration"] == {"source": "pydoc", "nsamples": 4, "seqlen": 64, "seed": 0, "batch_size": 4,
                                    "tokens": 256}
        assert set(m["timings"]) >= {"load_s", "calibrate_s", "prune_s", "ppl_pruned_s"}
        assert m["device"] == "cpu" and m["dtype"] == "float32"

        events = read_events(layout.events(n))
        assert all(e.step == "prune" and e.iter == n for e in events)
        kinds = [e.event for e in events]
        assert kinds[0] == "start" and kinds[-1] == "end" and events[-1].get("status") == "ok"
        assert [e.get("name") for e in events if e.event == "layer"] == list(linears)
        units = [(e.get("done"), e.get("total"), e.get("unit")) for e in events if e.event == "progress"]
        assert [u for u in units if u[2] == "layers"] == [(0, 2, "layers"), (1, 2, "layers"), (2, 2, "layers")]
        assert units[-1] == (4, 4, "windows")
        phases = {e.get("unit"): e.get("phase") for e in events if e.event == "progress"}
        assert phases == {"layers": "prune", "windows": "ppl_pruned"}  # two kinds of work, each named
        assert [(e.get("name"), e.get("value")) for e in events if e.event == "metric"] == [
            ("ppl_pruned", m["ppl_pruned"])]
        assert [json.loads(line)["event"] for line in stdout.splitlines()] == kinds

    status = campaign_status(layout)
    assert [it.steps["prune"] for it in status.iterations[:3]] == ["done"] * 3


def test_a_schedule_edited_after_an_iteration_ran_is_bad_input(tmp_path: Path, capsys):
    layout = make_campaign(tmp_path)
    assert run_main(layout, 1) == 0
    layout.schedule.write_text(EDITED_SCHEDULE, encoding="utf-8")
    capsys.readouterr()
    assert run_main(layout, 2) == 1  # refused after its start event: a failed step
    err = capsys.readouterr().err
    assert re.search(r"iter1/tiers.safetensors: model\.layers\.\d+\.\S+ has (\d+) dense / 0 top-k of \d+ blocks, "
                     r"but \S+schedule.csv row 1 \(dense 0.8, topk 0\) gives \d+ / 0", err), err
    assert not layout.metrics(2).exists() and not layout.tiers(2).exists() and not layout.model(2).exists()
    last = read_events(layout.events(2))[-1]
    assert last.event == "end" and last.get("status") == "failed" and "schedule changed" in last.get("error")


def test_iteration_2_before_iteration_1_is_bad_input(tmp_path: Path, capsys):
    layout = make_campaign(tmp_path)
    assert run_main(layout, 2) == 1  # refused after its start event: a failed step
    assert "iter1/model missing" in capsys.readouterr().err


def test_a_tier_map_of_another_block_size_is_bad_input(tmp_path: Path, capsys):
    layout = make_campaign(tmp_path)
    assert run_main(layout, 1) == 0
    text = layout.config.read_text().replace("block_size = 16", "block_size = 8")
    layout.config.write_text(text)
    capsys.readouterr()
    assert run_main(layout, 2) == 1  # refused after its start event: a failed step
    assert "block_size 16 differs from [tiers] block_size 8" in capsys.readouterr().err


def test_wanda_baseline_step_writes_no_tier_map_and_is_done(tmp_path: Path):
    layout = make_campaign(tmp_path, prune={"method": "wanda-unstructured", "sparsity": 0.5})
    assert run_main(layout, 1) == 0
    assert not layout.tiers(1).exists()
    assert layout.act_norms(1).is_file() and (layout.model(1) / "config.json").is_file()
    m = metrics(layout, 1)
    assert m["method"] == "wanda-unstructured"
    assert m["baseline"] == {"method": "wanda-unstructured", "sparsity": 0.5, "per": "output row"}
    assert m["composition"] is None and m["expected_sparsity"] is None and m["prune_violations"] is None
    assert m["sparsity"] == pytest.approx(0.5)
    assert all(set(entry) == {"sparsity"} for entry in m["per_layer"].values())
    assert campaign_status(layout).iterations[0].steps["prune"] == "done"
    layer_events = [e for e in read_events(layout.events(1)) if e.event == "layer"]
    assert layer_events and all(e.get("dense") is None and e.get("sparsity") == 0.5 for e in layer_events)


def test_progressive_after_a_baseline_iteration_is_bad_input(tmp_path: Path, capsys):
    layout = make_campaign(tmp_path, prune={"method": "wanda-nm", "n": 2, "m": 4})
    assert run_main(layout, 1) == 0
    text = layout.config.read_text().replace('method = "wanda-nm"', 'method = "progressive"')
    layout.config.write_text(text)
    capsys.readouterr()
    assert run_main(layout, 2) == 1  # refused after its start event: a failed step
    assert "iteration 1 has no tier map" in capsys.readouterr().err
