"""The dashboard's composition panel shows an OWL iteration's outlier ratio and targets per layer."""

from __future__ import annotations

import io
import json

from rich.console import Console
from textual.widgets import Static

from tests.tui.conftest import run_async, wait_for
from tierctl.campaign.layout import CampaignLayout
from tierctl.tui.app import make_app
from tierctl.tui.screens.campaign import CampaignScreen

OWL = {"method": "owl", "m": 5.0, "lambda": 0.08, "ratios_from": 1, "blocks_off": {"dense": 0, "topk": 0},
       "layers": [{"layer": 0, "outlier_ratio": 0.0123, "shift": -0.08, "dense": 0.72, "topk": 0.18},
                  {"layer": 1, "outlier_ratio": 0.0456, "shift": 0.08, "dense": 0.88, "topk": 0.02}]}


def panel_text(screen: CampaignScreen) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(screen.query_one("#composition-body", Static).content)
    return console.export_text()


@run_async
async def test_the_composition_panel_adds_each_layers_outlier_ratio_and_targets(demo: CampaignLayout) -> None:
    metrics = json.loads(demo.metrics(2).read_text())
    demo.metrics(2).write_text(json.dumps({**metrics, "allocation": OWL}), encoding="utf-8")
    app = make_app("demo", poll_interval=0.05)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, CampaignScreen)
        await wait_for(pilot, lambda: "owl: outliers" in panel_text(screen), what="the owl column")
        lines = panel_text(screen).splitlines()
        assert any(line.rstrip().endswith("1.23%  72/18") for line in lines), lines
        assert any(line.rstrip().endswith("4.56%  88/2") for line in lines), lines
