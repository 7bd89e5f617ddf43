"""Every test runs offline: no hub, no dataset downloads (HF ids and online text sources are tested on
local files). Set before any test module imports huggingface_hub, which reads these once.

Under pytest-xdist (`-n 2`, pyproject's addopts) each worker's torch, and the steps it starts as
subprocesses, use one thread: two workers on two cores would otherwise run four busy threads, and
spinning OpenMP threads waste most of a crowded CPU. Set before any test module imports torch."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
