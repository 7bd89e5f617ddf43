"""The pruned model put back before its fine-tune is redone: `python -m tierctl.steps restore --campaign DIR --iter N`.

`tierctl run C --iter N --step finetune --force` on a fine-tuned iteration launches it (tierctl/campaign/
restore.py), under the campaign lock, before anything else is removed. It is not a step of an iteration
(no events): the fine-tune that follows is. In order:

1. rebuild the pruned model: the input model of iteration N (iter<N-1>/model, or `[model] name` for
   N = 1) loaded as the prune loaded it ([model] dtype), with the masks of iter<N>/keep.safetensors
   applied by the prune's own `apply_keep`; its sha256 must be the keep file's. Otherwise the input
   changed since the prune (a new revision on the hub, an edited iter<N-1>/model): one line naming the
   keep file, exit 2, nothing written; the prune has to be redone (`--iter N --force`).
2. remove the later iterations (they descend from the fine-tune being redone);
3. clear iteration N's ppl (its eval measured that fine-tune);
4. write iter<N>/model = the pruned model, dense or packed ([run] store), one atomic directory swap:
   the fine-tune is then pending, exactly as after the prune (the same bytes the prune wrote).

A kill anywhere leaves a state the same command redoes: before 4, iteration N still holds its old
fine-tune (its eval pending after 3). Exit 0; 2 with one line on stderr for bad input; 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from tierctl.campaign.config import load_config
from tierctl.campaign.layout import CampaignLayout, remove_path
from tierctl.core.metrics import read_metrics, write_metrics
from tierctl.errors import BadInput, TierctlError

STEP = "restore"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tierctl.steps restore", description=__doc__.splitlines()[0])
    p.add_argument("--campaign", required=True, type=Path, help="campaign directory")
    p.add_argument("--iter", required=True, type=int, dest="iteration", help="the iteration to put back")
    return p.parse_args(argv)


def restore(layout: CampaignLayout, n: int) -> None:
    """Rebuild, verify and put back iteration n's pruned model (the module docstring's steps 1-4)."""
    from tierctl.core.tiermap_io import load_tiers
    from tierctl.lm.keep_file import apply_keep_file, model_sha256, read_keep
    from tierctl.lm.models import load_model
    from tierctl.lm.store import store_model
    from tierctl.steps.common import input_model_of, packing_for

    cfg = load_config(layout.config)
    path = layout.keep(n)
    keep = read_keep(path)
    redo = f"redo the prune: tierctl run {layout.root} --iter {n} --force"
    if keep.meta.get("dtype") != cfg.model.dtype:
        raise BadInput(f"{path}: made with [model] dtype {keep.meta.get('dtype')}, {layout.config} now says "
                       f"{cfg.model.dtype}; {redo}")
    metrics = read_metrics(layout.metrics(n))
    if metrics is None:
        raise BadInput(f"{layout.metrics(n)}: missing: the prune of iteration {n} has not finished")
    spec = input_model_of(layout, cfg.model.name, n)
    model, tokenizer = load_model(spec, device="cpu", dtype=cfg.model.dtype,
                                  trust_remote_code=cfg.model.trust_remote_code)
    apply_keep_file(model, keep, path)
    if model_sha256(model) != keep.sha256:
        raise BadInput(f"{path}: {keep.meta.get('input', spec)} with these masks is not iteration {n}'s pruned model "
                       f"(sha256 differs: the input model changed since the prune); {redo}")
    for m in sorted(layout.iterations_on_disk()):
        if m > n:
            remove_path(layout.iter_dir(m))
    if metrics.ppl is not None:
        write_metrics(layout.metrics(n), metrics.merged(ppl=None, ppl_interval=None))
    tiers = load_tiers(layout.tiers(n))[0] if (metrics.method or "progressive") == "progressive" else None
    store_model(model, tokenizer, layout.model(n), packing_for(cfg, layout, n, tiers))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        layout = CampaignLayout(args.campaign)
        if not layout.config.is_file():
            raise BadInput(f"--campaign {args.campaign}: no campaign.toml there")
        restore(layout, args.iteration)
    except BadInput as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 2
    except (TierctlError, Exception) as e:  # a failure of the restore itself: the traceback, then one line
        traceback.print_exc(file=sys.stderr)
        print(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
