"""campaign.toml: the settings of a campaign, with defaults and validation.

Every key is documented in the README (section "campaign.toml"). Unknown keys and wrong types are
refused with one line naming the file, the table and the key, so a typo never silently falls back
to a default. No torch here.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from tierctl.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
# "none": the fine-tune-only control (nothing pruned, fine-tuned with the schedule's epochs).
METHODS = ("progressive", "wanda-unstructured", "wanda-nm", "none")
LAUNCHERS = ("local", "torchrun", "slurm")
STRATEGIES = ("single", "ddp", "fsdp2")
OFFLOADS = ("auto", "never", "layers")
ALLOCATIONS = ("uniform", "owl")
# How iteration models are kept: "dense" (save_pretrained) or "packed" (the format of `tierctl export`;
# progressive campaigns only, baselines stay dense). Either way the prune keeps its masks as bits
# (iter<N>/keep.safetensors), which rebuild the pruned model for a redo of the fine-tune.
STORES = ("dense", "packed")


@dataclass
class ModelConfig:
    name: str = "smollm2-135m"  # preset, HF id, local path or .gguf file
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "float32"  # float32 | bfloat16 | float16
    trust_remote_code: bool = False
    # Prune step: "layers" keeps the model on CPU and moves one decoder layer at a time to the device;
    # "auto" does so on CUDA when the parameters exceed ~70% of the free device memory; "never" loads it whole.
    offload: str = "auto"


@dataclass
class DataConfig:
    calib: str = "pydoc"  # text source: pydoc | text:PATH | wikitext2 | c4 | ptb
    eval: str = "pydoc"
    nsamples: int = 16  # calibration windows
    seqlen: int = 512  # tokens per calibration / evaluation window
    batch_size: int = 4  # calibration windows per forward pass
    eval_windows: int = 0  # evaluation windows (0 = every window of the evaluation stream)
    seed: int = 0


@dataclass
class TiersConfig:
    block_size: int = 16
    topk_per_block: int = 10


@dataclass
class PruneConfig:
    method: str = "progressive"  # progressive | wanda-unstructured | wanda-nm | none (the control)
    sparsity: float = 0.5  # wanda-unstructured: fraction of each output row pruned
    n: int = 2  # wanda-nm: keep n of every m
    m: int = 4
    # Per-layer targets: "uniform" (the schedule row everywhere) or "owl" (outlier-rich layers keep more;
    # progressive and wanda-unstructured), with OWL's outlier threshold M and shift bound lambda.
    allocation: str = "uniform"
    owl_m: float = 5.0
    owl_lambda: float = 0.08


@dataclass
class FinetuneConfig:
    lr: float = 5e-5
    batch_size: int = 4
    grad_accum: int = 1
    seqlen: int = 512
    tokens_per_epoch: int = 0  # 0 = every training token once per epoch
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500  # optimizer steps between resume checkpoints (0 = only at each epoch's end)
    checkpoint_minutes: float = 10.0  # also checkpoint when this long passed since the last one (0 = off)
    log_every: int = 10  # optimizer steps between loss / lr / tokens_per_s events


@dataclass
class RunConfig:
    launcher: str = "local"  # local | torchrun | slurm (fine-tune step only)
    nproc: int = 1
    strategy: str = "ddp"  # ddp | fsdp2 (under torchrun or slurm)
    # Guardrail: halt when an iteration's ppl exceeds this ratio x the previous iteration's (0 = off).
    max_ppl_ratio: float = 0.0
    store: str = "dense"  # dense | packed: how iter<N>/model is kept (docs/campaign.md)


@dataclass
class SlurmConfig:
    """Slurm settings of `[run] launcher = "slurm"` (the fine-tune as a multi-node job) and of sweeps
    (SWEEP.toml's [slurm]). Empty strings leave a setting to the cluster's defaults."""

    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    nodes: int = 1
    gpus_per_node: int = 1
    cpus_per_task: int = 0  # 0 = the cluster's default
    mem_gb: float = 0.0  # 0 = the cluster's default
    time: str = "04:00:00"  # minutes, HH:MM:SS or D-HH:MM:SS
    setup: list = field(default_factory=list)  # shell lines run before the job (module load, venv activation)
    extra: dict = field(default_factory=dict)  # any other sbatch option: {"mail-type" = "END"}


@dataclass
class EvalConfig:
    """Zero-shot tasks through lm-eval (the optional extra tierctl[eval]), run by iteration 0 and every
    eval step; none by default."""

    tasks: list[str] = field(default_factory=list)  # lm-eval task (or group) names
    num_fewshot: int = 0
    limit: int = 0  # examples per task (0 = all)
    task_paths: list[str] = field(default_factory=list)  # directories of extra task YAMLs (lm-eval include path)
    batch_size: int = 4


@dataclass
class CampaignConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tiers: TiersConfig = field(default_factory=TiersConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run: RunConfig = field(default_factory=RunConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _section(path: Path, table: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: [{table}] must be a table")
    defaults = cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        if key not in fields:
            raise BadInput(f"{path}: [{table}] unknown key {key!r} (known: {', '.join(fields)})")
        want = type(getattr(defaults, key))
        ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise BadInput(f"{path}: [{table}] {key} must be {want.__name__}, got {value!r}")
        values[key] = value
    return cls(**values)


def _check(path: Path, cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise BadInput(f"{path}: {where} {msg}")


SEED_MAX = 2**32 - 1  # numpy's and torch's seeds alike accept 0 .. 2**32 - 1
# (table, key) -> (lowest, highest) allowed, both inclusive; a float key is also refused when not finite.
# The maxima are sane bounds, not hardware limits: far above any real campaign, far below an overflow
# (an int64 tensor size, an allocation of 2**70 windows) or a value that is surely a typo.
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("data", "nsamples"): (1, 65536), ("data", "seqlen"): (1, 8192), ("data", "batch_size"): (1, 4096),
    ("data", "eval_windows"): (0, 10**7), ("data", "seed"): (0, SEED_MAX),
    ("tiers", "block_size"): (4, 4096), ("tiers", "topk_per_block"): (1, 4096**2),
    ("prune", "n"): (1, 1024), ("prune", "m"): (2, 1024),
    ("finetune", "lr"): (1e-12, 1.0), ("finetune", "batch_size"): (1, 4096), ("finetune", "grad_accum"): (1, 65536),
    ("finetune", "seqlen"): (1, 8192), ("finetune", "tokens_per_epoch"): (0, 10**13),
    ("finetune", "weight_decay"): (0.0, 10.0), ("finetune", "max_grad_norm"): (0.0, 1e6),
    ("finetune", "seed"): (0, SEED_MAX), ("finetune", "checkpoint_every"): (0, 10**9),
    ("finetune", "checkpoint_minutes"): (0.0, 10**6), ("prune", "owl_m"): (1e-9, 1e6),
    ("finetune", "log_every"): (1, 10**9), ("run", "nproc"): (1, 4096), ("run", "max_ppl_ratio"): (0.0, 1e6),
    ("slurm", "nodes"): (1, 4096), ("slurm", "gpus_per_node"): (0, 64), ("slurm", "cpus_per_task"): (0, 4096),
    ("slurm", "mem_gb"): (0.0, 1e5),
    ("eval", "num_fewshot"): (0, 1000), ("eval", "limit"): (0, 10**9), ("eval", "batch_size"): (1, 4096),
}


def _check_ranges(cfg: CampaignConfig, path: Path) -> None:
    """Every number finite and within RANGES, refused naming [table] key and the allowed range."""
    for table in SECTIONS:
        section = getattr(cfg, table)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float):
                _check(path, math.isfinite(value), f"[{table}] {f.name}", f"must be a finite number, got {value}")
            bounds = RANGES.get((table, f.name))
            if bounds is not None:
                lo, hi = bounds
                _check(path, lo <= value <= hi, f"[{table}] {f.name}", f"must be in {lo:g}..{hi:g}, got {value}")


def validate(cfg: CampaignConfig, path: Path = Path("campaign.toml")) -> CampaignConfig:
    """Refuse (BadInput naming file, [table] and key) any value a step could not use.

    What needs the model's shapes (a block size larger than every matrix, a window longer than the
    model's positions) or the text (a window longer than it) is checked by the check step
    (tierctl/steps/check.py), before a run takes the lock.
    """
    m, t, p, f, r, e = cfg.model, cfg.tiers, cfg.prune, cfg.finetune, cfg.run, cfg.eval
    _check(path, bool(m.name.strip()), "[model] name", "is empty")
    _check(path, m.device in DEVICES, "[model] device", f"must be one of {', '.join(DEVICES)}, got {m.device!r}")
    _check(path, m.dtype in DTYPES, "[model] dtype", f"must be one of {', '.join(DTYPES)}, got {m.dtype!r}")
    _check(path, m.offload in OFFLOADS, "[model] offload",
           f"must be one of {', '.join(OFFLOADS)}, got {m.offload!r}")
    _check_ranges(cfg, path)
    _check(path, t.block_size % 4 == 0, "[tiers] block_size",
           f"must be a multiple of 4 (2:4 groups), got {t.block_size}")
    _check(path, t.topk_per_block <= t.block_size**2, "[tiers] topk_per_block",
           f"must be in 1..{t.block_size**2}, got {t.topk_per_block}")
    _check(path, p.method in METHODS, "[prune] method", f"must be one of {', '.join(METHODS)}, got {p.method!r}")
    _check(path, 0.0 <= p.sparsity < 1.0, "[prune] sparsity", f"must be in [0, 1), got {p.sparsity}")
    _check(path, p.n < p.m, "[prune] n", f"must satisfy 1 <= n < m, got n={p.n} m={p.m}")
    _check(path, p.allocation in ALLOCATIONS, "[prune] allocation",
           f"must be one of {', '.join(ALLOCATIONS)}, got {p.allocation!r}")
    _check(path, p.allocation == "uniform" or p.method != "wanda-nm", "[prune] allocation",
           "owl applies to progressive and wanda-unstructured, not wanda-nm (its n:m is per group)")
    _check(path, 0.0 <= p.owl_lambda <= 0.5, "[prune] owl_lambda", f"must be in [0, 0.5], got {p.owl_lambda}")
    _check(path, 0.0 <= f.warmup_ratio < 1.0, "[finetune] warmup_ratio", f"must be in [0, 1), got {f.warmup_ratio}")
    _check(path, r.launcher in LAUNCHERS, "[run] launcher", f"must be one of {', '.join(LAUNCHERS)}")
    _check(path, r.strategy in STRATEGIES, "[run] strategy", f"must be one of {', '.join(STRATEGIES)}")
    _check(path, r.store in STORES, "[run] store", f"must be one of {', '.join(STORES)}, got {r.store!r}")
    _check(path, r.max_ppl_ratio >= 0, "[run] max_ppl_ratio", f"must be >= 0 (0 = off), got {r.max_ppl_ratio}")
    check_slurm(cfg.slurm, path, "[slurm]")
    for key in ("tasks", "task_paths"):
        bad = [v for v in getattr(e, key) if not isinstance(v, str) or not v.strip()]
        _check(path, not bad, f"[eval] {key}", f"must be a list of non-empty strings, got {bad[0]!r}" if bad else "")
    _check(path, len(set(e.tasks)) == len(e.tasks), "[eval] tasks", "lists a task twice")
    _check(path, e.num_fewshot >= 0, "[eval] num_fewshot", f"must be >= 0, got {e.num_fewshot}")
    _check(path, e.limit >= 0, "[eval] limit", f"must be >= 0 (0 = every example), got {e.limit}")
    _check(path, e.batch_size >= 1, "[eval] batch_size", f"must be >= 1, got {e.batch_size}")
    return cfg


def check_slurm(s: SlurmConfig, path: Path, table: str = "[slurm]") -> SlurmConfig:
    """Ranges and formats of a [slurm] table (campaign.toml or SWEEP.toml)."""
    _check(path, s.nodes >= 1, f"{table} nodes", f"must be >= 1, got {s.nodes}")
    _check(path, s.gpus_per_node >= 0, f"{table} gpus_per_node", f"must be >= 0, got {s.gpus_per_node}")
    _check(path, s.cpus_per_task >= 0, f"{table} cpus_per_task", f"must be >= 0, got {s.cpus_per_task}")
    _check(path, s.mem_gb >= 0, f"{table} mem_gb", f"must be >= 0, got {s.mem_gb}")
    _check(path, slurm_minutes(s.time) is not None, f"{table} time",
           f"must be minutes, HH:MM:SS or D-HH:MM:SS, got {s.time!r}")
    _check(path, all(isinstance(x, str) for x in s.setup), f"{table} setup", "must be a list of strings")
    for key, value in s.extra.items():
        _check(path, isinstance(value, (str, int, float, bool)), f"{table} extra.{key}",
               f"must be a string, number or boolean, got {value!r}")
    return s


def slurm_minutes(text: str) -> int | None:
    """Slurm's --time formats (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`) in whole minutes, None if invalid."""
    import re

    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if m is None:
        return None
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:  # D-H[:M[:S]]
        secs = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # H:M:S
        secs = a * 3600 + b * 60 + c
    elif b is not None:  # M:S
        secs = a * 60 + b
    else:  # M
        secs = a * 60
    return -(-secs // 60) if secs > 0 else None


SECTIONS = {
    "model": ModelConfig, "data": DataConfig, "tiers": TiersConfig,
    "prune": PruneConfig, "finetune": FinetuneConfig, "run": RunConfig, "slurm": SlurmConfig,
    "eval": EvalConfig,
}


def from_dict(raw: dict[str, Any], path: Path = Path("campaign.toml")) -> CampaignConfig:
    for table in raw:
        if table not in SECTIONS:
            raise BadInput(f"{path}: unknown table [{table}] (known: {', '.join(SECTIONS)})")
    parts = {name: _section(path, name, cls, raw.get(name, {})) for name, cls in SECTIONS.items()}
    return validate(CampaignConfig(**parts), path)


def load_config(path: Path) -> CampaignConfig:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: invalid TOML: {e}") from None
    return from_dict(raw, path)


def dumps_config(cfg: CampaignConfig) -> str:
    return tomli_w.dumps(cfg.to_dict())
