"""Creating a campaign (`tierctl init NAME`): campaign.toml and schedule.csv in a new directory.

Everything is validated before anything is created, and the directory appears in one rename of a
finished temporary directory, so a refused or interrupted init leaves nothing behind.

The model and the text sources can only be fully checked by loading them (torch, transformers,
network). Here they are checked cheaply, without importing either: a preset name must be a known
preset, a path must be a model directory (config.json) or a .gguf file, anything else must look like
a hub id (`name` or `org/name`). Local paths are stored absolute, so the campaign runs from any
directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierctl.campaign.check import run_check
from tierctl.campaign.config import CampaignConfig, dumps_config, from_dict
from tierctl.campaign.layout import TMP_PREFIX, CampaignLayout, check_campaign_name
from tierctl.errors import BadInput

# Kept equal to tierctl.lm.models.PRESETS and tierctl.lm.text (a test checks): they live in modules
# that import torch, which `tierctl init` must not pay for.
MODEL_PRESETS = ("smollm2-135m", "tiny-llama", "tiny-qwen2", "tiny-mistral", "tiny-opt")
HUB_TEXT_SOURCES = ("wikitext2", "c4", "ptb")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?$")

# `tierctl init` flag -> (campaign.toml table, key), so a refused value names the flag the user typed.
FLAGS: dict[str, tuple[str, str]] = {
    "--model": ("model", "name"), "--device": ("model", "device"), "--dtype": ("model", "dtype"),
    "--calib": ("data", "calib"), "--eval": ("data", "eval"), "--nsamples": ("data", "nsamples"),
    "--seqlen": ("data", "seqlen"), "--seed": ("data", "seed"), "--block-size": ("tiers", "block_size"),
    "--topk": ("tiers", "topk_per_block"), "--method": ("prune", "method"),
    "--tasks": ("eval", "tasks"), "--task-path": ("eval", "task_paths"),
}


@dataclass
class InitOptions:
    """The flags of `tierctl init`; None keeps the default of campaign.toml (config.py)."""

    model: str | None = None
    calib: str | None = None
    eval: str | None = None
    schedule: Path | None = None  # a CSV file; None = the seed schedule of docs/tiers.md, The schedule
    nsamples: int | None = None
    seqlen: int | None = None
    block_size: int | None = None
    topk: int | None = None
    device: str | None = None
    dtype: str | None = None
    seed: int | None = None
    method: str | None = None
    tasks: list[str] | None = None  # [eval] tasks (lm-eval names), checked by the check step
    task_paths: list[Path] | None = None  # [eval] task_paths, stored absolute


def check_model_spec(spec: str, flag: str = "--model") -> str:
    """The model spec as campaign.toml should store it (local paths absolute); BadInput when it cannot work."""
    spec = spec.strip()
    if not spec:
        raise BadInput(f"{flag}: empty model name")
    if spec in MODEL_PRESETS:
        return spec
    if spec.startswith("tiny-") or spec.startswith("smollm"):
        raise BadInput(f"{flag} {spec}: unknown preset (presets: {', '.join(MODEL_PRESETS)})")
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise BadInput(f"{flag} {spec}: a file, but not a .gguf file")
        return str(path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BadInput(f"{flag} {spec}: directory has no config.json (not a saved model)")
        return str(path.resolve())
    if path.exists():
        raise BadInput(f"{flag} {spec}: not a model directory or .gguf file")
    if spec.endswith(".gguf") or not HUB_ID_RE.match(spec):
        raise BadInput(f"{flag} {spec}: no such file or directory, and not a hub id (name or org/name)")
    return spec  # a hub id: resolved (cache, then hub) when a step loads it


def check_text_source(source: str, flag: str) -> str:
    """A text source as campaign.toml should store it (`text:` paths absolute)."""
    if source == "pydoc" or source in HUB_TEXT_SOURCES:
        return source
    if source.startswith("text:"):
        path = Path(source[len("text:"):]).expanduser()
        if not path.is_file():
            raise BadInput(f"{flag} {source}: no such file")
        return f"text:{path.resolve()}"
    raise BadInput(f"{flag} {source}: unknown text source (use pydoc, text:PATH, {', '.join(HUB_TEXT_SOURCES)})")


def check_task_path(path: Path) -> str:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise BadInput(f"--task-path {path}: no such directory")
    return str(p.resolve())


def build_config(opts: InitOptions) -> CampaignConfig:
    """campaign.toml of the flags, validated; a bad value is reported under the flag's name."""
    tables: dict[str, dict[str, Any]] = {}
    values = {
        "--model": None if opts.model is None else check_model_spec(opts.model),
        "--calib": None if opts.calib is None else check_text_source(opts.calib, "--calib"),
        "--eval": None if opts.eval is None else check_text_source(opts.eval, "--eval"),
        "--nsamples": opts.nsamples, "--seqlen": opts.seqlen, "--block-size": opts.block_size,
        "--topk": opts.topk, "--device": opts.device, "--dtype": opts.dtype, "--seed": opts.seed,
        "--method": opts.method,
        "--tasks": None if not opts.tasks else list(opts.tasks),
        "--task-path": None if not opts.task_paths else [check_task_path(p) for p in opts.task_paths],
    }
    for flag, value in values.items():
        if value is not None:
            table, key = FLAGS[flag]
            tables.setdefault(table, {})[key] = value
    if opts.seed is not None:  # one seed for the calibration windows and the fine-tune order
        tables.setdefault("finetune", {})["seed"] = opts.seed
    if opts.seqlen is not None:  # fine-tune windows as long as the calibration ones unless edited later
        tables.setdefault("finetune", {})["seqlen"] = opts.seqlen
    try:
        config = from_dict(tables, Path("campaign.toml"))
    except BadInput as e:
        raise BadInput(_name_flag(str(e))) from None
    return config


