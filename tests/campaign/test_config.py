"""campaign/config: the [model] offload and [run] store keys, validated like the other keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierctl.campaign.config import dumps_config, from_dict, load_config
from tierctl.errors import BadInput


def test_offload_defaults_to_auto():
    assert from_dict({}).model.offload == "auto"


@pytest.mark.parametrize("mode", ["auto", "never", "layers"])
def test_offload_round_trips_through_campaign_toml(tmp_path: Path, mode: str):
    path = tmp_path / "campaign.toml"
    path.write_text(dumps_config(from_dict({"model": {"offload": mode}})), encoding="utf-8")
    assert load_config(path).model.offload == mode


def test_an_unknown_offload_mode_is_bad_input():
    with pytest.raises(BadInput, match=r"^campaign.toml: \[model\] offload must be one of auto, never, layers, "
                                       r"got 'sometimes'$"):
        from_dict({"model": {"offload": "sometimes"}})


def test_a_non_string_offload_is_bad_input():
    with pytest.raises(BadInput, match=r"\[model\] offload must be str, got True"):
        from_dict({"model": {"offload": True}})


def test_store_defaults_to_dense():
    assert from_dict({}).run.store == "dense"


@pytest.mark.parametrize("store", ["dense", "packed"])
def test_store_round_trips_through_campaign_toml(tmp_path: Path, store: str):
    path = tmp_path / "campaign.toml"
    path.write_text(dumps_config(from_dict({"run": {"store": store}})), encoding="utf-8")
    assert load_config(path).run.store == store


def test_an_unknown_store_is_bad_input_naming_file_table_and_key():
    with pytest.raises(BadInput, match=r"^campaign.toml: \[run\] store must be one of dense, packed, got 'zip'$"):
        from_dict({"run": {"store": "zip"}})
