"""The check step: everything about a campaign that can be known without loading the model's weights.

`python -m tierctl.steps check --campaign DIR [--model SPEC] [--steps S,...] [--as NAME]`

`tierctl init` runs it on the campaign it is about to create and `tierctl run` before it takes the lock,
so a setting that cannot work is refused in seconds with exit 2, one line and nothing written, instead
of failing a step minutes later with `.lock`, `logs/` and `events.jsonl` left behind. It is a subprocess
because the campaign layer must not import torch or transformers.

It checks, in order (cheapest first):
- `[model] device = "cuda"` on a machine without CUDA;
- the model (`--model`, default `[model] name`): its config and tokenizer resolve without weights
  (tierctl.lm.models.resolve_model), its decoder layers are found, a `[tiers] block_size` block fits in
  at least one matrix, the windows fit its positions;
- the text sources: a local text (`pydoc`, `text:PATH`) is read and tokenized, and its splits must hold
  one calibration window, one evaluation window and one fine-tune window, and the fine-tune's global
  batch; an online source (`wikitext2`, `c4`, `ptb`) must be reachable or cached (its size is not in
  doubt: every one is far longer than the longest window);
- the `[eval] tasks` when an eval step will run: lm-eval knows each one and can load it (its dataset is
  read once: from the hub the first time, then from the datasets cache). lm-eval is imported only then.

Nothing is cached between runs (a cache could go stale); its cost is measured in the README. Writes
nothing; a warning (a model folder whose own code will not run) is printed on stderr with exit 0.
Exit 2 and one line on stderr for a refusal; 1 for a failure of the check itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tierctl.campaign.config import CampaignConfig, load_config
from tierctl.campaign.layout import CampaignLayout
from tierctl.core.vocab import STEPS
from tierctl.errors import BadInput

STEP = "check"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tierctl.steps check", description=__doc__.splitlines()[0])
    p.add_argument("--campaign", required=True, type=Path, help="campaign directory")
    p.add_argument("--model", default=None, help="the model the first step reads (default: [model] name)")
    p.add_argument("--steps", default=",".join(STEPS), help="the steps that will run (comma-separated)")
    p.add_argument("--as", dest="label", default=None, help="how messages name campaign.toml")
    p.add_argument("--launcher", default=None, help="the fine-tune launcher of this run (default: [run] launcher)")
    p.add_argument("--nproc", type=int, default=None, help="processes of a torchrun fine-tune (default: [run] nproc)")
    return p.parse_args(argv)


def check_device(cfg: CampaignConfig, steps: set[str], where: str, launcher: str) -> None:
    """`device = "cuda"` needs CUDA here, unless the only step to run is a fine-tune sent to Slurm."""
    remote_only = steps <= {"finetune"} and launcher == "slurm"
    if cfg.model.device == "cuda" and not remote_only:
        import torch

        if not torch.cuda.is_available():
            raise BadInput(f"{where}: [model] device cuda: CUDA is not available on this machine")


def check_model(cfg: CampaignConfig, spec: str, where: str) -> tuple[Any, list[str]]:
    """The tokenizer of `spec` and any warnings; BadInput for a model no step could prune."""
    from tierctl.lm.models import matrix_shapes, remote_code_warning, resolve_model

    what = f"{where}: [model] name" if spec == cfg.model.name else "model"
    warnings = []
    if Path(spec).expanduser().is_dir():
        warning = remote_code_warning(Path(spec).expanduser(), cfg.model.trust_remote_code)
        if warning is not None:
            warnings.append(warning)
    config, tokenizer = resolve_model(spec, cfg.model.trust_remote_code, what)
    b = cfg.tiers.block_size
    hidden = getattr(config, "hidden_size", None)
    if not (isinstance(hidden, int) and hidden >= b):
        # A decoder's attention matrices are hidden x hidden: when that is known to hold a block, the
        # exact shapes (a model built on the meta device, ~1 s of imports) are not needed.
        try:
            shapes = matrix_shapes(config, cfg.model.trust_remote_code)
        except BadInput as e:
            raise BadInput(f"{what} {spec}: {e}") from None
        except Exception as e:  # noqa: BLE001  (an architecture transformers cannot build)
            raise BadInput(f"{what} {spec}: cannot build its architecture ({type(e).__name__}: {e})") from None
        if not any(out >= b and inp >= b for out, inp in shapes.values()):
            largest = max(shapes.values(), key=lambda s: min(s))
            raise BadInput(f"{where}: [tiers] block_size {b} leaves no full block in any matrix of {spec} "
                           f"(the largest is {largest[0]} x {largest[1]})")
    limit = getattr(config, "max_position_embeddings", None)
    for table, seqlen in (("data", cfg.data.seqlen), ("finetune", cfg.finetune.seqlen)):
        if limit is not None and seqlen > limit:
            raise BadInput(f"{where}: [{table}] seqlen {seqlen} exceeds the model's max_position_embeddings {limit}")
    return tokenizer, warnings


def _stream(source: str, tokenizer: Any, split: str, where: str, key: str) -> Any:
    from tierctl.lm.text import token_stream

    try:
        return token_stream(source, tokenizer, split)
    except BadInput as e:
        raise BadInput(f"{where}: [data] {key}: {e}") from None


def check_hub_source(name: str, where: str, key: str) -> None:
    """An online source must be cached or reachable: its builder resolves (metadata only, no download)."""
    import datasets

    from tierctl.lm.text import HUB_SOURCES

    src = HUB_SOURCES[name]
    kw: dict[str, Any] = {}
    if src.data_files:
        kw["data_files"] = src.data_files
    try:
        datasets.load_dataset_builder(src.repo, src.config, **kw)
    except Exception as e:  # noqa: BLE001  (network, auth, renamed repos: all end here)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadInput(f"{where}: [data] {key} {name}: {src.repo} is not cached and cannot be reached "
                       f"({first})") from None


def check_texts(cfg: CampaignConfig, tokenizer: Any, steps: set[str], world: int, epochs: list[int],
                where: str) -> None:
    """Every window the planned steps will cut fits the text they will cut it from."""
    from tierctl.lm.finetune import FinetuneSettings, make_plan
    from tierctl.lm.text import HUB_SOURCES

    d, f = cfg.data, cfg.finetune
    if d.calib in HUB_SOURCES:
        check_hub_source(d.calib, where, "calib")
    elif steps & {"prune", "finetune"}:
        train = _stream(d.calib, tokenizer, "train", where, "calib")
        if "prune" in steps and len(train) < d.seqlen:
            raise BadInput(f"{where}: [data] seqlen {d.seqlen} is longer than the {len(train)} tokens of the "
                           f"training split of {d.calib} (calibration windows)")
        if "finetune" in steps:
            if len(train) < f.seqlen:
                raise BadInput(f"{where}: [finetune] seqlen {f.seqlen} is longer than the {len(train)} tokens of "
                               f"the training split of {d.calib}")
            for e in sorted({e for e in epochs if e > 0}):
                try:
                    make_plan(len(train) // f.seqlen, FinetuneSettings.from_config(f, e), world)
                except BadInput as err:
                    raise BadInput(f"{where}: {err}") from None
    if d.eval in HUB_SOURCES:
        check_hub_source(d.eval, where, "eval")
    elif steps & {"prune", "eval"}:
        held_out = _stream(d.eval, tokenizer, "eval", where, "eval")
        if len(held_out) < d.seqlen:
            raise BadInput(f"{where}: [data] seqlen {d.seqlen} is longer than the {len(held_out)} tokens of the "
                           f"evaluation split of {d.eval} (not one evaluation window)")


def check_campaign(layout: CampaignLayout, model: str | None, steps: set[str], label: str | None,
                   launcher: str | None = None, nproc: int | None = None) -> list[str]:
    """Run every check; returns warnings, raises BadInput naming the file and key of the first problem.

    `launcher` / `nproc`: what this run uses when the command line overrides [run] (`run --launcher`).
    """
    from tierctl.core.schedule import load_schedule

    where = label or str(layout.config)
    cfg = load_config(layout.config)
    schedule = load_schedule(layout.schedule)
    launcher = launcher or cfg.run.launcher
    check_device(cfg, steps, where, launcher)
    tokenizer, warnings = check_model(cfg, model or cfg.model.name, where)
    world = (nproc or cfg.run.nproc) if launcher == "torchrun" else 1
    check_texts(cfg, tokenizer, steps, world, [row.epochs for row in schedule], where)
    if cfg.eval.tasks and "eval" in steps:
        check_eval_tasks(cfg, where)
    return warnings


def check_eval_tasks(cfg: CampaignConfig, where: str) -> None:
    """[eval] tasks lm-eval does not know or cannot load (its dataset: hub or datasets cache), named."""
    from tierctl.lm.zeroshot import check_tasks

    try:
        check_tasks(cfg.eval.tasks, cfg.eval.task_paths)
    except BadInput as e:
        raise BadInput(f"{where}: {e}") from None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    steps = {s for s in args.steps.split(",") if s}
    try:
        if not args.campaign.is_dir():
            raise BadInput(f"--campaign {args.campaign}: no such directory")
        warnings = check_campaign(CampaignLayout(args.campaign), args.model, steps, args.label, args.launcher,
                                  args.nproc)
    except BadInput as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
