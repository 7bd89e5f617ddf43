"""Zero-shot (and few-shot) accuracy through lm-eval, the lm-evaluation-harness (0.4.x).

tierctl does not evaluate tasks itself: it hands the in-memory model to lm-eval's `HFLM` (which accepts a
PreTrainedModel) and calls `simple_evaluate`, so a number here is lm-eval's own number for that model.
lm-eval is the optional extra `tierctl[eval]` and slow to import (seconds): it is imported only when a
campaign lists `[eval] tasks`.

Tasks are found in `[eval] task_paths` (directories of task YAMLs, lm-eval's include path) and in
lm-eval's own task index. The own index is only built when a task is not in task_paths (indexing the
thousands of built-in YAMLs takes seconds). Built-in tasks read their datasets from the Hugging Face hub
(or a datasets cache): offline machines use local task YAMLs, as the tests do.
"""

from __future__ import annotations

import math
import time
from typing import Any

from tierctl.errors import BadInput

METRICS = ("acc", "acc_norm")  # what metrics.json keeps per task, each with lm-eval's stderr


def _lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError:
        raise BadInput("[eval] tasks need lm-eval: pip install 'tierctl[eval]'") from None
    return lm_eval


def task_manager(tasks: list[str], task_paths: list[str]) -> Any:
    """An lm-eval TaskManager that knows every task of `tasks`; BadInput naming the first unknown one."""
    from pathlib import Path

    _lm_eval()
    from lm_eval.tasks import TaskManager

    for p in task_paths:
        if not Path(p).is_dir():
            raise BadInput(f"[eval] task_paths: {p}: no such directory")
    manager = TaskManager(include_path=list(task_paths) or None, include_defaults=False) if task_paths else None
    if manager is None or any(t not in manager.all_tasks for t in tasks):
        manager = TaskManager(include_path=list(task_paths) or None)
    for t in tasks:
        if t not in manager.all_tasks:
            where = " or [eval] task_paths" if task_paths else " ([eval] task_paths adds directories of task YAMLs)"
            raise BadInput(f"[eval] tasks: unknown task {t!r}: not an lm-eval task{where}")
    return manager


def check_tasks(tasks: list[str], task_paths: list[str]) -> None:
    """Refuse (BadInput, one line naming the task) a task lm-eval does not know or cannot load.

    Loading a task reads its dataset (from the hub the first time, then from the datasets cache), so a
    task that cannot be loaded here would fail the same way after hours of pruning.
    """
    manager = task_manager(tasks, task_paths)
    from lm_eval.tasks import get_task_dict

    for t in tasks:
        try:
            get_task_dict([t], manager)
        except Exception as e:  # noqa: BLE001  (lm-eval and datasets raise anything)
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BadInput(f"[eval] tasks: task {t!r} cannot be loaded: {msg}") from None


def zero_shot(model: Any, tokenizer: Any, tasks: list[str], num_fewshot: int = 0, limit: int = 0,
              task_paths: list[str] | None = None, batch_size: int = 4) -> dict[str, Any]:
    """lm-eval on the in-memory `model`: what metrics.json keeps under "zeroshot".

    {"tasks": {task: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "samples"}}, "mean_acc",
    "num_fewshot", "limit", "lm_eval", "seconds"}; a task without acc_norm has no such keys. A group
    (e.g. "mmlu") contributes its own aggregate and each subtask, as lm-eval reports them.
    `mean_acc` averages `acc` over the listed tasks that have one.
    """
    lm_eval = _lm_eval()
    from lm_eval.models.huggingface import HFLM

    t0 = time.perf_counter()
    manager = task_manager(tasks, list(task_paths or []))
    device = str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks), num_fewshot=num_fewshot,
                                  limit=limit or None, task_manager=manager, log_samples=False)
    results: dict[str, dict[str, float]] = {}
    samples = out.get("n-samples", {}) if out else {}
    for task, entry in (out or {}).get("results", {}).items():
        row: dict[str, float] = {}
        for metric in METRICS:
            for key, name in ((f"{metric},none", metric), (f"{metric}_stderr,none", f"{metric}_stderr")):
                value = entry.get(key)
                if isinstance(value, (int, float)) and math.isfinite(float(value)):
                    row[name] = float(value)
        if task in samples:
            row["samples"] = int(samples[task].get("effective", 0))
        results[task] = row
    accs = [results[t]["acc"] for t in tasks if "acc" in results.get(t, {})]
    return {"tasks": results, "mean_acc": sum(accs) / len(accs) if accs else None, "num_fewshot": num_fewshot,
            "limit": limit, "lm_eval": getattr(lm_eval, "__version__", None),
            "seconds": round(time.perf_counter() - t0, 3)}
