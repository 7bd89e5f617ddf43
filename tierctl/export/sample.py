"""Greedy generation from several models, one after the other, for `tierctl sample`.

Each model is loaded, prompted and freed before the next, so memory holds one model at a time.
"""

from __future__ import annotations

from typing import Any

import torch

from tierctl.export.sample_plan import Column


def _load(col: Column) -> tuple[Any, Any]:
    from transformers import AutoTokenizer

    from tierctl.lm.models import load_model

    if col.kind == "packed":
        from tierctl.export.load import load_packed

        return load_packed(col.spec), AutoTokenizer.from_pretrained(col.spec, local_files_only=True)
    return load_model(col.spec, device="cpu", dtype=col.dtype)


def prompt_ids(tokenizer: Any, prompt: str) -> torch.Tensor:
    """[1, T] token ids of the prompt, through the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        return ids
    return tokenizer(prompt, return_tensors="pt")["input_ids"]


@torch.no_grad()
def greedy(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int) -> str:
    """The text of `max_new_tokens` greedy tokens after the prompt (fewer when the model ends it)."""
    ids = prompt_ids(tokenizer, prompt)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                         num_beams=1, pad_token_id=pad, temperature=None, top_p=None, top_k=None)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def generate_columns(columns: list[Column], prompt: str, max_new_tokens: int) -> dict[str, str]:
    """{column label: generated text}, in column order."""
    texts: dict[str, str] = {}
    for col in columns:
        model, tokenizer = _load(col)
        texts[col.label] = greedy(model, tokenizer, prompt, max_new_tokens)
        del model
    return texts
