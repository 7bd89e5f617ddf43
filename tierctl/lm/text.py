"""Text sources -> token streams -> windows (the README's Models and text).

A *stream* is a 1-D LongTensor of token ids. Sources:
- `pydoc`: CPython's pydoc_data.topics, topics joined in sorted key order and tokenized once;
  the first 80% of the TOKENS is the train split, the last 20% the eval split (disjoint).
- `text:PATH`: a local UTF-8 file, the same 80/20 split.
- `wikitext2`, `c4`, `ptb`: through `datasets` (online), using each dataset's own train and
  evaluation splits, joined as Wanda / SparseGPT join them.
Streams carry no special tokens (no BOS), so every source and tokenizer is treated alike.

Windows: calibration windows start at seeded random offsets in the train stream (Wanda/SparseGPT);
evaluation windows are consecutive and non-overlapping. `seqlen` is a setting, never the model's
max_position_embeddings (131072 for some models: out of memory at once).
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tierctl.errors import BadInput

SPLITS = ("train", "eval")
TRAIN_FRACTION = 0.8


@dataclass(frozen=True)
class HubText:
    """How one online source is fetched and joined. `data_files` pins today's c4 layout."""

    repo: str
    config: str | None
    splits: dict[str, str]  # our split -> the dataset's split
    column: str
    joiner: str
    data_files: dict[str, str] | None = None
    max_docs: dict[str, int] | None = None  # c4 shards are huge: take the first documents only


HUB_SOURCES: dict[str, HubText] = {
    "wikitext2": HubText("Salesforce/wikitext", "wikitext-2-raw-v1", {"train": "train", "eval": "test"},
                         "text", "\n\n"),
    "c4": HubText("allenai/c4", None, {"train": "train", "eval": "validation"}, "text", " ",
                  data_files={"train": "en/c4-train.00000-of-01024.json.gz",
                              "validation": "en/c4-validation.00000-of-00008.json.gz"},
                  max_docs={"train": 20000, "eval": 1100}),  # 1100: Wanda's c4 evaluation documents
    "ptb": HubText("ptb-text-only/ptb_text_only", "penn_treebank", {"train": "train", "eval": "test"},
                   "sentence", " "),
}
SOURCES = ("pydoc", "text:PATH", *HUB_SOURCES)


# ---- tokenization ----


def tokenize(text: str, tokenizer: Any) -> torch.Tensor:
    """The ids of `text` without special tokens, as a LongTensor [T]."""
    from transformers.utils import logging as hf_logging

    # A whole corpus is longer than model_max_length on purpose: silence that one warning.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    finally:
        hf_logging.set_verbosity(level)
    return torch.tensor(ids, dtype=torch.long)


def split_stream(ids: torch.Tensor, split: str) -> torch.Tensor:
    """First 80% of the tokens for train, the rest for eval: disjoint and together the whole."""
    cut = int(len(ids) * TRAIN_FRACTION)
    return ids[:cut] if split == "train" else ids[cut:]


def pydoc_text() -> str:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def dataset_stream(dataset: Any, column: str, tokenizer: Any, joiner: str = "\n\n", max_docs: int = 0,
                   source: str = "dataset") -> torch.Tensor:
    """A loaded `datasets.Dataset` -> one token stream: documents of `column` joined by `joiner`."""
    if column not in dataset.column_names:
        raise BadInput(f"{source}: dataset has no column {column!r} (columns: {', '.join(dataset.column_names)})")
    if max_docs and len(dataset) > max_docs:
        dataset = dataset.select(range(max_docs))
    return tokenize(joiner.join(dataset[column]), tokenizer)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return f"{type(e).__name__}: {s.splitlines()[0]}" if s else type(e).__name__


