"""Keep masks as bits (core/keepbits.py): numpy.packbits' layout, and back to the same mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tierctl.core.keepbits import pack_keep, unpack_keep


@pytest.mark.parametrize("shape", [(16, 16), (7, 5), (1, 1), (3, 13)])  # 13 and 35 weights leave a partial byte
def test_the_bits_are_numpys_packbits_and_unpack_to_the_same_mask(shape):
    keep = torch.rand(shape, generator=torch.Generator().manual_seed(0)) > 0.4
    bits = pack_keep(keep)
    assert bits.dtype == torch.uint8 and bits.tolist() == np.packbits(keep.numpy().reshape(-1)).tolist()
    assert torch.equal(unpack_keep(bits, shape), keep)


def test_bits_of_another_length_are_refused_naming_what_fits():
    with pytest.raises(ValueError, match=r"^4 uint8 values cannot be the bits of a \[4, 5\] mask \(3 uint8 values\)$"):
        unpack_keep(torch.zeros(4, dtype=torch.uint8), (4, 5))
