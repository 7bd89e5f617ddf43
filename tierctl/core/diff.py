"""Comparing two sets of tier maps (`tierctl diff A B`, docs/cli.md; the dashboard's diff screen).

Per matrix, the 3x3 transition counts `M[i][j]` = blocks of tier `i` in A and tier `j` in B
(0 DENSE, 1 SEMI, 2 TOPK), from which follow blocks moved (off the diagonal), agreement (share on
the diagonal) and promotions (below the diagonal: a block denser in B than in A, which cannot
happen from an earlier to a later iteration of one campaign, so it is flagged). Matrices are also
summed by kind (q, k, v, o, gate, up, down: the last name component without `_proj`) and by depth
(the decoder layer index in the name).

numpy only: tier maps are small (`[out // b, in // b]`), and the CLI must start without torch.
Torch tensors are accepted (converted with `.numpy()`), torch is never imported.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tierctl.errors import BadInput

KIND_ORDER = ("q", "k", "v", "o", "gate", "up", "down")


# --- names ------------------------------------------------------------------------------------------


def matrix_kind(name: str) -> str:
    """`model.layers.3.mlp.down_proj` -> `down`; a name outside the Llama set keeps its last component."""
    return name.rsplit(".", 1)[-1].removesuffix("_proj")


def matrix_depth(name: str) -> int | None:
    """The decoder layer index: the first all-digit component of the name (None when there is none)."""
    return next((int(p) for p in name.split(".") if p.isdigit()), None)


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key so that `layers.2` comes before `layers.10`."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _kind_key(kind: str) -> tuple[int, str]:
    return (KIND_ORDER.index(kind), "") if kind in KIND_ORDER else (len(KIND_ORDER), kind)


def matrix_order_key(name: str) -> tuple[Any, ...]:
    """Model order: by decoder layer, then q k v o gate up down, then by name (`layers.2` before `layers.10`)."""
    depth = matrix_depth(name)
    return (depth is None, depth or 0, _kind_key(matrix_kind(name)), natural_key(name))


# --- counts -----------------------------------------------------------------------------------------


def transition_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int64 [3, 3]: `M[i, j]` = number of positions with tier i in `a` and tier j in `b` (same shape)."""
    codes = a.astype(np.intp, copy=False).ravel() * 3 + b.astype(np.intp, copy=False).ravel()  # 0..8
    return np.bincount(codes, minlength=9).astype(np.int64).reshape(3, 3)


@dataclass(frozen=True, eq=False)
class Transitions:
    """A 3x3 transition count matrix and what it says."""

    counts: np.ndarray  # int64 [3, 3], tier in A x tier in B

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def _key(self) -> tuple[Any, ...]:
        return (self.counts.tolist(),)

    @property
    def blocks(self) -> int:
        return int(self.counts.sum())

    @property
    def moved(self) -> int:
        return self.blocks - int(np.trace(self.counts))

    @property
    def agreement(self) -> float:
        """Share of blocks with the same tier in A and B (1.0 when there are no blocks)."""
        return float(np.trace(self.counts)) / self.blocks if self.blocks else 1.0

    @property
    def promotions(self) -> int:
        """Blocks denser in B than in A (below the diagonal)."""
        return int(np.tril(self.counts, -1).sum())

    def __add__(self, other: Transitions) -> Transitions:
        return Transitions(self.counts + other.counts)

    def to_json(self) -> dict[str, Any]:
        return {"transitions": self.counts.tolist(), "blocks": self.blocks, "moved": self.moved,
                "agreement": self.agreement, "promotions": self.promotions}


def _zero() -> Transitions:
    return Transitions(np.zeros((3, 3), dtype=np.int64))


@dataclass(frozen=True, eq=False)
class MatrixDiff(Transitions):
    """The transitions of one matrix, with the name's kind and depth."""

    name: str = ""
    shape: tuple[int, int] = (0, 0)  # blocks [out // b, in // b]

    def _key(self) -> tuple[Any, ...]:
        return (self.counts.tolist(), self.name, self.shape)

    @property
    def kind(self) -> str:
        return matrix_kind(self.name)

    @property
    def depth(self) -> int | None:
        return matrix_depth(self.name)

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "kind": self.kind, "depth": self.depth, "shape": list(self.shape)}


