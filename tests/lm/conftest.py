"""Fixtures for tests that need a model: the tiny presets load in milliseconds, offline."""

from __future__ import annotations

import os

# Tests never download: make every hub access fail fast instead of trying the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from tests.helpers import make_campaign as _make_campaign  # noqa: E402


@pytest.fixture
def tiny_llama() -> tuple[Any, Any]:
    """(model, tokenizer) of the tiny-llama preset on CPU, a fresh copy per test."""
    from tierctl.lm.models import load_model

    return load_model("tiny-llama", device="cpu")


@pytest.fixture
def tiny_model_dir(tmp_path: Path, tiny_llama: tuple[Any, Any]) -> Path:
    """tiny-llama saved with save_model, as a later iteration would find it."""
    from tierctl.lm.models import save_model

    dest = tmp_path / "tiny-llama-saved"
    save_model(*tiny_llama, dest)
    return dest


@pytest.fixture
def make_campaign(tmp_path: Path):
    """make_campaign(model="tiny-llama", **tables) -> CampaignLayout under this test's tmp_path."""

    def make(model: str = "tiny-llama", **kw: Any):
        return _make_campaign(tmp_path, model=model, **kw)

    return make
