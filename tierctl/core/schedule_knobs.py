"""Per-iteration fine-tune knobs: the optional schedule columns `lr` and `tokens_per_epoch`.

A schedule is a hypothesis about *how* to prune, and how hard to fine-tune after each step is part
of it: a higher learning rate right after a big demotion, a larger token budget at the end. So a row
may override two `[finetune]` settings of campaign.toml for its own fine-tune:

- `lr`: the peak learning rate of that iteration's fine-tune, a number > 0;
- `tokens_per_epoch`: its token budget per epoch, a whole number >= 0 (0 = every training window).

A blank cell, or a column left out altogether, means "the campaign.toml value": unlike the transition
columns, a blank here is not a mistake, it is the common case. No pandas, no torch.
"""

from __future__ import annotations

import math
from typing import Any

from tierctl.core.schedule_csv import KNOBS, NUMBER

MEANING = {
    "lr": "peak learning rate of this iteration's fine-tune (blank: [finetune] lr of campaign.toml)",
    "tokens_per_epoch": "fine-tune tokens per epoch, 0 = every window (blank: [finetune] tokens_per_epoch)",
}


def _text(raw: Any) -> str | None:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    s = str(raw).strip()
    return s or None


def parse_knob(column: str, raw: Any) -> tuple[float | int | None, str | None]:
    """(value, None) for a valid cell, (None, None) for a blank one, (None, message) otherwise."""
    s = _text(raw)
    if s is None:
        return None, None
    blank_hint = "leave it blank for the campaign.toml value"
    if not NUMBER.fullmatch(s):
        return None, f"'{s}' is not a number ({blank_hint})"
    x = float(s)
    if not math.isfinite(x):  # pragma: no cover - NUMBER never matches inf or nan
        return None, f"'{s}' is not finite"
    if column == "lr":
        if x <= 0:
            return None, f"{s} must be > 0 (a peak learning rate; {blank_hint})"
        return x, None
    if column == "tokens_per_epoch":
        if not x.is_integer() or x < 0:
            return None, f"'{s}' must be a whole number of tokens >= 0 (0 = every window; {blank_hint})"
        return int(x), None
    raise KeyError(column)


def format_knob(column: str, value: float | int | None) -> str:
    """The cell as schedule.csv writes it ('' for the campaign.toml value)."""
    if value is None:
        return ""
    return str(int(value)) if column == "tokens_per_epoch" else f"{float(value):g}"


def effective(row: Any, finetune: Any) -> dict[str, float | int]:
    """lr and tokens_per_epoch of a row's fine-tune: the row's cells, else the [finetune] table's."""
    return {k: (getattr(finetune, k) if getattr(row, k, None) is None else getattr(row, k)) for k in KNOBS}
