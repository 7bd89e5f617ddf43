"""The size table `tierctl export` prints: packed against dense bytes, and the format's own minimum.

The minimum of a prunable matrix is what its tier map forces any encoding of the same information to
hold: every kept value (in the value dtype), a 2-bit column code per SEMI value, a ceil(log2(b*b))-bit
position per TOPK value, the partial edge strips, and 2 bits per block for the tier map itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tierctl.export import format as fmt
from tierctl.export.matrix import DENSE_T, SEMI_T, TOPK_T, PackedMatrix


def minimum_bits(m: PackedMatrix) -> int:
    """Bits of the format's minimum for one matrix, from its tier map, shape, b, k and dtype only."""
    b, k, (out, n_in) = m.block_size, m.k, m.shape
    s = torch.finfo(m.dtype).bits
    R, C = m.tiers.shape
    n_dense, n_semi, n_topk = (int((m.tiers == t).sum()) for t in (DENSE_T, SEMI_T, TOPK_T))
    edges = out * n_in - R * C * b * b
    return (2 * R * C + n_dense * b * b * s + n_semi * (b * b // 2) * (s + 2)
            + n_topk * k * (s + fmt.position_bits(b)) + edges * s)


@dataclass
class SizeReport:
    """Bytes of an export: prunable matrices packed / dense / minimum, and the whole directory."""

    weights: int  # entries of the prunable matrices
    dtype: str
    prunable_packed: int
    prunable_dense: int
    prunable_minimum: int  # bytes, rounded up
    directory_packed: int  # the files as written
    directory_dense: int  # the same directory with every tensor dense (tensor bytes + the non-tensor files)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.prunable_packed / self.weights if self.weights else 0.0

    def rows(self) -> list[tuple[str, int, int, int | None]]:
        """(what, packed bytes, dense bytes, minimum bytes or None) for the table."""
        return [("prunable", self.prunable_packed, self.prunable_dense, self.prunable_minimum),
                ("directory", self.directory_packed, self.directory_dense, None)]

    def to_json(self) -> dict[str, object]:
        return {"weights": self.weights, "dtype": self.dtype, "prunable_packed": self.prunable_packed,
                "prunable_dense": self.prunable_dense, "prunable_minimum": self.prunable_minimum,
                "directory_packed": self.directory_packed, "directory_dense": self.directory_dense,
                "bits_per_weight": round(self.bits_per_weight, 4)}


def size_report(matrices: dict[str, PackedMatrix], other_tensor_bytes: int, packed_file_bytes: int,
                other_file_bytes: int) -> SizeReport:
    """The report of a packed export; `other_*`: bytes of the unpruned tensors and of the non-tensor files."""
    weights = sum(m.shape[0] * m.shape[1] for m in matrices.values())
    dtype = next(iter(matrices.values())).dtype if matrices else torch.float32
    elt = torch.finfo(dtype).bits // 8
    minimum = sum(minimum_bits(m) for m in matrices.values())
    return SizeReport(weights=weights, dtype=fmt.DTYPE_NAMES[dtype],
                      prunable_packed=sum(m.nbytes() for m in matrices.values()),
                      prunable_dense=weights * elt, prunable_minimum=(minimum + 7) // 8,
                      directory_packed=packed_file_bytes + other_file_bytes,
                      directory_dense=weights * elt + other_tensor_bytes + other_file_bytes)
