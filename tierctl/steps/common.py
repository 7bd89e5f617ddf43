"""Scaffolding shared by the step entry points, so each step module reads top to bottom.

A step is `python -m tierctl.steps <step> --campaign DIR --iter N [--device D]`. `run_step` owns
everything around the step's body: argument parsing, loading campaign.toml and schedule.csv,
the event sink (`start` first, `end` last), and the mapping of outcomes to exit codes:

    ok -> 0 ; BadInput before the start event -> 2 ; any other failure -> 1 ; SIGINT -> 130 ; SIGTERM -> 143

Bad input found before the sink opens (a missing campaign, a bad campaign.toml, an iteration not in
the schedule) writes nothing: one line on stderr and exit 2. After that, every failure ends with an
`end failed` event whose `error` is one line; tracebacks go to stderr, which the runner sends to the
step's log file. No torch at import time.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from tierctl.campaign.config import DEVICES, CampaignConfig, load_config
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.events import EventSink
from tierctl.errors import BadInput

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


@dataclass
class StepContext:
    """What a step body needs: where the campaign lives, which iteration, its settings and row."""

    layout: CampaignLayout
    iteration: int
    config: CampaignConfig
    schedule: Any  # tierctl.core.schedule.Schedule
    row: Any  # tierctl.core.schedule.ScheduleRow of this iteration (None for iteration 0, the reference)
    sink: EventSink
    device_override: str | None = None

    @property
    def device(self) -> str:
        """The device to run on: --device if given, else [model] device of campaign.toml."""
        return self.device_override or self.config.model.device

    @property
    def rank(self) -> int:
        return int(os.environ.get("RANK", "0"))

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and events (rank 0 under torchrun)."""
        return self.rank == 0


class Interrupted(BaseException):
    """Raised in the step's main thread by SIGTERM/SIGINT so `finally` blocks and the end event run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


def one_line(exc: BaseException) -> str:
    """`Type: first line of message`, for the `error` field of an end event."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def parse_args(step: str, argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"python -m tierctl.steps {step}", description=f"the {step} step of a campaign")
    p.add_argument("--campaign", required=True, type=Path, help="campaign directory")
    p.add_argument("--iter", required=True, type=int, dest="iteration",
                   help="iteration number (0: the reference, eval step only)")
    p.add_argument("--device", choices=DEVICES, default=None, help="overrides [model] device of campaign.toml")
    return p.parse_args(argv)


def _open_context(step: str, args: argparse.Namespace) -> tuple[CampaignLayout, CampaignConfig, Any, Any]:
    """Everything checked before anything is written (bad input here writes nothing)."""
    from tierctl.core.schedule import load_schedule  # lazily: owned by the schedule module

    layout = CampaignLayout(Path(args.campaign))
    if not layout.root.is_dir():
        raise BadInput(f"--campaign {args.campaign}: no such directory")
    config = load_config(layout.config)
    schedule = load_schedule(layout.schedule)
    n = args.iteration
    if n == 0 and step == "eval":  # iteration 0: the reference, measured by the eval step alone
        return layout, config, schedule, None
    if n < 1 or n > len(schedule):
        raise BadInput(f"--iter {n}: {layout.schedule} has iterations 1..{len(schedule)}"
                       f"{' (0, the reference, has only an eval step)' if n == 0 else ''}")
    return layout, config, schedule, schedule.row(n)


