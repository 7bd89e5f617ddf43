"""`python -m tierctl.steps tasks --campaign DIR`: check the campaign's [eval] tasks, write nothing.

The runner calls it before it takes the lock when campaign.toml lists [eval] tasks, so an unknown or
unloadable task is refused (exit 2, one line naming the task) before anything runs, not by the eval
step after hours of pruning. `tierctl init --tasks` runs the same check on the flags' values. It is a
process of its own because lm-eval (slow to import, and heavy) must stay out of the CLI process.
Loading a task reads its dataset once (hub or datasets cache), which also warms the cache for the steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tierctl.errors import BadInput

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tierctl.steps tasks", description="check [eval] tasks")
    p.add_argument("--campaign", type=Path, default=None, help="campaign directory (its [eval] table)")
    p.add_argument("--task", action="append", default=[], help="a task name (instead of --campaign)")
    p.add_argument("--task-path", action="append", default=[], help="a directory of task YAMLs")
    args = p.parse_args(argv)
    try:
        tasks, paths = list(args.task), list(args.task_path)
        if args.campaign is not None:
            from tierctl.campaign.config import load_config

            cfg = load_config(Path(args.campaign) / "campaign.toml")
            tasks, paths = list(cfg.eval.tasks), list(cfg.eval.task_paths)
        if tasks:
            from tierctl.lm.zeroshot import check_tasks

            check_tasks(tasks, paths)
    except BadInput as e:
        print(f"tierctl: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