def hub_stream(name: str, tokenizer: Any, split: str) -> torch.Tensor:
    import datasets

    src = HUB_SOURCES[name]
    hub_split = src.splits[split]
    kw: dict[str, Any] = {}
    if src.data_files:
        kw["data_files"] = {hub_split: src.data_files[hub_split]}
    try:
        ds = datasets.load_dataset(src.repo, src.config, split=hub_split, **kw)
    except Exception as e:  # noqa: BLE001  (network, auth, renamed repos: all end here)
        raise BadInput(f"text source {name}: could not load {src.repo} split {hub_split!r} "
                       f"(is the hub reachable?): {_first_line(e)}") from None
    max_docs = (src.max_docs or {}).get(split, 0)
    return dataset_stream(ds, src.column, tokenizer, src.joiner, max_docs, source=f"text source {name}")


# ---- the public entry: source -> stream ----

_CACHE: OrderedDict[tuple[Any, ...], torch.Tensor] = OrderedDict()
_CACHE_SIZE = 4


def _fingerprint(tokenizer: Any) -> str:
    """Identifies what a tokenizer does (fast tokenizers: its serialized form, ~30 ms for 50k vocab)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return hashlib.sha1(backend.to_str().encode("utf-8")).hexdigest()
    return f"object-{id(tokenizer)}"  # slow tokenizers: per object only


def _read_source(source: str) -> tuple[str, tuple[Any, ...]]:
    """(text, what identifies this version of it) of a local source."""
    if source == "pydoc":
        return pydoc_text(), (sys.version,)
    path = Path(source[len("text:"):]).expanduser()
    try:
        st = path.stat()
        return path.read_text(encoding="utf-8"), (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        raise BadInput(f"text source {source}: no such file") from None
    except UnicodeDecodeError:
        raise BadInput(f"text source {source}: not UTF-8 text") from None
    except OSError as e:
        raise BadInput(f"text source {source}: cannot read ({e.strerror})") from None


def _whole(source: str, tokenizer: Any) -> torch.Tensor:
    """The full token stream of a local source, memoized (the prune step asks for both splits)."""
    text, version = _read_source(source)
    key = (source, version, _fingerprint(tokenizer))
    if key not in _CACHE:
        _CACHE[key] = tokenize(text, tokenizer)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return _CACHE[key].clone()  # callers may write into their stream


def token_stream(source: str, tokenizer: Any, split: str) -> torch.Tensor:
    """LongTensor [T] of the `split` ("train" | "eval") of a text source."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if source == "pydoc" or source.startswith("text:"):
        if source == "text:":
            raise BadInput("text source text:: no path after 'text:'")
        return split_stream(_whole(source, tokenizer), split)
    if source in HUB_SOURCES:
        return hub_stream(source, tokenizer, split)
    raise BadInput(f"text source {source!r}: unknown (use one of {', '.join(SOURCES)})")


# ---- windows ----


def calibration_windows(stream: torch.Tensor, nsamples: int, seqlen: int, seed: int,
                        what: str = "calibration stream") -> torch.Tensor:
    """LongTensor [nsamples, seqlen] of windows starting at seeded random offsets (may overlap)."""
    if nsamples < 1 or seqlen < 1:
        raise BadInput(f"{what}: nsamples ({nsamples}) and seqlen ({seqlen}) must be >= 1")
    if len(stream) < seqlen:
        raise BadInput(f"{what}: seqlen {seqlen} is longer than its {len(stream)} tokens; lower data.seqlen")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(stream) - seqlen + 1, (nsamples,), generator=g)
    offsets = starts[:, None] + torch.arange(seqlen)[None, :]  # [nsamples, seqlen]
    return stream[offsets]


def eval_windows(stream: torch.Tensor, seqlen: int, max_windows: int = 0,
                 what: str = "evaluation stream") -> torch.Tensor:
    """LongTensor [n, seqlen]: consecutive non-overlapping windows in order; a shorter tail is dropped."""
    if seqlen < 1:
        raise BadInput(f"{what}: seqlen must be >= 1, got {seqlen}")
    n = len(stream) // seqlen
    if max_windows > 0:
        n = min(n, max_windows)
    if n == 0:
        raise BadInput(f"{what}: seqlen {seqlen} is longer than its {len(stream)} tokens; lower data.seqlen")
    return stream[: n * seqlen].view(n, seqlen)
