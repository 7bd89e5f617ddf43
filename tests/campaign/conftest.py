"""A campaign whose first iteration really ran (tiny-llama), shared by the fork and guardrail tests."""

from __future__ import annotations

import pytest

from tests.campaign.real_steps import run_steps
from tests.helpers import make_campaign
from tierctl.campaign.layout import CampaignLayout

SOURCE_SCHEDULE = ("iteration,dense,mid_2_4,topk,epochs\n"
                   "1,0.90,0.10,0.00,1\n"
                   "2,0.80,0.10,0.10,1\n")


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory) -> CampaignLayout:
    """A tiny-llama campaign whose iteration 1 ran for real (shared by the tests, never written by them)."""
    layout = make_campaign(tmp_path_factory.mktemp("fork"), name="source", schedule=SOURCE_SCHEDULE,
                           finetune={"tokens_per_epoch": 512, "checkpoint_every": 0})
    run_steps(layout, 1)
    (layout.logs).mkdir(exist_ok=True)
    (layout.step_log(1, "prune")).write_text("--- a log of iteration 1\n")
    return layout


