"""Forking a campaign: `tierctl fork SOURCE@K NEW [--schedule CSV] [--dir DIR]`.

A fork is a new campaign that shares iterations 1..K of SOURCE (and its unpruned reference, iter0,
when there is one) and continues with its own schedule from K+1. Trying another continuation of a
schedule then costs only the iterations that differ.

Sharing without ever writing the source:
- Files of the shared iterations are *hard links* where the filesystem allows (same inode: no copy
  of gigabytes of weights), copies otherwise (another filesystem, or links not permitted). Never
  symlinks: a symlink would let a write through the fork land in the source.
- A hard link is safe only if nothing ever modifies the linked inode in place. Every writer of a
  campaign replaces its files by rename (tierctl.core.atomic: metrics.json, tier maps, act norms, the
  model directory, finetune.json), which gives the writing campaign a new inode and leaves the other
  one's untouched; a --force in the fork removes its own links only. The two files that are
  *appended to* in place, `iter<N>/events.jsonl` and `logs/iter<N>-<step>.log`, are copied instead.
- The source is only read (under no lock: iterations 1..K are complete, and a runner of the source
  writes only later iterations unless someone --forces them meanwhile, which the final check catches).
- NEW appears in one rename of a finished temporary directory, so an interrupted fork leaves nothing.

Rows 1..K of the fork's schedule must equal the source's (they describe the shared files); the first
difference is refused naming the row and column. The origin is recorded in `NEW/forked_from.json`
(`source`: the source's absolute path, `iteration`: K, `created`: ISO time), which `status` and
`report` show.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierctl.campaign.layout import TMP_PREFIX, CampaignLayout, check_campaign_name
from tierctl.campaign.state import campaign_status, load_campaign_schedule
from tierctl.core.vocab import DONE
from tierctl.errors import BadInput

ORIGIN_FILE = "forked_from.json"
APPENDED = ("events.jsonl",)  # files of an iteration that writers append to in place: always copied
TOLERANCE = 1e-9


@dataclass(frozen=True)
class ForkOrigin:
    """Where a campaign was forked from: the source directory and the last shared iteration."""

    source: str
    iteration: int
    created: str = ""

    @property
    def label(self) -> str:
        return f"{self.source}@{self.iteration}"


def read_origin(layout: CampaignLayout) -> ForkOrigin | None:
    """The campaign's fork origin, None when it was not forked (or the record is unreadable)."""
    path = layout.root / ORIGIN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ForkOrigin(str(data["source"]), int(data["iteration"]), str(data.get("created", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_fork_source(arg: str) -> tuple[str, int]:
    """`SOURCE@K` -> (SOURCE, K); BadInput naming the argument otherwise."""
    camp, sep, k = arg.rpartition("@")
    if not sep or not camp or not k.isdigit() or int(k) < 1:
        raise BadInput(f"{arg}: expected SOURCE@K (a campaign and the last iteration to share, K >= 1)")
    return camp, int(k)


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) > TOLERANCE
    return a != b


def check_shared_rows(source_schedule: Any, schedule: Any, k: int, where: str, source: str) -> None:
    """Rows 1..K of `schedule` must equal the source's (every column, knobs included)."""
    if len(schedule) < k:
        raise BadInput(f"{where}: has iterations 1..{len(schedule)} but the fork shares 1..{k} with {source}")
    from dataclasses import asdict

    for n in range(1, k + 1):
        mine, theirs = asdict(schedule.row(n)), asdict(source_schedule.row(n))
        for col, value in theirs.items():
            if _differs(mine.get(col), value):
                raise BadInput(f"{where}: iteration {n} column {col} is {mine.get(col)} but {source} ran it with "
                               f"{value}; a fork shares iterations 1..{k}, so their rows must be the source's")


def link_or_copy(src: Path, dst: Path) -> str:
    """Hard-link `src` to `dst`, or copy it when the filesystem refuses links. Returns "link" or "copy"."""
    try:
        os.link(src, dst)
        return "link"
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
    shutil.copy2(src, dst)
    return "copy"


def share_tree(src: Path, dst: Path) -> dict[str, int]:
    """Recreate directory `src` at `dst`: files linked (copied when appended to), temporaries skipped."""
    counts = {"link": 0, "copy": 0}
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(TMP_PREFIX))
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if name.startswith(TMP_PREFIX):
                continue
            s, d = Path(dirpath) / name, dst / rel / name
            if name in APPENDED:
                shutil.copy2(s, d)
                counts["copy"] += 1
            else:
                counts[link_or_copy(s, d)] += 1
    return counts


@dataclass
class ForkResult:
    layout: CampaignLayout
    origin: ForkOrigin
    links: int
    copies: int


def fork_campaign(source: CampaignLayout, k: int, name: str, parent: Path | None = None,
                  schedule_path: Path | None = None) -> ForkResult:
    """Create `parent/name` sharing iterations 0..K of `source`. BadInput (nothing written) when refused.

    `parent` defaults to the source's parent directory; the schedule to the source's.
    """
    from tierctl.core.schedule import load_schedule

    check_campaign_name(name)
    src_schedule = load_campaign_schedule(source)
    status = campaign_status(source, src_schedule)
    if not 1 <= k <= len(status.iterations):
        raise BadInput(f"{source.root}@{k}: the schedule has iterations 1..{len(status.iterations)}")
    for it in status.iterations[:k]:
        if not it.complete:
            step = it.next_step
            raise BadInput(f"{source.root}@{k}: iteration {it.iteration} is not complete (its {step} step is "
                           f"{it.steps[step]}); a fork shares only complete iterations")
    if schedule_path is not None:
        schedule = load_schedule(schedule_path)
        where = f"--schedule {schedule_path}"
    else:
        schedule, where = src_schedule, str(source.schedule)
    check_shared_rows(src_schedule, schedule, k, where, f"{source.root}")

    parent = Path(parent) if parent is not None else source.root.resolve().parent
    target = parent / name
    if target.exists() or target.is_symlink():
        raise BadInput(f"{target}: already exists; choose another name or --dir")
    if parent.exists() and not parent.is_dir():
        raise BadInput(f"--dir {parent}: not a directory")
    parent.mkdir(parents=True, exist_ok=True)

    origin = ForkOrigin(str(source.root.resolve()), k, _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{name}.", dir=parent))
    counts = {"link": 0, "copy": 0}
    try:
        new = CampaignLayout(tmp)
        shutil.copyfile(source.config, new.config)
        new.schedule.write_text(schedule.to_csv(), encoding="utf-8")
        (tmp / ORIGIN_FILE).write_text(json.dumps({"source": origin.source, "iteration": k,
                                                   "created": origin.created}, indent=2) + "\n", encoding="utf-8")
        for n in range(0, k + 1):
            if source.iter_dir(n).is_dir():
                for kind, c in share_tree(source.iter_dir(n), new.iter_dir(n)).items():
                    counts[kind] += c
                for log in sorted(source.logs.glob(f"iter{n}-*.log")):  # appended to: copied
                    new.logs.mkdir(exist_ok=True)
                    shutil.copy2(log, new.logs / log.name)
        _check_source_still_complete(source, src_schedule, k)
        for f in tmp.rglob("*"):
            if f.is_file() and f.stat().st_nlink == 1:  # copies and our own files (links are the source's)
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        try:
            os.rename(tmp, target)  # refuses a non-empty target: a campaign created meanwhile is kept
        except OSError:
            raise BadInput(f"{target}: already exists; choose another name or --dir") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return ForkResult(CampaignLayout(target), origin, counts["link"], counts["copy"])


def _check_source_still_complete(source: CampaignLayout, schedule: Any, k: int) -> None:
    """The source was read without its lock: refuse if a --force of it removed a shared iteration meanwhile."""
    status = campaign_status(source, schedule, check=False)
    for it in status.iterations[:k]:
        if any(it.steps[s] != DONE for s in it.steps):
            raise BadInput(f"{source.root}: iteration {it.iteration} changed while it was being forked; try again")
