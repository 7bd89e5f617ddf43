"""Helpers shared by test packages (not fixtures): tiny campaigns on disk.

`make_campaign(tmp_path, model="tiny-llama", data={"seqlen": 32}, ...)` writes campaign.toml and
schedule.csv into a fresh campaign directory and returns its CampaignLayout. Defaults suit the
tiny presets: short windows, few samples, CPU, so a whole iteration runs in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tierctl.campaign.config import dumps_config, from_dict
from tierctl.campaign.layout import CampaignLayout

# The seed schedule (docs/tiers.md, The schedule).
SPEC_SCHEDULE_CSV = """iteration,dense,mid_2_4,topk,dense_to_2_4,mid_2_4_to_topk,epochs
1,0.90,0.10,0.00,0.10,0.00,2
2,0.80,0.10,0.10,0.10,0.10,2
3,0.65,0.20,0.15,0.15,0.05,2
4,0.50,0.30,0.20,0.15,0.05,2
5,0.35,0.45,0.20,0.15,0.00,3
"""

TINY_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {"device": "cpu"},
    "data": {"nsamples": 4, "seqlen": 64, "batch_size": 4, "eval_windows": 4},
    "finetune": {"batch_size": 4, "seqlen": 64, "tokens_per_epoch": 1024},
}


def campaign_dict(model: str = "tiny-llama", **overrides: dict[str, Any]) -> dict[str, Any]:
    """The campaign.toml tables: tiny defaults, then `overrides` merged per table."""
    tables: dict[str, dict[str, Any]] = {k: dict(v) for k, v in TINY_DEFAULTS.items()}
    tables["model"]["name"] = model
    for table, values in overrides.items():
        tables.setdefault(table, {}).update(values)
    return tables


def make_campaign(tmp_path: Path, model: str = "tiny-llama", name: str = "camp", schedule: str | None = None,
                  **overrides: dict[str, Any]) -> CampaignLayout:
    """A campaign directory `tmp_path/name` with campaign.toml and schedule.csv (the seed schedule by default)."""
    root = Path(tmp_path) / name
    root.mkdir(parents=True, exist_ok=True)
    layout = CampaignLayout(root)
    cfg = from_dict(campaign_dict(model, **overrides), layout.config)  # validated like a user's file
    layout.config.write_text(dumps_config(cfg), encoding="utf-8")
    layout.schedule.write_text(SPEC_SCHEDULE_CSV if schedule is None else schedule, encoding="utf-8")
    return layout
