"""A numba kernel for `x @ W.T` straight from the packed tensors (the optional extra `tierctl[fast]`).

One pass over the packed bytes per call: each block row of the output is computed by one thread from its
DENSE blocks (a b x b product), SEMI blocks (2 values and their 2-bit column codes per group of 4) and TOPK
blocks (k values at 8-bit positions). Batch-1 decoding reads every weight once per token, so reading
fewer bytes is what makes it fast. `unpack_rows` rebuilds a strip of block rows into a reused buffer, for
many tokens (prefill), where BLAS on the strip wins. float32 only; TieredLinear falls back to torch when
numba is missing.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - the extra is not installed
    numba = None

AVAILABLE = numba is not None


def _tiered_rows(x, tiers, offsets, dense, semi_values, semi_codes, topk_values, topk_index, y):  # pragma: no cover
    """y[:, r*b:(r+1)*b] = x[:, :C*b] @ W[r*b:(r+1)*b, :C*b].T for every block row r (full blocks only)."""
    M = x.shape[0]
    R, C = tiers.shape
    b = dense.shape[1]  # dense is [nD, b, b] even when nD == 0
    k = topk_values.shape[1]
    g4 = b // 4
    for r in numba.prange(R):
        acc = np.zeros((M, b), dtype=np.float32)
        d, s, t = offsets[0, r], offsets[1, r], offsets[2, r]
        for c in range(C):
            x0 = c * b
            tier = tiers[r, c]
            if tier == 0:
                for m in range(M):
                    for i in range(b):
                        a = np.float32(0.0)
                        for j in range(b):
                            a += dense[d, i, j] * x[m, x0 + j]
                        acc[m, i] += a
                d += 1
            elif tier == 1:
                for i in range(b):
                    for g in range(g4):
                        f = ((s * b + i) * g4 + g) * 2  # even: both codes of the group share a byte
                        byte = semi_codes[f >> 2]
                        shift = (f & 3) * 2
                        c0 = x0 + g * 4 + ((byte >> shift) & 3)
                        c1 = x0 + g * 4 + ((byte >> (shift + 2)) & 3)
                        v0 = semi_values[s, i, 2 * g]
                        v1 = semi_values[s, i, 2 * g + 1]
                        for m in range(M):
                            acc[m, i] += v0 * x[m, c0] + v1 * x[m, c1]
                s += 1
            else:
                for j in range(k):
                    p = np.int64(topk_index[t, j])
                    i = p // b
                    col = x0 + p % b
                    v = topk_values[t, j]
                    for m in range(M):
                        acc[m, i] += v * x[m, col]
                t += 1
        for m in range(M):
            for i in range(b):
                y[m, r * b + i] = acc[m, i]


def _unpack_rows(r0, r1, tiers, offsets, dense, semi_values, semi_codes, topk_values, topk_index,
                 w):  # pragma: no cover
    """w[:(r1-r0)*b, :C*b] = the full-block part of block rows r0..r1-1, rebuilt (w is zeroed here)."""
    C = tiers.shape[1]
    b = dense.shape[1]
    k = topk_values.shape[1]
    g4 = b // 4
    for r in numba.prange(r0, r1):
        base = (r - r0) * b
        for i in range(b):
            for j in range(C * b):
                w[base + i, j] = 0
        d, s, t = offsets[0, r], offsets[1, r], offsets[2, r]
        for c in range(C):
            x0 = c * b
            tier = tiers[r, c]
            if tier == 0:
                for i in range(b):
                    for j in range(b):
                        w[base + i, x0 + j] = dense[d, i, j]
                d += 1
            elif tier == 1:
                for i in range(b):
                    for g in range(g4):
                        f = ((s * b + i) * g4 + g) * 2
                        byte = semi_codes[f >> 2]
                        shift = (f & 3) * 2
                        w[base + i, x0 + g * 4 + ((byte >> shift) & 3)] = semi_values[s, i, 2 * g]
                        w[base + i, x0 + g * 4 + ((byte >> (shift + 2)) & 3)] = semi_values[s, i, 2 * g + 1]
                s += 1
            else:
                for j in range(k):
                    p = np.int64(topk_index[t, j])
                    w[base + p // b, x0 + p % b] = topk_values[t, j]
                t += 1


_jit = numba.njit(parallel=True, fastmath=True, cache=True) if AVAILABLE else None
tiered_rows = _jit(_tiered_rows) if AVAILABLE else None
unpack_rows = _jit(_unpack_rows) if AVAILABLE else None
