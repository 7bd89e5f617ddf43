"""TieredLinear: an nn.Linear whose weight stays packed by tier; `x @ W.T` is computed from the packed tensors.

Two ways to compute, both exact up to float32 summation order:
- few tokens (decoding), float32 on CPU, block size 16, numba installed (`tierctl[fast]`): the kernel of
  tierctl/export/kernels.py reads the packed tensors once per call;
- otherwise (prefill, other dtypes, no numba): the weight is rebuilt one strip of block rows at a time
  (about 256 K entries, a few hundred KB; by numba into one reused buffer when it applies, else by torch)
  and multiplied by BLAS; the whole dense weight never exists.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tierctl.export import kernels
from tierctl.export.matrix import PackedMatrix

KERNEL_MAX_TOKENS = 4  # above this, strips + BLAS beat the kernel (it reads the weight once per token)
STRIP_ENTRIES = 1 << 18  # entries of one rebuilt strip in the torch path

_BUFFERS = ("tiers", "offsets", "dense", "semi_values", "semi_codes", "topk_values", "topk_index", "edge_right",
            "edge_bottom")


class TieredLinear(nn.Module):
    """`y = x @ W.T + bias` with W held as a PackedMatrix (buffers, so `.to(device)` moves them)."""

    def __init__(self, packed: PackedMatrix, bias: torch.Tensor | None = None, use_kernel: bool | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = packed.shape
        self.block_size, self.k = packed.block_size, packed.k
        self.use_kernel = kernels.AVAILABLE if use_kernel is None else use_kernel
        for name in _BUFFERS:
            value = packed.offsets() if name == "offsets" else getattr(packed, name)
            self.register_buffer(name, None if value is None else value.contiguous(), persistent=False)
        # Block columns of each block row, DENSE blocks first, then 2:4, then TOPK (the kernel's visiting
        # order): 2 bytes per block, only where the kernel can run.
        kernel_ok = self.use_kernel and self.block_size == 16 and sys.byteorder == "little"
        self.register_buffer("cols", _tier_ordered_columns(packed.tiers) if kernel_ok else None, persistent=False)
        self.bias = bias if isinstance(bias, nn.Parameter) or bias is None else nn.Parameter(bias)
        self._views: _Views | bool | None = None  # numpy views for the kernels (_numpy); False: they cannot run

    @property
    def packed(self) -> PackedMatrix:
        return PackedMatrix((self.out_features, self.in_features), self.block_size, self.k, self.tiers, self.dense,
                            self.semi_values, self.semi_codes, self.topk_values, self.topk_index, self.edge_right,
                            self.edge_bottom)

    def weight_bytes(self) -> int:
        """Bytes this layer holds for its weight (the packed tensors and the per-row offsets)."""
        return sum(t.numel() * t.element_size() for n in (*_BUFFERS, "cols") if (t := getattr(self, n)) is not None)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, " \
               f"block_size={self.block_size}, k={self.k}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        views = self._numpy()
        if views is not None and not (x2.dtype == torch.float32 and x2.device.type == "cpu"
                                      and not torch.is_grad_enabled()):
            views = None  # the numba kernels take float32 CPU inputs and feed no autograd
        if views is not None and views.codes16 is not None and x2.shape[0] <= KERNEL_MAX_TOKENS:
            y = self._kernel(x2, views)
        else:
            y = self._strips(x2, views)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*lead, self.out_features)

    def _strips(self, x: torch.Tensor, views: _Views | None) -> torch.Tensor:
        """Rebuild a strip of block rows, multiply, move on: peak extra memory is one strip.

        With `views` numba rebuilds each strip into one reused buffer, else torch (PackedMatrix.dense_rows)."""
        b, (R, C) = self.block_size, self.tiers.shape
        m = self.packed
        y = x.new_empty(x.shape[0], self.out_features)
        per = max(1, STRIP_ENTRIES // max(1, self.in_features * b))  # block rows per strip
        strip = x.new_empty(min(per, R) * b, C * b) if views is not None else None  # reused by every strip
        for r0 in range(0, R, per):
            r1 = min(R, r0 + per)
            if views is not None:
                w = strip[: (r1 - r0) * b]
                kernels.unpack_rows(r0, r1, views.tiers, views.offsets, views.dense, views.semi_values,
                                    views.semi_codes, views.topk_values, views.topk_index, w.numpy())
                y[:, r0 * b: r1 * b] = x[:, : C * b] @ w.T
                if self.edge_right is not None:
                    y[:, r0 * b: r1 * b] += x[:, C * b:] @ self.edge_right[r0 * b: r1 * b].T
            else:
                y[:, r0 * b: r1 * b] = x @ m.dense_rows(r0, r1, self.offsets).to(x.dtype).T
        if self.edge_bottom is not None:
            y[:, R * b:] = x @ self.edge_bottom.to(x.dtype).T
        return y

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - nn.Module's signature
        self._views = None  # .to() / .float() may replace the buffers: the numpy views go stale
        return super()._apply(fn, recurse)

    def _numpy(self) -> _Views | None:
        """numpy views of the buffers for the numba kernels, made once per set of buffers; None when the
        kernels cannot read them (numba missing or turned off, not float32, not on the CPU).

        A decoding step calls every layer once per token, so the per-call Python work matters: reading the
        buffers through nn.Module attributes and converting them to numpy cost ~10x the kernel itself on
        a small matrix."""
        if self._views is None:
            ok = self.use_kernel and self.dense.dtype == torch.float32 and self.dense.device.type == "cpu"
            self._views = _Views.of(self) if ok else False
        return self._views or None

    def _kernel(self, x: torch.Tensor, v: _Views) -> torch.Tensor:
        b, (R, C) = self.block_size, self.tiers.shape
        x = x.contiguous()
        rows = torch.empty(x.shape[0], R * b)  # contiguous, so the kernel is compiled for one layout only
        kernels.matvec16(x.numpy(), v.offsets, v.cols, v.dense, v.semi_values, v.codes16, v.topk_values,
                         v.topk_index, rows.numpy())
        if self.edge_right is not None:
            rows += x[:, C * b:] @ self.edge_right.T
        if self.edge_bottom is None:
            return rows
        return torch.cat([rows, x @ self.edge_bottom.T], dim=1)


@dataclass(frozen=True)
class _Views:
    """numpy views (no copies) of a TieredLinear's float32 CPU buffers, as the numba kernels take them."""

    tiers: np.ndarray
    offsets: np.ndarray
    dense: np.ndarray
    semi_values: np.ndarray
    semi_codes: np.ndarray  # uint8, the file's layout (unpack_rows)
    topk_values: np.ndarray
    topk_index: np.ndarray
    cols: np.ndarray | None  # the decoding kernel's column order (block size 16 only)
    codes16: np.ndarray | None  # semi_codes as one uint16 per block row (the decoding kernel)

    @classmethod
    def of(cls, layer: TieredLinear) -> _Views:
        codes = layer.semi_codes.numpy()
        decode = layer.cols is not None
        return cls(layer.tiers.numpy(), layer.offsets.numpy(), layer.dense.numpy(), layer.semi_values.numpy(), codes,
                   layer.topk_values.numpy(), layer.topk_index.numpy(), layer.cols.numpy() if decode else None,
                   kernels.semi_codes16(codes) if decode else None)


def _tier_ordered_columns(tiers: torch.Tensor) -> torch.Tensor:
    """[R*C] block columns, per block row sorted by (tier, column): the order the kernel reads the blocks in.

    Within one tier, blocks are stored in row-major order (format.py), so row r's DENSE blocks are
    dense[offsets[0, r]:offsets[0, r+1]] in column order, and so on for the other tiers.
    """
    R, C = tiers.shape
    key = tiers.to(torch.int64) * C + torch.arange(C)  # [R, C], distinct per row
    order = key.argsort(dim=1)
    return order.reshape(-1).to(torch.int16 if C <= torch.iinfo(torch.int16).max else torch.int32)
