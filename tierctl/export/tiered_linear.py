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
        self._arrays: tuple | None = None  # numpy views of the buffers for the kernels, made once
        self._plan: tuple | None = None  # the decoding kernel's arguments (_make_plan)

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
        plan = self._plan if self._plan is not None else self._make_plan()
        if (plan and x2.shape[0] <= KERNEL_MAX_TOKENS and x2.dtype == torch.float32 and x2.device.type == "cpu"
                and not torch.is_grad_enabled()):
            y = self._kernel(x2, plan)
        else:
            y = self._strips(x2)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*lead, self.out_features)

    def _strips(self, x: torch.Tensor) -> torch.Tensor:
        """Rebuild a strip of block rows, multiply, move on: peak extra memory is one strip."""
        b, (R, C) = self.block_size, self.tiers.shape
        m = self.packed
        y = x.new_empty(x.shape[0], self.out_features)
        per = max(1, STRIP_ENTRIES // max(1, self.in_features * b))  # block rows per strip
        fast = self._fast_cpu(x)
        strip = x.new_empty(min(per, R) * b, C * b) if fast else None  # reused by every strip
        for r0 in range(0, R, per):
            r1 = min(R, r0 + per)
            if fast:
                w = strip[: (r1 - r0) * b]
                kernels.unpack_rows(r0, r1, *self._numpy()[:7], w.numpy())
                y[:, r0 * b: r1 * b] = x[:, : C * b] @ w.T
                if self.edge_right is not None:
                    y[:, r0 * b: r1 * b] += x[:, C * b:] @ self.edge_right[r0 * b: r1 * b].T
            else:
                y[:, r0 * b: r1 * b] = x @ m.dense_rows(r0, r1, self.offsets).to(x.dtype).T
        if self.edge_bottom is not None:
            y[:, R * b:] = x @ self.edge_bottom.to(x.dtype).T
        return y

    def _fast_cpu(self, x: torch.Tensor) -> bool:
        """The numba kernels apply: installed, float32 on the CPU, no autograd to feed."""
        return (self.use_kernel and x.dtype == torch.float32 and self.dense.dtype == torch.float32
                and x.device.type == "cpu" and not torch.is_grad_enabled())

    def _apply(self, fn, recurse=True):  # noqa: ANN001, ANN202 - nn.Module's signature
        self._arrays = self._plan = None  # .to() / .float() may replace the buffers: the numpy views go stale
        return super()._apply(fn, recurse)

    def _make_plan(self) -> tuple:
        """The decoding kernel's arguments, made once: () when the kernel cannot run on these buffers.

        A decoding step calls every layer once per token, so the per-call Python work matters: reading
        the buffers through nn.Module attributes and converting them to numpy cost ~10x the kernel
        itself on a small matrix.
        """
        ok = (self.cols is not None and self.dense.dtype == torch.float32 and self.dense.device.type == "cpu")
        if not ok:
            self._plan = ()
            return self._plan
        _, offsets, dense, semi_values, _, topk_values, topk_index, cols, codes16 = self._numpy()
        R, C = self.tiers.shape
        self._plan = ((offsets, cols, dense, semi_values, codes16, topk_values, topk_index), R * 16, C * 16,
                      self.edge_right, None if self.edge_bottom is None else self.edge_bottom.T)
        return self._plan

    def _numpy(self) -> tuple:
        """(tiers, offsets, dense, semi_values, semi_codes, topk_values, topk_index, cols, semi codes as uint16):
        numpy views of the buffers, made once (a per-call conversion costs more than a small matrix's product)."""
        if self._arrays is None:
            codes = self.semi_codes.numpy()
            self._arrays = (self.tiers.numpy(), self.offsets.numpy(), self.dense.numpy(), self.semi_values.numpy(),
                            codes, self.topk_values.numpy(), self.topk_index.numpy(),
                            None if self.cols is None else self.cols.numpy(),
                            kernels.semi_codes16(codes) if self.cols is not None else None)
        return self._arrays

    def _kernel(self, x: torch.Tensor, plan: tuple) -> torch.Tensor:
        arrays, n_rows, n_cols, right, bottom_t = plan
        x = x.contiguous()
        rows = torch.empty(x.shape[0], n_rows)  # contiguous, so the kernel is compiled for one layout only
        kernels.matvec16(x.numpy(), *arrays, rows.numpy())
        if right is not None:
            rows += x[:, n_cols:] @ right.T
        if bottom_t is None:
            return rows
        return torch.cat([rows, x @ bottom_t], dim=1)


def _tier_ordered_columns(tiers: torch.Tensor) -> torch.Tensor:
    """[R*C] block columns, per block row sorted by (tier, column): the order the kernel reads the blocks in.

    Within one tier, blocks are stored in row-major order (format.py), so row r's DENSE blocks are
    dense[offsets[0, r]:offsets[0, r+1]] in column order, and so on for the other tiers.
    """
    R, C = tiers.shape
    key = tiers.to(torch.int64) * C + torch.arange(C)  # [R, C], distinct per row
    order = key.argsort(dim=1)
    return order.reshape(-1).to(torch.int16 if C <= torch.iinfo(torch.int16).max else torch.int32)
