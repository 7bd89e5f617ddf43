"""lm/text: sources, the 80/20 split, the datasets code path on local files, windows."""

from __future__ import annotations

import json

import pytest
import torch

from tierctl.errors import BadInput
from tierctl.lm.text import (
    calibration_windows,
    dataset_stream,
    eval_windows,
    pydoc_text,
    token_stream,
    tokenize,
)


def test_pydoc_train_is_the_first_80_percent_of_tokens_and_eval_the_rest(tiny_llama):
    tok = tiny_llama[1]
    whole = tokenize(pydoc_text(), tok)
    train, ev = token_stream("pydoc", tok, "train"), token_stream("pydoc", tok, "eval")
    assert len(train) == int(len(whole) * 0.8)
    assert len(train) + len(ev) == len(whole)
    assert torch.equal(torch.cat([train, ev]), whole)  # disjoint, in order, nothing lost
    assert len(whole) > 100_000 and train.dtype == torch.long


def test_pydoc_text_joins_topics_in_sorted_key_order():
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    first, second = sorted(topics)[:2]
    assert pydoc_text().startswith(topics[first] + "\n\n" + topics[second])


def test_text_file_source_splits_the_same_way(tmp_path, tiny_llama):
    tok = tiny_llama[1]
    text = "".join(f"line {i}: the quick brown fox\n" for i in range(200))
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    whole = tokenize(text, tok)
    train = token_stream(f"text:{tmp_path / 'corpus.txt'}", tok, "train")
    ev = token_stream(f"text:{tmp_path / 'corpus.txt'}", tok, "eval")
    assert torch.equal(train, whole[: int(len(whole) * 0.8)])
    assert torch.equal(ev, whole[int(len(whole) * 0.8):])


def test_a_changed_text_file_is_tokenized_again(tmp_path, tiny_llama):
    tok, path = tiny_llama[1], tmp_path / "corpus.txt"
    path.write_text("alpha beta gamma " * 50, encoding="utf-8")
    first = token_stream(f"text:{path}", tok, "eval")
    path.write_text("delta epsilon " * 80, encoding="utf-8")
    second = token_stream(f"text:{path}", tok, "eval")
    assert torch.equal(torch.cat([token_stream(f"text:{path}", tok, "train"), second]),
                       tokenize("delta epsilon " * 80, tok))
    assert not torch.equal(first, second[: len(first)])


def test_missing_text_file_is_bad_input(tmp_path, tiny_llama):
    with pytest.raises(BadInput, match="no such file"):
        token_stream(f"text:{tmp_path / 'nope.txt'}", tiny_llama[1], "train")


def test_unknown_source_is_bad_input(tiny_llama):
    with pytest.raises(BadInput, match="'wikitext103': unknown"):
        token_stream("wikitext103", tiny_llama[1], "eval")


def test_dataset_stream_joins_a_column_like_wanda(tiny_llama):
    import datasets

    tok = tiny_llama[1]
    docs = ["first document", "", "second one", "third"]
    ds = datasets.Dataset.from_dict({"text": docs, "id": [1, 2, 3, 4]})
    assert torch.equal(dataset_stream(ds, "text", tok, "\n\n"), tokenize("\n\n".join(docs), tok))
    assert torch.equal(dataset_stream(ds, "text", tok, " ", max_docs=2), tokenize("first document ", tok))


def test_dataset_stream_from_local_json_and_text_files(tmp_path, tiny_llama):
    import datasets

    tok = tiny_llama[1]
    rows = [{"text": f"document number {i}", "url": "x"} for i in range(5)]
    (tmp_path / "c4.json").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    ds = datasets.load_dataset("json", data_files={"validation": str(tmp_path / "c4.json")}, split="validation",
                               cache_dir=str(tmp_path / "cache"))
    assert torch.equal(dataset_stream(ds, "text", tok, " "), tokenize(" ".join(r["text"] for r in rows), tok))
    (tmp_path / "ptb.txt").write_text("a b c\nd e f\n", encoding="utf-8")
    ds = datasets.load_dataset("text", data_files={"test": str(tmp_path / "ptb.txt")}, split="test",
                               cache_dir=str(tmp_path / "cache"))
    assert torch.equal(dataset_stream(ds, "text", tok, " "), tokenize("a b c d e f", tok))


def test_dataset_without_the_column_is_bad_input(tiny_llama):
    import datasets

    ds = datasets.Dataset.from_dict({"sentence": ["a"]})
    with pytest.raises(BadInput, match="no column 'text' \\(columns: sentence\\)"):
        dataset_stream(ds, "text", tiny_llama[1])


@pytest.mark.parametrize(("source", "repo"), [("wikitext2", "Salesforce/wikitext"), ("c4", "allenai/c4"),
                                              ("ptb", "ptb-text-only/ptb_text_only")])
def test_unreachable_hub_dataset_is_bad_input_naming_it(source, repo, tiny_llama):
    # conftest sets HF_HUB_OFFLINE / HF_DATASETS_OFFLINE: the load fails without touching the network.
    with pytest.raises(BadInput, match=f"text source {source}: could not load {repo}") as err:
        token_stream(source, tiny_llama[1], "eval")
    assert "\n" not in str(err.value)


def test_calibration_windows_are_deterministic_per_seed_and_slices_of_the_stream():
    stream = torch.arange(1000, 2000)  # token i at position i-1000: a window reveals its start
    a = calibration_windows(stream, nsamples=8, seqlen=50, seed=3)
    assert a.shape == (8, 50)
    assert torch.equal(a, calibration_windows(stream, 8, 50, seed=3))
    assert not torch.equal(a, calibration_windows(stream, 8, 50, seed=4))
    starts = a[:, 0] - 1000
    assert torch.equal(a, stream[starts[:, None] + torch.arange(50)])  # contiguous slices
    assert (starts >= 0).all() and (starts + 50 <= len(stream)).all()


def test_calibration_windows_stay_inside_the_train_split(tiny_llama):
    tok = tiny_llama[1]
    train, ev = token_stream("pydoc", tok, "train"), token_stream("pydoc", tok, "eval")
    w = calibration_windows(train, nsamples=64, seqlen=128, seed=0)
    # Positions: every window lies within [0, len(train)); the eval split starts at len(train).
    whole = torch.cat([train, ev])
    hits = [int(torch.nonzero((whole.unfold(0, 128, 1) == row).all(1))[0]) for row in w[:8]]
    assert all(h + 128 <= len(train) for h in hits)


def test_seqlen_longer_than_the_stream_is_bad_input_with_numbers():
    with pytest.raises(BadInput, match="seqlen 100 is longer than its 99 tokens"):
        calibration_windows(torch.arange(99), 4, 100, 0)
    with pytest.raises(BadInput, match="seqlen 100 is longer than its 99 tokens"):
        eval_windows(torch.arange(99), 100)


def test_eval_windows_are_consecutive_and_non_overlapping():
    stream = torch.arange(1050)
    w = eval_windows(stream, seqlen=100)
    assert w.shape == (10, 100)
    assert torch.equal(w.flatten(), stream[:1000])  # the 50-token tail is dropped
    assert torch.equal(eval_windows(stream, 100, max_windows=3), w[:3])
    assert eval_windows(stream, 100, max_windows=50).shape == (10, 100)
