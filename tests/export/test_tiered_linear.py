"""TieredLinear computes x @ W.T from the packed tensors; a model of them matches the dense model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tierctl.core.tiers import progressive_step
from tierctl.export import TieredLinear, kernels, load_packed
from tierctl.export.matrix import pack_matrix
from tierctl.export.source import resolve_iteration
from tierctl.export.writer import export_iteration

PATHS = ["torch", "kernel"] if kernels.AVAILABLE else ["torch"]


def pruned(shape: tuple[int, int], dtype: torch.dtype = torch.float32, seed: int = 0):
    """A random weight pruned at 35/45/20 by the real progressive step, and its tier map."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=g)
    tiers = torch.zeros(shape[0] // 16, shape[1] // 16, dtype=torch.uint8)
    new, keep = progressive_step(w, torch.rand(shape[1], generator=g), tiers, 0.35, 0.20)
    return (w * keep).to(dtype), new


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(64, 192), (200, 48), (37, 21)])  # full blocks; partial rows; both edges
@pytest.mark.parametrize("tokens", [1, 3, 5, 33])  # decoding kernel up to 4 tokens, strips beyond
def test_output_equals_the_dense_linear_within_fp32_rounding(path, shape, tokens):
    w, tiers = pruned(shape)
    bias = torch.randn(shape[0])
    layer = TieredLinear(pack_matrix(w, tiers, 16, 10), torch.nn.Parameter(bias), use_kernel=path == "kernel")
    x = torch.randn(2, tokens, shape[1])
    with torch.no_grad():
        y = layer(x)
    torch.testing.assert_close(y, torch.nn.functional.linear(x, w, bias), rtol=1e-5, atol=1e-5)


def test_the_decoding_kernel_reads_blocks_tier_by_tier_in_column_order():
    tiers = torch.tensor([[2, 0, 1, 0], [1, 1, 2, 2]], dtype=torch.uint8)
    w = torch.zeros(32, 64)  # all zero: fits every tier
    layer = TieredLinear(pack_matrix(w, tiers, 16, 10), use_kernel=True)
    assert layer.cols.tolist() == [1, 3, 2, 0, 0, 1, 2, 3]
    assert layer.weight_bytes() == TieredLinear(pack_matrix(w, tiers, 16, 10), use_kernel=False).weight_bytes() + 16


def test_bfloat16_uses_the_torch_path_and_matches():
    w, tiers = pruned((64, 192), torch.bfloat16)
    layer = TieredLinear(pack_matrix(w, tiers, 16, 10))
    x = torch.randn(3, 192, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(layer(x), x @ w.T)


def test_it_holds_fewer_bytes_than_the_dense_weight():
    w, tiers = pruned((64, 192))
    layer = TieredLinear(pack_matrix(w, tiers, 16, 10))
    assert not any(t.shape == w.shape for t in layer.buffers())
    assert layer.weight_bytes() < 0.65 * w.numel() * w.element_size()


@pytest.fixture(scope="module")
def exported(campaigns, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiered") / "x"
    export_iteration(resolve_iteration(str(campaigns["llama"].root)), out)
    return out


def test_logits_of_the_tiered_model_match_the_dense_model_on_real_windows(exported):
    from tierctl.lm.models import tiny_tokenizer
    from tierctl.lm.text import token_stream

    dense, tiered = load_packed(exported), load_packed(exported, materialize=False)
    assert sum(isinstance(m, TieredLinear) for m in tiered.modules()) == 14  # 7 matrices x 2 layers
    assert not any(isinstance(m, torch.nn.Linear) and "layers" in n for n, m in tiered.named_modules())
    ids = token_stream("pydoc", tiny_tokenizer(), "eval")[:128].view(2, 64)  # two real evaluation windows
    with torch.no_grad():
        a, b = dense(ids).logits, tiered(ids).logits
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_greedy_generation_is_the_same_token_for_token(exported):
    dense, tiered = load_packed(exported), load_packed(exported, materialize=False)
    ids = torch.tensor([[5, 17, 99, 3]])
    kw = dict(max_new_tokens=32, do_sample=False, pad_token_id=0)
    assert torch.equal(tiered.generate(ids, **kw), dense.generate(ids, **kw))


def test_a_layer_cast_after_a_call_computes_from_its_new_weights():
    w, tiers = pruned((64, 192))
    layer = TieredLinear(pack_matrix(w, tiers, 16, 10))
    x = torch.randn(1, 192)
    with torch.no_grad():
        layer(x)  # builds the kernel's arguments (numpy views of the float32 buffers)
        layer.half()  # new buffers: the old views must not be used
        assert torch.equal(layer(x), x @ w.half().float().T)
