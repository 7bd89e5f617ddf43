"""Launching the restore of a pruned model (tierctl/steps/restore.py) for `--step finetune --force`.

The campaign layer never imports torch, and rebuilding the pruned model from its input and
iter<N>/keep.safetensors needs the model, so it runs as `python -m tierctl.steps restore`, a subprocess,
as the start-up check does. Its verdict is its exit code and stderr: 0, 2 (one line: the refusal,
nothing written), anything else (the restore itself broke: a step failure, exit 1).
"""

from __future__ import annotations

import subprocess
import sys

from tierctl.campaign.layout import CampaignLayout
from tierctl.errors import BadInput, StepFailed


def run_restore(layout: CampaignLayout, n: int) -> None:
    """Put iteration n's pruned model back as iter<n>/model (later iterations and n's ppl removed first).

    Raises BadInput when the rebuilt model is not the one the prune wrote (nothing written then)."""
    argv = [sys.executable, "-m", "tierctl.steps", "restore", "--campaign", str(layout.root.resolve()),
            "--iter", str(n)]
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)  # noqa: S603
    err = [x.strip() for x in proc.stderr.decode("utf-8", errors="replace").splitlines() if x.strip()]
    if proc.returncode == 0:
        return
    if proc.returncode == 2 and err:
        raise BadInput(err[-1])
    raise StepFailed(f"restoring the pruned model of {layout.iter_dir(n)} failed: "
                     f"{err[-1] if err else f'exit {proc.returncode}'}")
