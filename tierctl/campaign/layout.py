"""Paths of a campaign directory (docs/campaign.md), and the writes and lock the campaign layer uses.

Writes go through tierctl.core.atomic (temporary name, fsync, rename) and the one-runner lock is
tierctl.campaign.lock; both are re-exported here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tierctl.campaign.lock import CampaignLock, LockHeld, holder_of  # noqa: F401  (re-exported)
from tierctl.core.atomic import (  # noqa: F401  (re-exported for the campaign layer)
    TMP_PREFIX,
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    clean_temporaries,
    remove_path,
)
from tierctl.errors import BadInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
CAMPAIGNS_DIR = Path("campaigns")


@dataclass(frozen=True)
class CampaignLayout:
    """Where everything of one campaign lives. Pure path arithmetic: touches no file."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.resolve().name

    @property
    def config(self) -> Path:
        return self.root / "campaign.toml"

    @property
    def schedule(self) -> Path:
        return self.root / "schedule.csv"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def iter_dir(self, n: int) -> Path:
        return self.root / f"iter{n}"

    def tiers(self, n: int) -> Path:
        return self.iter_dir(n) / "tiers.safetensors"

    def act_norms(self, n: int) -> Path:
        return self.iter_dir(n) / "act_norms.safetensors"

    def model(self, n: int) -> Path:
        return self.iter_dir(n) / "model"

    def keep(self, n: int) -> Path:
        """The prune's keep masks as bits and what identifies its input (tierctl/lm/keep_file.py): with the
        input model they rebuild the pruned model, so `--step finetune --force` can redo a fine-tune."""
        return self.iter_dir(n) / "keep.safetensors"

    def metrics(self, n: int) -> Path:
        return self.iter_dir(n) / "metrics.json"

    def events(self, n: int) -> Path:
        return self.iter_dir(n) / "events.jsonl"

    def finetune_checkpoint(self, n: int) -> Path:
        """Resumable fine-tune state (weights + optimizer), removed once the fine-tune is done."""
        return self.iter_dir(n) / "finetune_ckpt"

    def step_log(self, n: int, step: str) -> Path:
        return self.logs / f"iter{n}-{step}.log"

    def iterations_on_disk(self) -> list[int]:
        out = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                m = re.fullmatch(r"iter(\d+)", p.name)
                if m and p.is_dir():
                    out.append(int(m.group(1)))
        return sorted(out)


def resolve_campaign(arg: str | Path, base: Path | None = None) -> CampaignLayout:
    """CAMPAIGN is a directory, or a name under ./campaigns (docs/cli.md)."""
    p = Path(arg)
    if (p / "campaign.toml").is_file():
        return CampaignLayout(p)
    under = (base or CAMPAIGNS_DIR) / str(arg)
    if (under / "campaign.toml").is_file():
        return CampaignLayout(under)
    if p.exists() and not p.is_dir():
        raise BadInput(f"{arg}: not a campaign directory")
    if p.is_dir():
        raise BadInput(f"{arg}: no campaign.toml in this directory")
    raise BadInput(f"{arg}: no such campaign (looked for {p} and {under})")


def refuse_symlinks(layout: CampaignLayout) -> None:
    """BadInput naming the first symbolic link inside the campaign (iter<N>, events.jsonl, model/, ...).

    A run writes, replaces and deletes inside the campaign; through a link it would write into (or,
    with --force, delete from) a place outside it. The campaign directory itself may be a link.
    """
    for dirpath, dirnames, filenames in os.walk(layout.root):  # followlinks=False: a linked dir is not entered
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            if path.is_symlink():
                raise BadInput(f"{path}: a symbolic link inside the campaign; tierctl writes campaign files "
                               f"only in place: replace it with the file or directory itself")


def refuse_unwritable(layout: CampaignLayout, iterations: list[int]) -> None:
    """BadInput naming the first directory a run would write into but cannot (read-only, permissions).

    Checked before the lock and the check step, so the refusal is one line and nothing is written,
    instead of an OSError from deep inside the runner or a step.
    """
    dirs = [layout.root, layout.logs, *(layout.iter_dir(n) for n in iterations)]
    for d in dirs:
        if d.is_dir() and not os.access(d, os.W_OK):
            reason = "read-only file system" if _read_only_fs(d) else "permission denied"
            raise BadInput(f"{d}: cannot write there ({reason}); a run writes its outputs in the campaign")


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_campaign_name(name: str) -> None:
    if not NAME_RE.match(name) or name in (".", ".."):
        raise BadInput(
            f"campaign name {name!r}: use a plain directory name (letters, digits, '.', '_', '-')"
        )
