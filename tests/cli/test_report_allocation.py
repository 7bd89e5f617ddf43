"""The report's composition figure shows an OWL iteration's per-layer DENSE targets and outlier ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.campaign_fixtures import write_campaign

OWL = {"method": "owl", "m": 5.0, "lambda": 0.08, "ratios_from": 1, "blocks_off": {"dense": 0, "topk": 0},
       "layers": [{"layer": 0, "outlier_ratio": 0.0123, "shift": -0.08, "dense": 0.72, "topk": 0.18},
                  {"layer": 1, "outlier_ratio": 0.0456, "shift": 0.08, "dense": 0.88, "topk": 0.02}]}


def test_an_owl_iteration_gets_its_dense_targets_and_outlier_ratios_drawn(tmp_path: Path) -> None:
    from tierctl.report import load_campaign
    from tierctl.report_figures import composition_figure

    owl = write_campaign(tmp_path, name="owl", iterations=2)
    metrics = json.loads(owl.metrics(2).read_text())
    owl.metrics(2).write_text(json.dumps({**metrics, "allocation": OWL}))
    uniform = write_campaign(tmp_path, name="uniform", iterations=2)
    fig = composition_figure([load_campaign(owl), load_campaign(uniform)])
    by_layer = [ax for ax in fig.axes if ax.get_ylabel().endswith("iter 2")]
    assert [ax.get_ylabel() for ax in by_layer] == ["owl\niter 2", "uniform\niter 2"]
    targets = sorted(float(seg[0][1]) for c in by_layer[0].collections for seg in c.get_segments())
    assert targets == [0.72, 0.88]
    assert not by_layer[1].collections  # uniform: nothing drawn over its bars
    twins = [ax for ax in fig.axes if ax.get_ylabel().startswith("OWL outliers")]
    assert len(twins) == 1
    assert list(twins[0].get_lines()[0].get_ydata()) == pytest.approx([1.23, 4.56])
