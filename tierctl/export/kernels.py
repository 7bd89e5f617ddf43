"""numba kernels for `x @ W.T` straight from the packed tensors (the optional extra `tierctl[fast]`).

`matvec16` is the decoding kernel (block size 16, a few tokens): one pass over the packed bytes per call,
one block row of the output per task. Per block row the blocks are visited tier by tier (DENSE, then 2:4,
then TOPK; `cols` lists their block columns in that order), so the inner loops have no tier branch and
fixed trip counts the compiler unrolls:
- DENSE: 16 dot products of 16, 8 rows at a time;
- 2:4: per row of the block, its 8 two-bit column codes are read as one uint16 (4 groups x 2 codes),
  and each kept value multiplies x at group start + code;
- TOPK: k values at 8-bit positions p (row p // 16, column p % 16).
Batch-1 decoding reads every weight once per token, so reading fewer bytes is what makes it fast.
`unpack_rows` rebuilds a strip of block rows into a reused buffer, for many tokens (prefill), where BLAS
on the strip wins. float32 only; TieredLinear uses torch when numba is missing or the block size is not 16.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - the extra is not installed
    numba = None

AVAILABLE = numba is not None
PARALLEL_MIN_BLOCKS = 2048  # below this, waking a second thread costs more than it saves


def _matvec16(x, offsets, cols, dense, semi_values, semi_codes, topk_values, topk_index, y):  # pragma: no cover
    """y[m, r*16:(r+1)*16] = W[r*16:(r+1)*16, :C*16] @ x[m, :C*16] for every block row r and token m.

    x [M, in] f32, offsets int64 [3, R+1], cols int16|int32 [R*C], dense [nD, 16, 16], semi_values
    [nS, 16, 8], semi_codes uint16 [nS*16] (row i of 2:4 block s: codes of its 8 kept values, 2 bits each,
    first in the low bits), topk_values [nT, k], topk_index uint8 [nT, k] (ascending), y [M, R*16].
    Written for the compiler: block-local views, and 8 (DENSE) or 4 (2:4) independent sums in flight,
    which it keeps in registers; one running sum per block row and row (acc) would serialise every add.
    """
    M = x.shape[0]
    R = offsets.shape[1] - 1
    k = topk_values.shape[1]
    for r in numba.prange(R):
        d0, d1 = offsets[0, r], offsets[0, r + 1]
        s0, s1 = offsets[1, r], offsets[1, r + 1]
        t0, t1 = offsets[2, r], offsets[2, r + 1]
        first = d0 + s0 + t0  # blocks of the rows above: where row r's columns start in cols
        acc = np.zeros(16, dtype=np.float32)
        for m in range(M):
            acc[:] = 0
            xm = x[m]
            q = first
            for d in range(d0, d1):  # DENSE: 16 dot products of 16, 8 rows at a time
                x0 = np.int64(cols[q]) * 16
                q += 1
                xs = xm[x0:x0 + 16]
                blk = dense[d]
                for i in range(0, 16, 8):
                    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float32(0.0)
                    for j in range(16):
                        xj = xs[j]
                        a0 += blk[i, j] * xj
                        a1 += blk[i + 1, j] * xj
                        a2 += blk[i + 2, j] * xj
                        a3 += blk[i + 3, j] * xj
                        a4 += blk[i + 4, j] * xj
                        a5 += blk[i + 5, j] * xj
                        a6 += blk[i + 6, j] * xj
                        a7 += blk[i + 7, j] * xj
                    acc[i] += a0
                    acc[i + 1] += a1
                    acc[i + 2] += a2
                    acc[i + 3] += a3
                    acc[i + 4] += a4
                    acc[i + 5] += a5
                    acc[i + 6] += a6
                    acc[i + 7] += a7
            for s in range(s0, s1):  # 2:4: group g of row i keeps columns 4g + code
                x0 = np.int64(cols[q]) * 16
                q += 1
                xs = xm[x0:x0 + 16]
                blk = semi_values[s]
                codes = semi_codes[s * 16:(s + 1) * 16]
                for i in range(16):
                    w = np.int64(codes[i])
                    v = blk[i]
                    g0 = v[0] * xs[w & 3] + v[1] * xs[(w >> 2) & 3]
                    g1 = v[2] * xs[4 + ((w >> 4) & 3)] + v[3] * xs[4 + ((w >> 6) & 3)]
                    g2 = v[4] * xs[8 + ((w >> 8) & 3)] + v[5] * xs[8 + ((w >> 10) & 3)]
                    g3 = v[6] * xs[12 + ((w >> 12) & 3)] + v[7] * xs[12 + ((w >> 14) & 3)]
                    acc[i] += (g0 + g1) + (g2 + g3)
            for t in range(t0, t1):  # TOPK: positions ascend, so a row's values are consecutive
                x0 = np.int64(cols[q]) * 16
                q += 1
                if k == 0:
                    continue
                row = np.int64(topk_index[t, 0]) >> 4
                a = np.float32(0.0)
                for j in range(k):
                    p = np.int64(topk_index[t, j])
                    if p >> 4 != row:
                        acc[row] += a
                        row = p >> 4
                        a = np.float32(0.0)
                    a += topk_values[t, j] * xm[x0 + (p & 15)]
                acc[row] += a
            for i in range(16):
                y[m, r * 16 + i] = acc[i]


def _unpack_rows(r0, r1, tiers, offsets, dense, semi_values, semi_codes, topk_values, topk_index,
                 w):  # pragma: no cover
    """w[:(r1-r0)*b, :C*b] = the full-block part of block rows r0..r1-1, rebuilt (w is zeroed here).

    semi_codes here is the file's uint8 layout (any block size): code f in bits 2*(f%4) of byte f//4.
    """
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
                        f = ((s * b + i) * g4 + g) * 2  # even: both codes of the group share a byte
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


if AVAILABLE:
    _matvec16_parallel = numba.njit(parallel=True, fastmath=True, cache=True)(_matvec16)
    _matvec16_serial = numba.njit(fastmath=True, cache=True)(_matvec16)
    unpack_rows = numba.njit(parallel=True, fastmath=True, cache=True)(_unpack_rows)
else:  # pragma: no cover
    _matvec16_parallel = _matvec16_serial = unpack_rows = None


def matvec16(x, offsets, cols, dense, semi_values, semi_codes, topk_values, topk_index, y) -> None:
    """The decoding kernel, on both cores for a large matrix and on one for a small one."""
    big = cols.shape[0] >= PARALLEL_MIN_BLOCKS
    (_matvec16_parallel if big else _matvec16_serial)(x, offsets, cols, dense, semi_values, semi_codes,
                                                      topk_values, topk_index, y)


def semi_codes16(semi_codes: np.ndarray) -> np.ndarray:
    """The file's 2:4 codes (uint8, 4 per byte) for block size 16 seen as one uint16 per block row.

    Row i of 2:4 block s holds 16 / 4 * 2 = 8 codes = 16 bits at bytes 2 * (s*16 + i) .. +1; read little-
    endian, code c of that row sits at bits 2c, as in the file. A view: no copy, no extra bytes.
    """
    return semi_codes.view("<u2")
