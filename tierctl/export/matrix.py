"""One prunable matrix in packed form: packing a weight by its tier map, checking, and unpacking it.

Pure torch. `pack_matrix` turns `(W [out, in], tier map [R, C])` into a `PackedMatrix`; `PackedMatrix.dense_rows`
rebuilds any range of block rows exactly (the whole weight, or one strip at a time for TieredLinear);
`PackedMatrix.from_tensors` checks tensors read from a file so that a corrupted file is refused instead of
giving a wrong model. Layout and bit order: tierctl/export/format.py and docs/packed-format.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tierctl.export import format as fmt

DENSE_T, SEMI_T, TOPK_T = 0, 1, 2


class PackError(ValueError):
    """The weight breaks its tier map, or packed tensors are inconsistent (the message names what)."""


@dataclass
class PackedMatrix:
    """The tensors of one packed matrix (see format.py for shapes) plus what is derived from them."""

    shape: tuple[int, int]
    block_size: int
    k: int
    tiers: torch.Tensor  # uint8 [R, C], unpacked codes (kept unpacked in memory: 1 byte per 256 weights)
    dense: torch.Tensor  # [nD, b, b]
    semi_values: torch.Tensor  # [nS, b, b/2]
    semi_codes: torch.Tensor  # uint8 [nS * b * b / 8], 2-bit codes
    topk_values: torch.Tensor  # [nT, k]
    topk_index: torch.Tensor  # uint8 | int32 [nT, k]
    edge_right: torch.Tensor | None  # [R*b, in - C*b]
    edge_bottom: torch.Tensor | None  # [out - R*b, in]

    @property
    def dtype(self) -> torch.dtype:
        return self.dense.dtype

    def offsets(self) -> torch.Tensor:
        """int64 [3, R + 1]: per tier, how many blocks of that tier come before block row r (row-major)."""
        R = self.tiers.shape[0]
        counts = torch.stack([(self.tiers == t).sum(1) for t in (DENSE_T, SEMI_T, TOPK_T)])  # [3, R]
        out = torch.zeros(3, R + 1, dtype=torch.int64)
        out[:, 1:] = counts.cumsum(1)
        return out

    def to_tensors(self, key: str) -> dict[str, torch.Tensor]:
        """The file's tensors of this matrix, named KEY + suffix."""
        out = {key + fmt.TIERS: fmt.pack_2bit(self.tiers), key + fmt.DENSE: self.dense,
               key + fmt.SEMI_VALUES: self.semi_values, key + fmt.SEMI_CODES: self.semi_codes,
               key + fmt.TOPK_VALUES: self.topk_values, key + fmt.TOPK_INDEX: self.topk_index}
        if self.edge_right is not None:
            out[key + fmt.EDGE_RIGHT] = self.edge_right
        if self.edge_bottom is not None:
            out[key + fmt.EDGE_BOTTOM] = self.edge_bottom
        return {name: t.contiguous() for name, t in out.items()}

    def nbytes(self) -> int:
        """Bytes of this matrix's tensors as stored (tier map packed)."""
        return sum(t.numel() * t.element_size() for t in self.to_tensors("").values())

    # ---- rebuilding ----

    def semi_columns(self, first: int, last: int) -> torch.Tensor:
        """int64 [last - first, b, b/2]: column inside the block of each kept value of SEMI blocks first..last-1."""
        b = self.block_size
        per_block = b * b // 8  # bytes of codes per block
        codes = fmt.unpack_2bit(self.semi_codes[first * per_block: last * per_block], (last - first) * b * b // 2)
        codes = codes.view(last - first, b, b // 4, 2).long()
        group_start = torch.arange(0, b, 4, dtype=torch.int64).view(1, 1, b // 4, 1)
        return (group_start + codes).view(last - first, b, b // 2)

    def dense_rows(self, r0: int, r1: int, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """The weight's rows r0*b .. r1*b - 1 (full-block part plus the right edge strip), rebuilt exactly."""
        b, (_, n_in) = self.block_size, self.shape
        C = self.tiers.shape[1]
        off = self.offsets() if offsets is None else offsets
        t = self.tiers[r0:r1].reshape(-1)
        blocks = torch.zeros(t.numel(), b, b, dtype=self.dtype, device=self.dense.device)
        d0, d1 = int(off[0, r0]), int(off[0, r1])
        blocks[t == DENSE_T] = self.dense[d0:d1]
        s0, s1 = int(off[1, r0]), int(off[1, r1])
        if s1 > s0:
            semi = torch.zeros(s1 - s0, b, b, dtype=self.dtype, device=blocks.device)
            semi.scatter_(2, self.semi_columns(s0, s1), self.semi_values[s0:s1])
            blocks[t == SEMI_T] = semi
        k0, k1 = int(off[2, r0]), int(off[2, r1])
        if k1 > k0:
            top = torch.zeros(k1 - k0, b * b, dtype=self.dtype, device=blocks.device)
            top.scatter_(1, self.topk_index[k0:k1].long(), self.topk_values[k0:k1])
            blocks[t == TOPK_T] = top.view(-1, b, b)
        rows = blocks.view(r1 - r0, C, b, b).transpose(1, 2).reshape((r1 - r0) * b, C * b)  # [rows, C*b]
        if self.edge_right is None:
            return rows
        return torch.cat([rows, self.edge_right[r0 * b: r1 * b]], dim=1) if n_in > C * b else rows

    def unpack(self) -> torch.Tensor:
        """The whole dense weight [out, in], bit for bit the one that was packed."""
        R = self.tiers.shape[0]
        top = self.dense_rows(0, R)
        return top if self.edge_bottom is None else torch.cat([top, self.edge_bottom], dim=0)

    # ---- reading ----

    @classmethod
    def from_tensors(cls, key: str, tensors: dict[str, torch.Tensor], shape: tuple[int, int], block_size: int,
                     k: int, dtype: torch.dtype) -> PackedMatrix:
        """Check a matrix's tensors as read from a file; PackError names the first inconsistency."""
        b, (out, n_in) = block_size, shape
        R, C = fmt.full_blocks(shape, b)

        def get(suffix: str, want_dtype: torch.dtype, want_shape: tuple[int, ...] | None) -> torch.Tensor:
            name = key + suffix
            if name not in tensors:
                raise PackError(f"tensor {name} is missing")
            t = tensors[name]
            if t.dtype != want_dtype:
                raise PackError(f"tensor {name} is {t.dtype}, expected {want_dtype}")
            if want_shape is not None and tuple(t.shape) != want_shape:
                raise PackError(f"tensor {name} has shape {list(t.shape)}, expected {list(want_shape)}")
            return t

        packed_tiers = get(fmt.TIERS, torch.uint8, ((R * C + 3) // 4,))
        codes = fmt.unpack_2bit(packed_tiers, ((R * C + 3) // 4) * 4)
        if bool((codes[R * C:] != 0).any()):
            raise PackError(f"tensor {key + fmt.TIERS}: padding bits after the last block are not zero")
        tiers = codes[: R * C]
        if tiers.numel() and int(tiers.max()) > TOPK_T:
            raise PackError(f"tensor {key + fmt.TIERS}: tier code 3 (codes are 0 dense, 1 2:4, 2 top-k)")
        nD, nS, nT = (int((tiers == t).sum()) for t in (DENSE_T, SEMI_T, TOPK_T))
        dense = get(fmt.DENSE, dtype, (nD, b, b))
        semi_values = get(fmt.SEMI_VALUES, dtype, (nS, b, b // 2))
        semi_codes = get(fmt.SEMI_CODES, torch.uint8, (nS * b * b // 8,))
        topk_values = get(fmt.TOPK_VALUES, dtype, (nT, k))
        topk_index = get(fmt.TOPK_INDEX, fmt.index_dtype(b), (nT, k))
        right = get(fmt.EDGE_RIGHT, dtype, (R * b, n_in - C * b)) if n_in > C * b and R else None
        bottom = get(fmt.EDGE_BOTTOM, dtype, (out - R * b, n_in)) if out > R * b else None
        m = cls(shape, b, k, tiers.view(R, C), dense, semi_values, semi_codes, topk_values, topk_index, right, bottom)
        if nS:
            pos = fmt.unpack_2bit(semi_codes, nS * b * b // 2).view(-1, 2)
            if bool((pos[:, 0] >= pos[:, 1]).any()):
                raise PackError(f"tensor {key + fmt.SEMI_CODES}: a group's two positions are not strictly ascending")
        if nT and k:
            idx = topk_index.long()
            if bool((idx < 0).any()) or bool((idx >= b * b).any()):
                raise PackError(f"tensor {key + fmt.TOPK_INDEX}: a position outside 0..{b * b - 1}")
            if k > 1 and bool((idx[:, 1:] <= idx[:, :-1]).any()):
                raise PackError(f"tensor {key + fmt.TOPK_INDEX}: positions of a block are not strictly ascending")
        return m


# ---- packing ----


def _kept_positions(nonzero: torch.Tensor, n: int) -> torch.Tensor:
    """int64 positions (ascending) of n kept entries along the last dim: every non-zero, then the lowest zeros."""
    length = nonzero.shape[-1]
    pos = torch.arange(length, dtype=torch.int64, device=nonzero.device)
    priority = nonzero.to(torch.int64) * length + (length - 1 - pos)  # non-zeros first, then lower positions
    return priority.topk(n, dim=-1).indices.sort(dim=-1).values


def pack_matrix(weight: torch.Tensor, tiers: torch.Tensor, block_size: int, k: int, name: str = "weight"
                ) -> PackedMatrix:
    """Pack `weight [out, in]` by its tier map `[out // b, in // b]`; PackError when a block breaks its tier.

    SEMI groups and TOPK blocks with fewer non-zeros than slots fill them with zeros at the lowest free
    positions, so packing is deterministic. Pruned entries come back as +0.0: masking by multiplication
    leaves -0.0 there, which compares equal (torch.equal) but has another sign bit.
    """
    b = block_size
    out, n_in = weight.shape
    R, C = fmt.full_blocks((out, n_in), b)
    if tuple(tiers.shape) != (R, C):
        raise PackError(f"{name}: tier map {list(tiers.shape)} does not fit a {[out, n_in]} weight in {b}x{b} blocks")
    if weight.dtype not in fmt.BITS_VIEW:
        raise PackError(f"{name}: dtype {weight.dtype} cannot be packed (float32, bfloat16, float16)")
    w = weight.detach()
    t = tiers.reshape(-1).to(torch.uint8)
    blocks = w[: R * b, : C * b].reshape(R, b, C, b).transpose(1, 2).reshape(R * C, b, b)  # row-major blocks
    nonzero = blocks != 0  # NaN counts as non-zero; -0.0 as zero (restored as +0.0: equal, sign bit lost)

    semi, semi_nz = blocks[t == SEMI_T], nonzero[t == SEMI_T]  # [nS, b, b]
    nS = semi.shape[0]
    groups_nz = semi_nz.view(nS, b, b // 4, 4)
    if nS and int(groups_nz.sum(-1).max()) > 2:
        bad = int((groups_nz.sum(-1) > 2).any(-1).any(-1).nonzero()[0, 0])
        raise PackError(f"{name}: 2:4 block #{bad} of the tier map has a group of 4 with more than 2 non-zeros")
    codes = _kept_positions(groups_nz, 2)  # [nS, b, b/4, 2], 0..3
    semi_values = semi.view(nS, b, b // 4, 4).gather(3, codes).reshape(nS, b, b // 2)

    top, top_nz = blocks[t == TOPK_T].reshape(-1, b * b), nonzero[t == TOPK_T].reshape(-1, b * b)
    if top.shape[0] and int(top_nz.sum(-1).max()) > k:
        bad = int((top_nz.sum(-1) > k).nonzero()[0, 0])
        raise PackError(f"{name}: top-k block #{bad} of the tier map has more than {k} non-zeros")
    index = _kept_positions(top_nz, k)  # [nT, k]
    return PackedMatrix(
        shape=(out, n_in), block_size=b, k=k, tiers=t.view(R, C).clone(),
        dense=blocks[t == DENSE_T].contiguous(), semi_values=semi_values.contiguous(),
        semi_codes=fmt.pack_2bit(codes), topk_values=top.gather(1, index).contiguous(),
        topk_index=index.to(fmt.index_dtype(b)),
        edge_right=w[: R * b, C * b:].contiguous() if n_in > C * b and R else None,
        edge_bottom=w[R * b:, :].contiguous() if out > R * b else None,
    )
