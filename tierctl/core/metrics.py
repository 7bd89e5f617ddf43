"""`iter<N>/metrics.json`: what one iteration measured, read and written through one typed record.

The prune step writes the record whole; the fine-tune and eval steps merge their fields into it
(`update_metrics`); `tierctl status`, the dashboard and the report read it (`read_metrics`). One
process writes at a time (the campaign lock), and every write is atomic.

The schema (every key is written, `null` while unknown):

    iteration          int    the iteration number (0: the reference, the unpruned model measured once)
    reference          bool   true in iter0/metrics.json
    model              str    the model the reference measured
    method             str    "progressive" or a one-shot baseline ("wanda-unstructured", "wanda-nm")
    schedule_row       dict   the schedule row the prune ran with (checked against schedule.csv later)
    composition        dict   block fractions over all prunable matrices: dense, semi, topk, blocks
    sparsity           float  fraction of zero weights in the prunable matrices
    expected_sparsity  float  the sparsity the tiers imply (docs/tiers.md)
    per_layer          dict   matrix name -> {dense, semi, topk, sparsity}
    ppl_pruned         float  perplexity after the prune, before the fine-tune
    ppl_pruned_interval list  its 95% interval [low, high]
    ppl                float  perplexity after the fine-tune (null until the eval step is done)
    ppl_interval       list   its 95% interval [low, high]
    zeroshot           dict   zero-shot task results of the eval step ([eval] tasks, through lm-eval)
    mask_violations    int    pruned entries found non-zero after the fine-tune (must be 0)
    prune_violations   int    entries breaking their block's pattern right after the prune
    tiers              dict   {block_size, topk_per_block} (progressive campaigns)
    baseline           dict   the one-shot baseline's settings
    allocation         dict   how the prune spread its targets over the layers (uniform or OWL)
    calibration        dict   {source, nsamples, seqlen, seed, batch_size, tokens}
    eval               dict   the evaluation protocol: {source, seqlen, windows, tokens, protocol}
    device, offload, dtype    str    where and how the prune ran
    timings            dict   seconds per phase: load_s, calibrate_s, prune_s, save_s, ppl_pruned_s,
                              step_s (prune step), finetune_s, eval_s, eval_load_s
    finetune           dict   the fine-tune's ledger (steps, tokens, losses, seconds, ...)
    guardrail          dict   the halt of [run] max_ppl_ratio at this iteration (ppl, reference, rows_after)

Keys this version does not know are kept in `extra` and written back unchanged, so a newer writer's
fields survive an older reader's merge. Adding a field is one line in `Metrics` (and one here).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierctl.core.atomic import atomic_write_json
from tierctl.errors import BadInput


@dataclass
class Metrics:
    """One iteration's metrics.json (see the module docstring for what each field means)."""

    iteration: int | None = None
    reference: bool | None = None
    model: str | None = None
    method: str | None = None
    schedule_row: dict[str, Any] | None = None
    composition: dict[str, float] | None = None
    sparsity: float | None = None
    expected_sparsity: float | None = None
    per_layer: dict[str, dict[str, float]] | None = None
    ppl_pruned: float | None = None
    ppl_pruned_interval: list[float] | None = None
    ppl: float | None = None
    ppl_interval: list[float] | None = None
    zeroshot: dict[str, Any] | None = None
    mask_violations: int | None = None
    prune_violations: int | None = None
    tiers: dict[str, int] | None = None
    baseline: dict[str, Any] | None = None
    allocation: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None
    device: str | None = None
    offload: str | None = None
    dtype: str | None = None
    timings: dict[str, float] | None = None
    finetune: dict[str, Any] | None = None
    guardrail: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as read

    @classmethod
    def known(cls) -> tuple[str, ...]:
        """The field names of the schema, in the order they are written."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        known = cls.known()
        return cls(**{k: data[k] for k in known if k in data},
                   extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every known field (null when unknown), then the extra keys."""
        return {**{k: getattr(self, k) for k in self.known()}, **self.extra}

    def merged(self, **fields: Any) -> Metrics:
        """A copy with `fields` set; dict-valued fields that already hold a dict (timings, eval) are
        merged one level deep, so the eval step adding timings.eval_s keeps timings.prune_s.
        An unknown name is a programming error (TypeError): add the field to the schema first."""
        known = self.known()
        unknown = [k for k in fields if k not in known]
        if unknown:
            raise TypeError(f"metrics.json has no field {', '.join(unknown)} (add it to tierctl.core.metrics)")
        out = dataclasses.replace(self, extra=dict(self.extra))
        for key, value in fields.items():
            old = getattr(out, key)
            setattr(out, key, {**old, **value} if isinstance(value, dict) and isinstance(old, dict) else value)
        return out


def read_metrics(path: str | Path) -> Metrics | None:
    """The record in `path`, or None when the file does not exist.

    BadInput naming the file when it cannot be read, is not JSON, or is not a JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BadInput(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: not a JSON object")
    return Metrics.from_dict(data)


def write_metrics(path: str | Path, metrics: Metrics) -> None:
    """Write the record atomically (a reader sees the old file or the new one, never half of one)."""
    atomic_write_json(Path(path), metrics.to_dict())


def update_metrics(path: str | Path, **fields: Any) -> Metrics:
    """Merge `fields` into the record in `path` (an empty record when there is none) and write it."""
    metrics = (read_metrics(path) or Metrics()).merged(**fields)
    write_metrics(path, metrics)
    return metrics
