"""Launching the check step (tierctl/steps/check.py) from `init` and `run`, before anything is written.

The campaign layer never imports torch or transformers, so what needs a tokenizer or a model's
config is checked in `python -m tierctl.steps check`, a subprocess. Its verdict comes back as its exit
code and stderr: 0 (stderr lines are warnings), 2 (one line: the refusal), anything else (the check
itself broke: a step failure, exit 1).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from tierctl.campaign.layout import CampaignLayout
from tierctl.errors import BadInput, StepFailed


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.splitlines() if x.strip()]


def run_check(layout: CampaignLayout, model: str | None = None, steps: Iterable[str] | None = None,
              label: str | None = None, launcher: str | None = None, nproc: int | None = None) -> list[str]:
    """Check a campaign as the steps will see it. Returns warning lines; raises BadInput (exit 2) or StepFailed.

    `model`: the model the first planned step reads (default: [model] name); `steps`: the steps that
    will run (windows are checked only for the steps that cut them); `label`: how messages name
    campaign.toml (init checks a temporary directory but names the file the user will see); `launcher`,
    `nproc`: this run's, when the command line overrides [run].
    """
    argv = [sys.executable, "-m", "tierctl.steps", "check", "--campaign", str(Path(layout.root).resolve())]
    if model is not None:
        argv += ["--model", model]
    if steps is not None:
        argv += ["--steps", ",".join(steps)]
    if label is not None:
        argv += ["--as", label]
    if launcher is not None:
        argv += ["--launcher", launcher]
    if nproc is not None:
        argv += ["--nproc", str(nproc)]
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)  # noqa: S603
    err = _lines(proc.stderr.decode("utf-8", errors="replace"))
    if proc.returncode == 0:
        return [x.removeprefix("warning: ") for x in err if x.startswith("warning: ")]
    if proc.returncode == 2 and err:
        raise BadInput(err[-1])
    raise StepFailed(f"the start-up check of {layout.root} failed: {err[-1] if err else f'exit {proc.returncode}'}")