def run_step(step: str, body: Callable[[StepContext], None], argv: list[str]) -> int:
    """Run one step body with events and exit codes as in docs/events.md. Returns the exit code."""
    args = parse_args(step, argv)
    try:
        layout, config, schedule, row = _open_context(step, args)
    except BadInput as e:
        print(f"tierctl {step}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    enabled = int(os.environ.get("RANK", "0")) == 0
    sink = EventSink(args.iteration, step, layout.events(args.iteration), stream=sys.stdout, enabled=enabled)
    ctx = StepContext(layout, args.iteration, config, schedule, row, sink, args.device)
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            sink.start()
            body(ctx)
        finally:
            # From here on a second signal must not cut the end event in half.
            for s in old:
                signal.signal(s, signal.SIG_IGN)
    except BadInput as e:  # found after the start event: the step ran and failed (exit 1, the README's rule)
        sink.end("failed", error=str(e))
        print(f"tierctl {step}: {e}", file=sys.stderr)
        return EXIT_FAILED
    except (Interrupted, KeyboardInterrupt) as e:
        sink.end("failed", error="interrupted")
        print(f"tierctl {step}: interrupted", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(e, Interrupted) and e.signum == signal.SIGTERM else EXIT_SIGINT
    except Exception as e:  # noqa: BLE001  (every failure becomes an end event)
        traceback.print_exc(file=sys.stderr)
        sink.end("failed", error=one_line(e))
        return EXIT_FAILED
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    sink.end("ok")
    return EXIT_OK


def input_model_spec(ctx: StepContext) -> str:
    """The model iteration N starts from: the base model for iteration 1, else iter<N-1>/model."""
    return input_model_of(ctx.layout, ctx.config.model.name, ctx.iteration)


def input_model_of(layout: CampaignLayout, model_name: str, n: int) -> str:
    """`input_model_spec` for a caller without a StepContext (the restore of a pruned model)."""
    if n == 1:
        return model_name
    prev = layout.model(n - 1)
    if not prev.is_dir():
        raise BadInput(f"{prev}: iter{n - 1}/model missing: run iteration {n - 1} first")
    return str(prev)


def packing(ctx: StepContext, tier_maps: dict[str, Any] | None) -> Any:
    """tierctl.lm.store.Packing of this iteration's model when `[run] store = "packed"` and the campaign is
    progressive (`tier_maps` given); None means dense: the store's default, and every baseline's."""
    return packing_for(ctx.config, ctx.layout, ctx.iteration, tier_maps)


def packing_for(config: CampaignConfig, layout: CampaignLayout, n: int, tier_maps: dict[str, Any] | None) -> Any:
    """`packing` for a caller without a StepContext (the restore of a pruned model)."""
    if config.run.store != "packed" or tier_maps is None:
        return None
    from tierctl.lm.store import Packing

    t = config.tiers
    return Packing(tier_maps, t.block_size, t.topk_per_block, f"{layout.name}@{n}", config.model.name)


def require_model(ctx: StepContext) -> Path:
    """iter<N>/model, which the fine-tune and eval steps read; BadInput when the prune has not run."""
    path = ctx.layout.model(ctx.iteration)
    if not path.is_dir():
        raise BadInput(f"{path}: iter{ctx.iteration}/model missing: run the prune step of iteration "
                       f"{ctx.iteration} first")
    return path


def measure_ppl(ctx: StepContext, model: Any, tokenizer: Any, metric: str = "ppl", layers_on: Any = None) -> Any:
    """Perplexity of `model` on the campaign's eval source, with progress and a `metric` event.

    The prune step calls it with metric="ppl_pruned", the eval step with "ppl", so both use
    the same windows and protocol. Its `progress` events (unit "windows") carry `phase` = `metric`, so
    a reader can tell the prune step's ppl_pruned windows from its layers.
    Returns tierctl.lm.evaluate.EvalResult (ppl, info, seconds);
    `info` is what metrics.json keeps under "eval". `layers_on`: the model is on CPU and streams
    through that device layer by layer (offload "layers").
    """
    from tierctl.core.progress import ProgressMeter
    from tierctl.lm.evaluate import evaluate_source

    d = ctx.config.data
    meter = ProgressMeter(ctx.sink, 0, "windows", metric)  # its total is known once the text is cut

    def on_progress(done: int, total: int) -> None:
        meter.total = total
        meter.update(done)

    result = evaluate_source(model, tokenizer, d.eval, d.seqlen, d.eval_windows, d.batch_size,
                             on_progress=on_progress, layers_on=layers_on)
    ctx.sink.metric(metric, result.ppl)
    return result


def measure_zero_shot(ctx: StepContext, model: Any, tokenizer: Any, layers_on: Any = None) -> dict[str, Any] | None:
    """[eval] tasks through lm-eval on the in-memory model (tierctl/lm/zeroshot.py); None when none are listed.

    Emits a log line per task and a `metric` event `zeroshot_acc` (the mean acc). A model streamed layer by
    layer (offload "layers") is evaluated where it is held, on the CPU: lm-eval needs the whole model.
    """
    e = ctx.config.eval
    if not e.tasks:
        return None
    from tierctl.lm.zeroshot import zero_shot

    if layers_on is not None:
        ctx.sink.log(f"zero-shot tasks run on the CPU copy of the model (offload layers keeps it off {layers_on})")
    ctx.sink.log(f"zero-shot: {', '.join(e.tasks)} through lm-eval (num_fewshot {e.num_fewshot}"
                 f"{f', limit {e.limit}' if e.limit else ''})")
    result = zero_shot(model, tokenizer, e.tasks, e.num_fewshot, e.limit, e.task_paths, e.batch_size)
    for task, row in result["tasks"].items():
        parts = [f"{m} {row[m]:.4f} +- {row[m + '_stderr']:.4f}" for m in ("acc", "acc_norm")
                 if m in row and m + "_stderr" in row]
        ctx.sink.log(f"{task}: {', '.join(parts) or 'no acc metric'}")
    if result["mean_acc"] is not None:
        ctx.sink.metric("zeroshot_acc", result["mean_acc"])
    return result