def _name_flag(msg: str) -> str:
    """'campaign.toml: [data] nsamples must be >= 1' -> '--nsamples: must be >= 1';
    'campaign.toml: [model] name x: unknown preset' -> '--model x: unknown preset'."""
    for flag, (table, key) in FLAGS.items():
        for where in (f"campaign.toml: [{table}] {key} ", f"campaign.toml: [{table}] {key}: "):
            if msg.startswith(where):
                rest = msg[len(where):]
                value, sep, reason = rest.partition(": ")
                if sep and value and " " not in value:
                    return f"{flag} {value}: {reason}"
                return f"{flag}: {rest}"
    return msg


def schedule_text(path: Path | None) -> str:
    """The schedule.csv to write: the given file validated and written out complete, or the seed."""
    from tierctl.core.schedule import SEED_SCHEDULE_CSV, load_schedule, parse_schedule

    if path is None:
        return parse_schedule(SEED_SCHEDULE_CSV).to_csv()
    if not Path(path).is_file():
        raise BadInput(f"--schedule {path}: no such file")
    return load_schedule(Path(path)).to_csv()


def check_target(name: str, parent: Path) -> Path:
    """`parent/name`, refused (BadInput) when the name is not plain or something is already there."""
    check_campaign_name(name)
    parent = Path(parent)
    target = parent / name
    if target.exists() or target.is_symlink():
        what = "a campaign" if (target / "campaign.toml").is_file() else "something"
        raise BadInput(f"{target}: already exists ({what} is there); choose another name or --dir")
    if parent.exists() and not parent.is_dir():
        raise BadInput(f"--dir {parent}: not a directory")
    return target


def create_campaign(name: str, parent: Path, opts: InitOptions, check: bool = True,
                    on_warning: Callable[[str], None] | None = None) -> CampaignLayout:
    """Validate everything, then create `parent/name` with campaign.toml and schedule.csv in one rename.

    `check`: also run the check step (tierctl/steps/check.py: the model resolves, the windows fit the
    texts, the [eval] tasks load) on the finished temporary directory before the rename, so a campaign
    that cannot run is never created.
    """
    check_target(name, parent)
    return write_campaign(name, parent, build_config(opts), schedule_text(opts.schedule), check, on_warning)


def write_campaign(name: str, parent: Path, config: CampaignConfig, schedule: str, check: bool = True,
                   on_warning: Callable[[str], None] | None = None) -> CampaignLayout:
    """Create `parent/name` from a validated config and schedule text (create_campaign's `check`)."""
    parent = Path(parent)
    target = check_target(name, parent)
    made = [p for p in (parent, *parent.parents) if not p.exists()]  # removed again if init is refused
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}.", dir=parent))
    created = False
    try:
        layout = CampaignLayout(tmp)
        layout.config.write_text(dumps_config(config), encoding="utf-8")
        layout.schedule.write_text(schedule, encoding="utf-8")
        for f in (layout.config, layout.schedule):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; a campaign gets the usual permissions
        if check:
            try:
                warnings = run_check(layout, label="campaign.toml")
            except BadInput as e:
                raise BadInput(_name_flag(str(e))) from None
            for warning in warnings:
                if on_warning is not None:
                    on_warning(warning)
        try:
            # rename(2) refuses a non-empty target: a campaign created meanwhile is never replaced.
            os.rename(tmp, target)
        except OSError:
            raise BadInput(f"{target}: already exists; choose another name or --dir") from None
        created = True
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        if not created:
            for p in made:  # innermost first
                with contextlib.suppress(OSError):
                    p.rmdir()
    return CampaignLayout(target)
