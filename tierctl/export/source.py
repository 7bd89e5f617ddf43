"""`CAMPAIGN[@N]`: which finished iteration a command means, checked before any model is touched.

No torch here: the CLI refuses a missing campaign or an unfinished iteration in a fraction of a second.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tierctl.errors import BadInput


@dataclass(frozen=True)
class IterationSource:
    """A finished iteration of a campaign: its model directory, tier maps and settings."""

    label: str  # "name@N"
    root: Path  # the campaign directory
    iteration: int
    model_dir: Path
    tiers: Path | None  # None for the Wanda baselines, which have no tier map
    method: str
    dtype: str  # [model] dtype: the dtype iter<N>/model was saved in
    base_model: str  # [model] name: the original model, for `tierctl sample`


def split_target(arg: str) -> tuple[str, int | None]:
    """`CAMPAIGN@N` -> (CAMPAIGN, N); `CAMPAIGN` -> (CAMPAIGN, None)."""
    camp, sep, n = arg.rpartition("@")
    if sep and camp:
        if not n.isdigit():
            raise BadInput(f"{arg}: expected CAMPAIGN@N with N an iteration number")
        return camp, int(n)
    return arg, None


def resolve_iteration(arg: str) -> IterationSource:
    """The iteration `arg` names (default: the latest finished one); BadInput when missing or unfinished."""
    from tierctl.campaign.config import load_config
    from tierctl.campaign.layout import resolve_campaign
    from tierctl.campaign.state import campaign_status
    from tierctl.core.vocab import PENDING

    camp, n = split_target(arg)
    layout = resolve_campaign(camp)
    config = load_config(layout.config)
    status = campaign_status(layout, check=False)
    if n is None:
        done = [it.iteration for it in status.iterations if it.complete]
        if not done:
            raise BadInput(f"{arg}: no iteration of this campaign is finished yet (tierctl status {layout.root})")
        n = done[-1]
    if not 1 <= n <= len(status.iterations):
        raise BadInput(f"{arg}: the schedule has iterations 1..{len(status.iterations)}")
    it = status.iteration(n)
    if not it.complete:
        step = it.next_step
        state = "not run" if it.steps[step] == PENDING else it.steps[step]
        raise BadInput(f"{arg}: iteration {n} is not finished (its {step} step is {state})")
    tiers = layout.tiers(n) if config.prune.method == "progressive" else None
    return IterationSource(label=f"{layout.name}@{n}", root=layout.root, iteration=n, model_dir=layout.model(n),
                           tiers=tiers, method=config.prune.method, dtype=config.model.dtype,
                           base_model=config.model.name)


FORMATS = ("packed", "dense")
DTYPES = ("float32", "bfloat16", "float16")


def check_out(out: Path) -> None:
    """Refuse an --out that exists and is not an empty directory, or that cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise BadInput(f"--out {out}: exists and is not empty")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    where = out if out.is_dir() else parent
    try:  # a real probe: permission bits say nothing for root, nor for a read-only mount
        os.rmdir(tempfile.mkdtemp(prefix=".tmp-probe-", dir=where))
    except OSError as e:
        raise BadInput(f"--out {out}: cannot write in {where} ({e.strerror})") from None


def check_export(src: IterationSource, out: Path, format: str | None, dtype: str | None) -> tuple[str, str]:
    """(format, dtype) of an export, defaults filled in; BadInput for every refusal, before anything is written."""
    format = format or ("packed" if src.tiers is not None else "dense")
    if format not in FORMATS:
        raise BadInput(f"--format {format}: must be packed or dense")
    if format == "packed" and src.tiers is None:
        raise BadInput(f"{src.label}: a {src.method} baseline has no tier map, so it exports with --format dense only")
    dtype = dtype or src.dtype
    if dtype not in DTYPES:
        raise BadInput(f"--dtype {dtype}: must be one of {', '.join(DTYPES)}")
    check_out(out)
    return format, dtype
