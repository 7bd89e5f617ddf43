"""A tiny multiple-choice lm-eval task written to disk: a task YAML plus a local jsonl, run offline."""

from __future__ import annotations

import json
import random
from pathlib import Path

TASK = "tierctl_tiny_mc"


def write_task(directory: Path, examples: int = 30, seed: int = 0) -> Path:
    """`directory` with tierctl_tiny_mc.yaml and its data (sums of two digits, three choices)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for _ in range(examples):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        choices = [str(a + b), str(a + b + 1), str(a * b + 2)]
        label = rng.randrange(3)
        choices[0], choices[label] = choices[label], choices[0]
        rows.append({"question": f"{a} plus {b} is", "choices": choices, "label": label})
    data = directory / "tiny_mc.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (directory / f"{TASK}.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {data}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        'doc_to_target: "{{label}}"\n'
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
        "  - metric: acc_norm\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n",
        encoding="utf-8",
    )
    return directory
