"""A sweep file (SWEEP.toml) and the points of its grid: reading, naming, creating their campaigns.

The file's shape and the way points are run are described in tierctl.campaign.sweep. Here: the file is
validated (one line naming the file, table and key of the first problem), every combination of the axes
becomes a Point (its directory name from its values, its campaign.toml and schedule.csv), and the
campaign directory of each point is created once, in one rename.
"""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierctl.campaign.config import SECTIONS, CampaignConfig, SlurmConfig, _section, check_slurm, dumps_config
from tierctl.campaign.config import from_dict as config_from_dict
from tierctl.campaign.config import load_config as load_campaign_config
from tierctl.campaign.layout import TMP_PREFIX, CampaignLayout, resolve_campaign
from tierctl.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXECUTORS = ("local", "slurm")
SWEEP_KEYS = {"base": str, "executor": str, "max_parallel": int}
JOBS_FILE = "jobs.json"
SUBMITIT_DIR = ".submitit"


@dataclass
class Point:
    """One campaign of the grid: its directory name, the axis values, what its two files hold."""

    name: str
    values: dict[str, Any]
    config: CampaignConfig
    schedule_csv: str


@dataclass
class Sweep:
    path: Path  # SWEEP.toml
    base: CampaignLayout
    executor: str
    max_parallel: int
    axes: list[tuple[str, list[Any]]]
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    @property
    def dir(self) -> Path:
        """SWEEP/: the campaigns of the points, next to SWEEP.toml."""
        return self.path.parent / self.path.stem

    @property
    def submitit_dir(self) -> Path:
        return self.dir / SUBMITIT_DIR

    @property
    def jobs_file(self) -> Path:
        return self.dir / JOBS_FILE

    def layout(self, name: str) -> CampaignLayout:
        return CampaignLayout(self.dir / name)


# --- reading SWEEP.toml ---------------------------------------------------------------------------


