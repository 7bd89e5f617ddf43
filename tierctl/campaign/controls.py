"""`tierctl init NAME --controls`: a progressive campaign and the campaigns it must be compared with.

Next to NAME (progressive) it creates, with the same model, data, evaluation ([data], [eval]) and
[finetune] settings:

    NAME-control     [prune] method "none": nothing pruned, the same schedule, so the same epochs after
                     every iteration. It separates what fine-tuning on the calibration text does (domain
                     adaptation) from what recovers the pruned weights.
    NAME-wanda       one-shot Wanda, unstructured, at the schedule's final projected weight sparsity.
    NAME-wanda-2-4   one-shot Wanda 2:4 (50% whatever the schedule).

"Same total fine-tune budget" for a one-row baseline: its single iteration fine-tunes for the sum of the
schedule's epochs, with the same [finetune] table (tokens_per_epoch, batch, lr), so it takes as many
optimizer steps on as many tokens as the whole progressive campaign. What differs is unavoidable: one
warm-up and one cosine decay over all those steps instead of one per iteration, and all of it after the
one prune instead of spread between prunes. The baselines' schedule row is the progressive schedule's
last row (the tier columns are ignored by a baseline; they keep the file valid and comparable).

Everything is validated before the first directory is created; if creating a later one fails, the ones
created before are removed again, so a refused `--controls` leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path

from tierctl.campaign.config import CampaignConfig, validate
from tierctl.campaign.init import InitOptions, build_config, check_target, schedule_text, write_campaign
from tierctl.campaign.layout import CampaignLayout
from tierctl.errors import BadInput

# suffix -> (method, what it is), in the order they are created after NAME.
CONTROLS = (("control", "none"), ("wanda", "wanda-unstructured"), ("wanda-2-4", "wanda-nm"))


def baseline_schedule(text: str) -> str:
    """The one-row schedule CSV of a baseline: the last row of `text`, with the sum of its epochs."""
    from tierctl.core.schedule import parse_schedule, schedule_from_rows

    schedule = parse_schedule(text)
    last = schedule.rows[-1]
    epochs = sum(r.epochs for r in schedule.rows)
    row = {"iteration": 1, "dense": last.dense, "mid_2_4": last.mid_2_4, "topk": last.topk,
           "dense_to_2_4": 1.0 - last.dense, "mid_2_4_to_topk": last.topk, "epochs": epochs}
    return schedule_from_rows([row]).to_csv()


def final_sparsity(text: str, block_size: int, k: int) -> float:
    """The schedule's projected weight sparsity after its last iteration (full blocks; core/schedule.project)."""
    from tierctl.core.schedule import parse_schedule, project

    return float(project(parse_schedule(text), block_size, k)[-1]["sparsity"])


def create_comparison_set(name: str, parent: Path, opts: InitOptions, check: bool = True,
                          on_warning: Callable[[str], None] | None = None) -> list[CampaignLayout]:
    """NAME and its controls (module doc), all validated first; returns their layouts in creation order.

    `check`, `on_warning`: the check step on each, as create_campaign."""
    if opts.method not in (None, "progressive"):
        raise BadInput(f"--controls: --method {opts.method}: the controls are made for a progressive campaign")
    names = [name] + [f"{name}-{suffix}" for suffix, _ in CONTROLS]
    for n in names:
        check_target(n, parent)
    config = build_config(dataclasses.replace(opts, method="progressive"))
    progressive = schedule_text(opts.schedule)
    one_row = baseline_schedule(progressive)
    sparsity = round(final_sparsity(progressive, config.tiers.block_size, config.tiers.topk_per_block), 6)
    plans: list[tuple[str, CampaignConfig, str]] = [(name, config, progressive)]
    for (_, method), n in zip(CONTROLS, names[1:], strict=True):
        prune = dataclasses.replace(config.prune, method=method, allocation="uniform"
                                    if method == "wanda-nm" else config.prune.allocation)
        if method == "wanda-unstructured":
            prune = dataclasses.replace(prune, sparsity=sparsity)
        if method == "wanda-nm":
            prune = dataclasses.replace(prune, n=2, m=4)
        cfg = validate(dataclasses.replace(config, prune=prune), Path(f"{n}/campaign.toml"))
        plans.append((n, cfg, progressive if method == "none" else one_row))
    made: list[CampaignLayout] = []
    try:
        for n, cfg, text in plans:
            made.append(write_campaign(n, parent, cfg, text, check, on_warning))
    except BaseException:
        for layout in made:
            shutil.rmtree(layout.root, ignore_errors=True)
        raise
    return made
