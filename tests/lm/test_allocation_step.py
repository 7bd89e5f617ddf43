"""The prune step with `[prune] allocation = "owl"`: what metrics.json records, reuse, history, baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.tiermap_io import load_tiers
from tierctl.lm.prune import reached_counts
from tierctl.steps.prune import main

OWL = {"allocation": "owl", "owl_m": 5.0, "owl_lambda": 0.08}
EDITED_SCHEDULE = """iteration,dense,mid_2_4,topk,epochs
1,0.80,0.20,0.00,0
2,0.70,0.20,0.10,0
"""


def run_main(layout: CampaignLayout, n: int) -> int:
    return main(["--campaign", str(layout.root), "--iter", str(n)])


def metrics(layout: CampaignLayout, n: int) -> dict[str, Any]:
    return json.loads(layout.metrics(n).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def owl_campaign(tmp_path_factory: pytest.TempPathFactory) -> CampaignLayout:
    layout = make_campaign(tmp_path_factory.mktemp("owl"), prune=OWL)
    assert run_main(layout, 1) == 0
    assert run_main(layout, 2) == 0
    return layout


def test_metrics_record_the_outlier_ratio_and_targets_of_every_layer(owl_campaign: CampaignLayout):
    m = metrics(owl_campaign, 1)
    a = m["allocation"]
    assert (a["method"], a["m"], a["lambda"], a["ratios_from"]) == ("owl", 5.0, 0.08, 1)
    assert [layer["layer"] for layer in a["layers"]] == [0, 1]  # tiny-llama's two decoder layers
    assert all(0 < layer["outlier_ratio"] < 1 for layer in a["layers"])
    assert a["blocks_off"] == {"dense": 0, "topk": 0}
    for layer in a["layers"]:  # the recorded targets are what each layer's matrices reached
        mine = {k: v for k, v in m["per_layer"].items() if k.startswith(f"model.layers.{layer['layer']}.")}
        maps, _ = load_tiers(owl_campaign.tiers(1))
        blocks = sum(maps[k].numel() for k in mine)
        assert layer["dense"] == pytest.approx(sum(v["dense"] * maps[k].numel() for k, v in mine.items()) / blocks)


def test_iteration_2_reuses_the_ratios_of_iteration_1_and_keeps_the_uniform_totals(owl_campaign: CampaignLayout):
    one, two = metrics(owl_campaign, 1)["allocation"], metrics(owl_campaign, 2)["allocation"]
    assert two["ratios_from"] == 1
    assert [x["outlier_ratio"] for x in two["layers"]] == [x["outlier_ratio"] for x in one["layers"]]
    maps, _ = load_tiers(owl_campaign.tiers(2))
    want = [reached_counts(t.numel(), 0.80, 0.10) for t in maps.values()]  # SPEC row 2
    assert sum(int((t == 0).sum()) for t in maps.values()) == sum(w[0] for w in want)
    assert sum(int((t == 2).sum()) for t in maps.values()) == sum(w[1] for w in want)
    per_matrix = [(int((t == 0).sum()), int((t == 2).sum())) for t in maps.values()]
    assert per_matrix != want  # the layers did get different targets


def test_a_schedule_edited_after_an_owl_iteration_ran_is_bad_input(tmp_path: Path, capsys):
    layout = make_campaign(tmp_path, prune=OWL)
    assert run_main(layout, 1) == 0
    layout.schedule.write_text(EDITED_SCHEDULE, encoding="utf-8")
    capsys.readouterr()
    assert run_main(layout, 2) == 1  # refused after its start event: a failed step
    err = capsys.readouterr().err
    assert "iter1/tiers.safetensors:" in err and "owl allocation" in err and "schedule changed" in err
    assert not layout.metrics(2).exists()


def test_owl_wanda_unstructured_step_records_the_sparsity_of_every_layer(tmp_path: Path):
    layout = make_campaign(tmp_path, prune={"method": "wanda-unstructured", "sparsity": 0.7, **OWL})
    assert run_main(layout, 1) == 0
    m = metrics(layout, 1)
    layers = m["allocation"]["layers"]
    assert sorted(layer["sparsity"] for layer in layers) == pytest.approx([0.62, 0.78])
    for name, entry in m["per_layer"].items():
        want = layers[int(name.split(".")[2])]["sparsity"]
        assert abs(entry["sparsity"] - want) < 0.02, name  # int(in * ratio) per row