@dataclass
class TierDiff:
    """Every compared matrix in model order (`matrix_order_key`), with totals and groupings."""

    matrices: dict[str, MatrixDiff]
    label_a: str = "A"
    label_b: str = "B"
    meta_a: dict[str, Any] = field(default_factory=dict)
    meta_b: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> Transitions:
        return sum(self.matrices.values(), _zero())

    @property
    def promoted(self) -> list[str]:
        """Names of matrices with at least one promoted block (should be empty inside one campaign)."""
        return [n for n, m in self.matrices.items() if m.promotions]

    def by_kind(self) -> dict[str, Transitions]:
        """Summed per matrix kind, q k v o gate up down first, then other kinds by name."""
        out: dict[str, Transitions] = {}
        for m in self.matrices.values():
            out[m.kind] = out.get(m.kind, _zero()) + m
        return {k: out[k] for k in sorted(out, key=_kind_key)}

    def by_depth(self) -> dict[int | None, Transitions]:
        """Summed per decoder layer, shallow to deep; matrices without a layer index last (key None)."""
        out: dict[int | None, Transitions] = {}
        for m in self.matrices.values():
            out[m.depth] = out.get(m.depth, _zero()) + m
        return {d: out[d] for d in sorted(out, key=lambda d: (d is None, d or 0))}

    def to_json(self) -> dict[str, Any]:
        """docs/cli.md: `{"layers": {name: {"transitions": M}}, "total": {"transitions": M}}`, plus
        per-entry blocks/moved/agreement/promotions, `by_kind`, `by_depth` and what A and B are."""
        return {
            "a": {"label": self.label_a, **self.meta_a},
            "b": {"label": self.label_b, **self.meta_b},
            "layers": {n: m.to_json() for n, m in self.matrices.items()},
            "total": self.total.to_json(),
            "by_kind": {k: t.to_json() for k, t in self.by_kind().items()},
            "by_depth": {("none" if d is None else str(d)): t.to_json() for d, t in self.by_depth().items()},
            "promoted": self.promoted,
        }


# --- comparing --------------------------------------------------------------------------------------


def _as_tier_map(x: Any, label: str, name: str) -> np.ndarray:
    """A 2-D integer numpy array of tiers 0..2; torch tensors converted without importing torch."""
    if not isinstance(x, np.ndarray) and hasattr(x, "numpy"):
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else x.numpy()
    a = np.asarray(x)
    if a.ndim != 2:
        raise BadInput(f"{label}: {name} has {a.ndim} dimensions, expected a 2-D tier map")
    if a.dtype.kind not in "uib":
        raise BadInput(f"{label}: {name} is {a.dtype}, expected integer tiers (uint8)")
    if a.size and (int(a.min()) < 0 or int(a.max()) > 2):
        bad = int(a.max()) if int(a.max()) > 2 else int(a.min())
        raise BadInput(f"{label}: {name} holds tier {bad}, expected 0 (dense), 1 (2:4) or 2 (top-k)")
    return a


def _int_meta(meta: Mapping[str, Any] | None, key: str) -> int | None:
    v = (meta or {}).get(key)
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _check_same_model(a: Mapping[str, Any], b: Mapping[str, Any], meta_a: Mapping[str, Any] | None,
                      meta_b: Mapping[str, Any] | None, label_a: str, label_b: str) -> None:
    """BadInput with one line saying what differs: block size, then the set of matrices."""
    ba, bb = _int_meta(meta_a, "block_size"), _int_meta(meta_b, "block_size")
    if ba is not None and bb is not None and ba != bb:
        raise BadInput(f"block sizes differ: {label_a} has {ba}x{ba} blocks, {label_b} has {bb}x{bb}")
    only_a = sorted(set(a) - set(b), key=matrix_order_key)
    only_b = sorted(set(b) - set(a), key=matrix_order_key)
    if only_a or only_b:
        has, lacks, name = (label_a, label_b, only_a[0]) if only_a else (label_b, label_a, only_b[0])
        more = len(only_a) + len(only_b) - 1
        tail = f" (and {more} more differences)" if more else ""
        raise BadInput(f"{lacks} has no matrix {name} that {has} has ({len(a)} vs {len(b)} matrices: "
                       f"not the same model?){tail}")


def diff_tier_maps(a: Mapping[str, Any], b: Mapping[str, Any], layer: str | None = None,
                   meta_a: Mapping[str, Any] | None = None, meta_b: Mapping[str, Any] | None = None,
                   label_a: str = "A", label_b: str = "B") -> TierDiff:
    """Transitions from tier maps `a` to `b` (name -> 2-D tier map), optionally only matrices whose
    name matches the glob `layer`. Maps of different models, shapes or block sizes are refused."""
    if not a:
        raise BadInput(f"{label_a}: holds no tier maps")
    if not b:
        raise BadInput(f"{label_b}: holds no tier maps")
    _check_same_model(a, b, meta_a, meta_b, label_a, label_b)
    names = sorted(a, key=matrix_order_key)
    if layer is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, layer)]
        if not names:
            example = min(a, key=matrix_order_key)
            raise BadInput(f"--layer {layer}: matches no matrix (names look like {example})")
    out: dict[str, MatrixDiff] = {}
    for name in names:
        ma, mb = _as_tier_map(a[name], label_a, name), _as_tier_map(b[name], label_b, name)
        if ma.shape != mb.shape:
            raise BadInput(f"{name}: tier maps differ in shape: {label_a} is {ma.shape[0]}x{ma.shape[1]} blocks, "
                           f"{label_b} is {mb.shape[0]}x{mb.shape[1]}")
        out[name] = MatrixDiff(transition_matrix(ma, mb), name=name, shape=(int(ma.shape[0]), int(ma.shape[1])))
    return TierDiff(out, label_a, label_b, dict(meta_a or {}), dict(meta_b or {}))
