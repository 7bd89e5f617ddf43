"""core/metrics: the one reader and writer of iter<N>/metrics.json."""

from __future__ import annotations

import json

import pytest

from tierctl.core.metrics import Metrics, read_metrics, update_metrics, write_metrics
from tierctl.errors import BadInput


def test_update_metrics_merges_nested_tables(tmp_path):
    path = tmp_path / "metrics.json"
    update_metrics(path, iteration=1, ppl=None, timings={"prune_s": 2.0})
    update_metrics(path, ppl=12.5, timings={"eval_s": 3.0}, eval={"source": "pydoc"})
    assert read_metrics(path) == Metrics(iteration=1, ppl=12.5, timings={"prune_s": 2.0, "eval_s": 3.0},
                                         eval={"source": "pydoc"})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_read_metrics_of_a_missing_file_is_none_and_of_a_damaged_one_bad_input_naming_it(tmp_path):
    path = tmp_path / "iter1" / "metrics.json"
    assert read_metrics(path) is None
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(BadInput, match=r"iter1/metrics.json: not valid JSON"):
        read_metrics(path)
    path.write_text("[1, 2]")
    with pytest.raises(BadInput, match=r"iter1/metrics.json: not a JSON object"):
        read_metrics(path)


def test_keys_it_does_not_know_survive_a_merge_unchanged(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"iteration": 2, "ppl": None, "zero_shot": {"piqa": 0.61}, "extra": [1]}))
    update_metrics(path, ppl=20.0)
    written = json.loads(path.read_text())
    assert written["zero_shot"] == {"piqa": 0.61} and written["extra"] == [1]
    assert (written["iteration"], written["ppl"]) == (2, 20.0)
    assert read_metrics(path).extra == {"zero_shot": {"piqa": 0.61}, "extra": [1]}


def test_every_field_of_the_schema_is_written_null_while_unknown(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics(path, Metrics(iteration=3))
    written = json.loads(path.read_text())
    assert list(written) == list(Metrics.known())
    assert written["iteration"] == 3 and written["ppl"] is None and written["finetune"] is None


def test_merging_a_field_the_schema_lacks_is_refused():
    with pytest.raises(TypeError, match="no field ppl_typo"):
        Metrics().merged(ppl_typo=1.0)
