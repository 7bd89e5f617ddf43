"""The cheap model / text checks of `tierctl init` know the same names as the loaders that import torch."""

from __future__ import annotations

from tierctl.campaign.init import HUB_TEXT_SOURCES, MODEL_PRESETS


def test_model_presets_are_those_of_lm_models():
    from tierctl.lm.models import PRESETS

    assert sorted(MODEL_PRESETS) == sorted(PRESETS)


def test_online_text_sources_are_those_of_lm_text():
    from tierctl.lm.text import HUB_SOURCES

    assert sorted(HUB_TEXT_SOURCES) == sorted(HUB_SOURCES)