def load_sweep(path: str | Path) -> Sweep:
    """SWEEP.toml, validated; BadInput naming the file, table and key of the first problem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such sweep file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: invalid TOML: {e}") from None
    for table in raw:
        if table not in ("sweep", "axes", "slurm"):
            raise BadInput(f"{path}: unknown table [{table}] (known: sweep, axes, slurm)")
    head = raw.get("sweep")
    if not isinstance(head, dict):
        raise BadInput(f"{path}: [sweep] table missing (base, executor, max_parallel)")
    for key, value in head.items():
        want = SWEEP_KEYS.get(key)
        if want is None:
            raise BadInput(f"{path}: [sweep] unknown key {key!r} (known: {', '.join(SWEEP_KEYS)})")
        if not isinstance(value, want) or isinstance(value, bool):
            raise BadInput(f"{path}: [sweep] {key} must be {want.__name__}, got {value!r}")
    if "base" not in head:
        raise BadInput(f"{path}: [sweep] base missing (the campaign directory the points start from)")
    executor = head.get("executor", "local")
    if executor not in EXECUTORS:
        raise BadInput(f"{path}: [sweep] executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    max_parallel = head.get("max_parallel", 1)
    if max_parallel < 1:
        raise BadInput(f"{path}: [sweep] max_parallel must be >= 1, got {max_parallel}")
    base_dir = path.parent / head["base"]
    try:
        base = resolve_campaign(base_dir)
    except BadInput as e:
        raise BadInput(f"{path}: [sweep] base: {e}") from None
    slurm = check_slurm(_section(path, "slurm", SlurmConfig, raw.get("slurm", {})), path)
    axes = _axes(path, raw.get("axes", {}))
    return Sweep(path, base, executor, max_parallel, axes, slurm)


def _axes(path: Path, raw: Any) -> list[tuple[str, list[Any]]]:
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: [axes] must be a table")
    axes = []
    for key, values in raw.items():
        if not isinstance(values, list) or not values:
            raise BadInput(f"{path}: [axes] {key} must be a non-empty list of values")
        if key != "schedule":
            table, _, name = key.partition(".")
            cls = SECTIONS.get(table)
            if cls is None or not name or name not in {f for f in cls.__dataclass_fields__}:
                raise BadInput(f"{path}: [axes] {key!r}: not a campaign.toml key (\"table.key\", e.g. "
                               f"\"finetune.lr\"; or schedule)")
        if len(set(map(repr, values))) != len(values):
            raise BadInput(f"{path}: [axes] {key} lists a value twice")
        axes.append((key, values))
    return axes


# --- the points -----------------------------------------------------------------------------------


def _label(value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def _short_names(keys: list[str]) -> dict[str, str]:
    """'finetune.lr' -> 'lr' unless two axes end alike, then the whole key."""
    last = [k.rpartition(".")[2] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def points(sweep: Sweep) -> list[Point]:
    """Every combination of the axes (in file order, last axis fastest), validated like a campaign."""
    from tierctl.core.schedule import load_schedule

    base_config = load_campaign_config(sweep.base.config).to_dict()
    base_schedule = sweep.base.schedule.read_text(encoding="utf-8")
    keys = [k for k, _ in sweep.axes]
    short = _short_names(keys)
    schedules: dict[str, str] = {}
    for key, values in sweep.axes:
        if key == "schedule":
            for v in values:
                if not isinstance(v, str):
                    raise BadInput(f"{sweep.path}: [axes] schedule: {v!r} is not a file name")
                schedules[v] = load_schedule(sweep.path.parent / v).to_csv()
    out, seen = [], {}
    for combo in itertools.product(*(values for _, values in sweep.axes)):
        values = dict(zip(keys, combo, strict=True))
        raw = {table: dict(body) for table, body in base_config.items()}
        for key, value in values.items():
            if key != "schedule":
                table, _, name = key.partition(".")
                raw[table][name] = value
        try:
            config = config_from_dict(raw, sweep.path)
        except BadInput as e:
            shown = ", ".join(f"{k} = {v!r}" for k, v in values.items() if k != "schedule")
            why = str(e).removeprefix(f"{sweep.path}: ")
            raise BadInput(f"{sweep.path}: [axes] {shown}: {why}") from None
        parts = [f"{short[k]}-{_label(Path(v).stem if k == 'schedule' else v)}" for k, v in values.items()]
        name = "_".join(parts) or "base"
        if name in seen:
            raise BadInput(f"{sweep.path}: points {seen[name]} and {values} would share the directory name {name}")
        seen[name] = values
        schedule = schedules[values["schedule"]] if "schedule" in values else base_schedule
        out.append(Point(name, values, config, schedule))
    return out


def ensure_points(sweep: Sweep, pts: list[Point]) -> list[str]:
    """Create the campaign directory of every point that has none (each in one rename). Returns the
    names created. An existing point must hold the same campaign.toml: a changed base or axis would
    otherwise mix two hypotheses under one name."""
    import os
    import shutil
    import tempfile

    created = []
    sweep.dir.mkdir(parents=True, exist_ok=True)
    for p in pts:
        layout = sweep.layout(p.name)
        text = dumps_config(p.config)
        if layout.root.exists():
            if not layout.config.is_file():
                raise BadInput(f"{layout.root}: exists but is not a campaign (no campaign.toml)")
            if load_campaign_config(layout.config) != p.config:
                raise BadInput(f"{layout.config}: differs from what {sweep.path} now makes of point {p.name} "
                               "(base or axes changed); remove that directory or name the sweep differently")
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{p.name}.", dir=sweep.dir))
        try:
            (tmp / "campaign.toml").write_text(text, encoding="utf-8")
            (tmp / "schedule.csv").write_text(p.schedule_csv, encoding="utf-8")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)
            os.rename(tmp, layout.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        created.append(p.name)
    return created
