"""Noise records: the directions εₖ of one leaf, and every operation that depends on the leaf's kind.

A perturbed leaf's noise is one record; a frozen leaf has none. Everything else in the package asks the
record, so adding a kind (an int8 leaf with integer factors, say) is one new record class here and one
entry in `NOISE_TYPES`. Each record offers

    draw(xp, plan, stream, directions, rank, noise, dtype, dev)   the record of `directions` (classmethod)
    direction(xp, plan, index)       εₖ of row `index`, in the leaf's shape
    dense(xp, plan)                  every εₖ as (D, *shape), where that is not a waste (full-rank leaves)
    products(xp, plan, x, c)         c · x εₖᵀ per direction: x (D, rows, n) or shared (rows, n) → (D, rows, m)
    rows(xp, ids, c, per_direction)  c · εₖ[ids] per direction: ids (D, rows) or shared (rows,) → (D, rows, d)
    gradient(xp, plan, w, scale)     scale · Σₖ wₖ εₖ, in the leaf's shape
    fast_linear(xp)                  a backend fast path of the population's linear, or None

where c is a number or an array broadcasting against (D, rows, 1): σ, or σ·sᵢ per row.

- `LowRankNoise` (kind `lowrank`, a leaf viewed as (m, n)): εₖ = (1/√r) Aₖ Bₖᵀ with Aₖ (m, r), Bₖ (n, r),
  entries iid N(0, 1) (or ±1 with noise="rademacher"), so every entry of εₖ has variance 1.
- `FullNoise` (kind `full`): εₖ iid N(0, 1) of the leaf's shape.
- `IntegerNoise` (kind `int8`, an int8 leaf (m, n)): εₖ = Aₖ Bₖᵀ with integer factors, entries
  popcount − 16 of one Philox word each (`integer`); its forward pass and update are integer arithmetic.

Every record also offers `member_leaf(xp, plan, theta, index, c)`: θ + c εₖ of row `index`.

Direction k of a leaf is the stream (seed, epoch, leaf id), row k: its first m·r elements are the r columns
of Aₖ, m consecutive elements each, the next n·r the r columns of Bₖ, so that εₖ = (1/√r) Σⱼ aⱼ bⱼᵀ reads
each rank-1 term from two contiguous runs (and the forward pass multiplies by contiguous Aₖᵀ); a full
leaf's εₖ is its first size elements.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from . import random
from ._array_api import device, is_cupy_namespace, is_numpy_namespace, prod
from .leaves import FULL, INT8, LOWRANK, LeafPlan

__all__ = ["NOISE_KINDS", "NOISE_TYPES", "FullNoise", "IntegerNoise", "LowRankNoise", "leaf_noise", "trainable"]

NOISE_KINDS = ("gaussian", "rademacher")


def _gather(xp, table, ids, per_direction: bool):
    """Rows of a (D, V, w) table per direction: ids (D, c) picks row ids[k, j] of direction k; shared ids
    (c,) pick the same rows of every direction. Returns (D, c, w)."""
    if not per_direction:
        return xp.take(table, ids, axis=1)
    directions, vocabulary, width = table.shape
    offsets = xp.reshape(xp.arange(directions, dtype=ids.dtype, device=device(ids)), (-1, 1))
    flat = xp.reshape(ids + offsets * vocabulary, (-1,))
    picked = xp.take(xp.reshape(table, (directions * vocabulary, width)), flat, axis=0)
    return xp.reshape(picked, (directions, ids.shape[1], width))


class LowRankNoise(NamedTuple):
    """Factors of D directions of a low-rank leaf: A (D, m, r), B (D, n, r), each stored column by column
    (A's transpose (D, r, m) is the contiguous one). r is the factors' last axis."""

    A: Any
    B: Any

    @classmethod
    def draw(cls, xp, plan: LeafPlan, stream, directions: range, rank: int, noise: str, dtype, dev):
        m, n = plan.matrix_shape
        kind = "normal" if noise == "gaussian" else "rademacher"
        draws = random.draw(xp, kind, stream, directions, (m + n) * rank, dtype=dtype, dev=dev)
        d = len(directions)
        columns_a = xp.reshape(draws[:, : m * rank], (d, rank, m))
        columns_b = xp.reshape(draws[:, m * rank :], (d, rank, n))
        return cls(A=xp.matrix_transpose(columns_a), B=xp.matrix_transpose(columns_b))

    def _root_rank(self) -> float:
        return math.sqrt(self.A.shape[-1])

    def direction(self, xp, plan: LeafPlan, index: int):
        """εₖ = (1/√r) Aₖ Bₖᵀ of row `index`, in the leaf's shape."""
        a, b = self.A[index, ...], self.B[index, ...]
        return xp.reshape((a @ xp.matrix_transpose(b)) * (1.0 / self._root_rank()), plan.shape)

    def dense(self, xp, plan: LeafPlan):
        raise ValueError(
            f"the members of low-rank leaf {plan.name!r} would be N dense matrices; use linear or embedding for it"
        )

    def member_leaf(self, xp, plan: LeafPlan, theta, index: int, c):
        """θ + c εₖ of row `index`."""
        return theta + c * self.direction(xp, plan, index)

    def products(self, xp, plan: LeafPlan, x, c):
        """c · x εₖᵀ = ((c/√r) · x Bₖ) Aₖᵀ: the small (rows, r) factor is scaled, never the output."""
        return ((x @ self.B) * (c / self._root_rank())) @ xp.matrix_transpose(self.A)

    def rows(self, xp, ids, c, per_direction: bool):
        """c · εₖ[ids] = ((c/√r) · Aₖ[ids]) Bₖᵀ."""
        return (_gather(xp, self.A, ids, per_direction) * (c / self._root_rank())) @ xp.matrix_transpose(self.B)

    def gradient(self, xp, plan: LeafPlan, w, scale: float):
        """scale · Σₖ wₖ εₖ = (scale/√r) · Ãᵀ B̃, Ã = stack of wₖ Aₖ (D·r, m), B̃ = stack of Bₖ (D·r, n): one
        GEMM contracting (direction, rank), of rank min(D·r, m, n)."""
        weighted = self.A * xp.reshape(w * (scale / self._root_rank()), (w.shape[0], 1, 1))
        return xp.reshape(xp.tensordot(weighted, self.B, axes=((0, 2), (0, 2))), plan.shape)

    def fast_linear(self, xp):
        """The in-place NumPy path or the fused CuPy kernels of the population's linear (see forward)."""
        if is_numpy_namespace(xp):
            from ._forward_numpy import lowrank_linear_numpy

            return lowrank_linear_numpy
        if is_cupy_namespace(xp):
            from ._forward_cupy import lowrank_linear_cupy

            return lowrank_linear_cupy
        return None


class FullNoise(NamedTuple):
    """D directions of a full-rank leaf: E (D, *shape)."""

    E: Any

    @classmethod
    def draw(cls, xp, plan: LeafPlan, stream, directions: range, rank: int, noise: str, dtype, dev):
        draws = random.draw(xp, "normal", stream, directions, prod(plan.shape), dtype=dtype, dev=dev)
        return cls(E=xp.reshape(draws, (len(directions), *plan.shape)))

    def direction(self, xp, plan: LeafPlan, index: int):
        """εₖ = Eₖ."""
        return self.E[index, ...]

    def dense(self, xp, plan: LeafPlan):
        """E (D, *shape)."""
        return self.E

    def member_leaf(self, xp, plan: LeafPlan, theta, index: int, c):
        """θ + c Eₖ."""
        return theta + c * self.direction(xp, plan, index)

    def _matrices(self, xp, plan: LeafPlan):
        """E as (D, m, n), the matrices a ≥2-D leaf multiplies as."""
        if len(plan.shape) == 2:
            return self.E
        return xp.reshape(self.E, (self.E.shape[0], plan.shape[0], prod(plan.shape[1:])))

    def products(self, xp, plan: LeafPlan, x, c):
        """c · x Eₖᵀ = (c · x) Eₖᵀ: the input is scaled, not the output."""
        return (x * c) @ xp.matrix_transpose(self._matrices(xp, plan))

    def rows(self, xp, ids, c, per_direction: bool):
        """c · Eₖ[ids]."""
        return _gather(xp, self.E, ids, per_direction) * c

    def gradient(self, xp, plan: LeafPlan, w, scale: float):
        """scale · Σₖ wₖ Eₖ as one weighted reduction over the directions."""
        return xp.tensordot(w * scale, self.E, axes=1)

    def fast_linear(self, xp):
        return None


class IntegerNoise(NamedTuple):
    """Integer factors of D directions of an int8 leaf: A (D, m, r), B (D, n, r), int8 entries in [−16, 16]."""

    A: Any
    B: Any

    @classmethod
    def draw(cls, xp, plan: LeafPlan, stream, directions: range, rank: int, noise: str, dtype, dev):
        from .integer import integer_factors

        m, n = plan.matrix_shape
        draws = integer_factors(xp, stream, directions, (m + n) * rank, dev)
        d = len(directions)
        columns_a = xp.reshape(draws[:, : m * rank], (d, rank, m))
        columns_b = xp.reshape(draws[:, m * rank :], (d, rank, n))
        return cls(A=xp.matrix_transpose(columns_a), B=xp.matrix_transpose(columns_b))

    def direction(self, xp, plan: LeafPlan, index: int):
        """εₖ = Aₖ Bₖᵀ of row `index` as int32, in the leaf's shape."""
        a, b = xp.astype(self.A[index, ...], xp.int32), xp.astype(self.B[index, ...], xp.int32)
        return xp.reshape(a @ xp.matrix_transpose(b), plan.shape)

    def member_leaf(self, xp, plan: LeafPlan, theta, index: int, c):
        """Wᵢ = W + c Aₖ Bₖᵀ as float32 (exact: c = ±2^−σ̂ and every value has at most 24 significant bits)."""
        return xp.astype(theta, xp.float32) + c * xp.astype(self.direction(xp, plan, index), xp.float32)

    def dense(self, xp, plan: LeafPlan):
        raise ValueError(f"the members of int8 leaf {plan.name!r} would be N dense matrices; use linear for it")

    def products(self, xp, plan: LeafPlan, x, c):
        raise ValueError(f"int8 leaf {plan.name!r} multiplies only through the integer forward pass (linear)")

    def rows(self, xp, ids, c, per_direction: bool):
        raise ValueError("an int8 table's rows come from the integer forward pass (embedding)")

    def gradient(self, xp, plan: LeafPlan, w, scale: float):
        """E = Σₖ wₖ Aₖ Bₖᵀ, the integer estimate (`integer.direction_estimate`; `scale` does not apply: the
        thresholded update is scale-free)."""
        from .integer import direction_estimate

        return xp.reshape(direction_estimate(xp, self.A, self.B, w), plan.shape)

    def fast_linear(self, xp):
        return None


NOISE_TYPES = {LOWRANK: LowRankNoise, FULL: FullNoise, INT8: IntegerNoise}


def trainable(plans) -> list[str]:
    """The names of the leaves that are perturbed and updated: those whose kind has a noise record."""
    return [name for name, plan in plans.items() if plan.kind in NOISE_TYPES]


def leaf_noise(xp, plan: LeafPlan, *, seed: int, epoch: int, directions: range, rank: int, noise: str, dtype, dev):
    """The noise record of `directions` of one leaf, from the stream (seed, epoch, leaf id)."""
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise={noise!r} must be one of {', '.join(map(repr, NOISE_KINDS))}")
    if plan.kind not in NOISE_TYPES:
        raise ValueError(f"leaf {plan.name!r} is {plan.kind} and has no noise")
    stream = random.derive_key(seed, epoch, plan.stream)
    return NOISE_TYPES[plan.kind].draw(xp, plan, stream, directions, rank, noise, dtype, dev)
