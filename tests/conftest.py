"""Every test runs offline: no hub, no dataset downloads (HF ids and online text sources are tested on
local files). Set before any test module imports huggingface_hub, which reads these once."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
