"""The batched perturbed forward pass: every member's product with its perturbed leaf, never forming one.

Members are grouped by direction: with antithetic pairs, members 2k and 2k+1 share direction k, so any
per-member array (N, ...) is viewed as (D, P·..., ...) with P = 2 members per direction (signs +1, −1), or
P = 1 without pairs. For member i with direction k and sign s:

    low-rank leaf W (m, n):  yᵢ = xᵢ Wᵀ + (σ s/√r) (xᵢ Bₖ) Aₖᵀ     one shared GEMM + a rank-r correction
    full-rank leaf W:        yᵢ = xᵢ Wᵀ + σ s xᵢ Eₖᵀ
    frozen leaf W:           yᵢ = xᵢ Wᵀ
    embedding rows:          W[ids] + (σ s/√r) Aₖ[ids] Bₖᵀ  (low rank),  W[ids] + σ s Eₖ[ids]  (full rank)

Inputs are per member, x of shape (N, ..., n), or shared by all members, x of shape (..., n): then x Wᵀ
and x Bₖ are computed once per direction, and a pair's outputs are base ± correction. Nothing here
allocates O(N·m·n): the largest arrays are the inputs, the outputs and one correction of the output's size.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ._array_api import dtype_name, index_dtype, is_cupy_namespace, is_numpy_namespace, prod
from .noise import FROZEN, LeafPlan, LowRankNoise

__all__ = ["Members", "embedding", "is_per_member", "linear", "linear_portable", "vector"]


class Members(NamedTuple):
    """What the forward pass needs to know of a population: N, pairing, σ and r."""

    size: int
    antithetic: bool
    sigma: float
    rank: int

    @property
    def per_direction(self) -> int:
        """P: members per direction."""
        return 2 if self.antithetic else 1

    @property
    def directions(self) -> int:
        """D = N / P."""
        return self.size // self.per_direction


def is_per_member(x_shape: tuple, population_size: int, shared: bool | None, what: str, min_ndim: int = 2) -> bool:
    """Whether an input holds one slice per member: as `shared` says, or, when it is None, whether it has
    at least `min_ndim` axes, the first of size N (so a shared input with exactly N rows needs shared=True).
    Inputs of `linear` have a feature axis (min_ndim 2); ids of `embedding` do not (min_ndim 1)."""
    if shared is None:
        return len(x_shape) >= min_ndim and x_shape[0] == population_size
    if not shared and (len(x_shape) < min_ndim or x_shape[0] != population_size):
        raise ValueError(
            f"{what} has shape {x_shape}; with shared=False its leading axis must be the population ({population_size})"
        )
    return not shared


def _signed(xp, y, members: Members, scale: float):
    """Multiply the P member slots of a (D, P·c, ...) array by scale·(+1, −1), or by scale when P = 1."""
    if members.per_direction == 1:
        return y * scale
    paired = xp.reshape(y, (y.shape[0], 2, y.shape[1] // 2, *y.shape[2:]))
    signs = xp.asarray([scale, -scale], dtype=y.dtype, device=y.device)
    return xp.reshape(paired * xp.reshape(signs, (1, 2, *([1] * (y.ndim - 1)))), y.shape)


def _pair_outputs(xp, base, correction, members: Members):
    """Outputs of a shared input, (D, P, ...): base + correction, and base − correction for the partner."""
    if members.per_direction == 1:
        return base + correction
    return xp.stack([base + correction, base - correction], axis=1)


def _as_matrix(xp, plan: LeafPlan, value, leading: int = 0):
    """A leaf (or a stack of `leading`-axis copies of it) as the (m, n) matrix it multiplies as."""
    shape = tuple(value.shape)
    if len(shape) - leading == 2:
        return value
    return xp.reshape(value, (*shape[:leading], plan.shape[0], prod(plan.shape[1:])))


def _scale(noise, sigma: float, rank: int) -> float:
    """σ/√r for low-rank noise, σ for full-rank noise."""
    return sigma / math.sqrt(rank) if isinstance(noise, LowRankNoise) else sigma


def _direction_products(xp, plan: LeafPlan, noise, x):
    """Per direction k, x εₖᵀ up to its scale: (x Bₖ) Aₖᵀ or x Eₖᵀ. x is (D, c, n), rows per direction, or
    (c, n), rows shared by every direction; the result is (D, c, m)."""
    if isinstance(noise, LowRankNoise):
        return (x @ noise.B) @ xp.matrix_transpose(noise.A)
    return x @ xp.matrix_transpose(_as_matrix(xp, plan, noise.E, leading=1))


def _linear_layout(xp, plan: LeafPlan, value, x, members: Members, shared: bool | None):
    """Check a linear call; return (W as (m, n), per_member, the input's middle axes)."""
    if len(plan.shape) < 2:
        raise ValueError(f"linear needs a leaf with at least 2 dimensions; {plan.name!r} has shape {plan.shape}")
    weight = _as_matrix(xp, plan, value)
    n = weight.shape[1]
    if x.ndim < 1 or x.shape[-1] != n:
        raise ValueError(f"linear({plan.name!r}) multiplies inputs of last axis {n}; got shape {tuple(x.shape)}")
    per_member = is_per_member(tuple(x.shape), members.size, shared, f"the input of linear({plan.name!r})")
    return weight, per_member, tuple(x.shape[1:-1] if per_member else x.shape[:-1])


def linear(xp, plan: LeafPlan, value, noise, x, members: Members, *, shared: bool | None = None):
    """yᵢ = xᵢ Wᵢᵀ for every member i, with Wᵢ = W + σ sᵢ ε_{k(i)} never formed; on NumPy, low-rank leaves
    take the in-place fast path of `_forward_numpy`, on CuPy the fused kernels of `_forward_cupy`.

    x: (N, ..., n) per member or (..., n) shared; returns (N, ..., m)."""
    if isinstance(noise, LowRankNoise) and (is_numpy_namespace(xp) or is_cupy_namespace(xp)):
        weight, per_member, middle = _linear_layout(xp, plan, value, x, members, shared)
        if is_numpy_namespace(xp):
            from ._forward_numpy import lowrank_linear_numpy as fast_path
        else:
            from ._forward_cupy import lowrank_linear_cupy as fast_path
        scale = _scale(noise, members.sigma, members.rank)
        y = fast_path(x, weight, noise, members.per_direction, scale, per_member, prod(middle))
        return xp.reshape(y, (members.size, *middle, weight.shape[0]))
    return linear_portable(xp, plan, value, noise, x, members, shared=shared)


def linear_portable(xp, plan: LeafPlan, value, noise, x, members: Members, *, shared: bool | None = None):
    """`linear` in array-API operations only."""
    weight, per_member, middle = _linear_layout(xp, plan, value, x, members, shared)
    m, n = weight.shape
    rows = prod(middle)
    out_shape = (members.size, *middle, m)
    weight_t = xp.matrix_transpose(weight)
    if per_member:
        base = xp.reshape(x, (members.size * rows, n)) @ weight_t
        if plan.kind != FROZEN:
            grouped = xp.reshape(x, (members.directions, members.per_direction * rows, n))
            correction = _direction_products(xp, plan, noise, grouped)
            correction = _signed(xp, correction, members, _scale(noise, members.sigma, members.rank))
            base = base + xp.reshape(correction, (members.size * rows, m))
        return xp.reshape(base, out_shape)
    flat = xp.reshape(x, (rows, n))
    base = flat @ weight_t
    if plan.kind == FROZEN:
        return xp.broadcast_to(xp.reshape(base, (1, *middle, m)), out_shape)
    correction = _direction_products(xp, plan, noise, flat) * _scale(noise, members.sigma, members.rank)
    return xp.reshape(_pair_outputs(xp, base, correction, members), out_shape)


def vector(xp, plan: LeafPlan, value, noise, members: Members):
    """(N, *shape): θ + σ sᵢ ε_{k(i)} of a full-rank or frozen leaf for every member (frozen: a broadcast view)."""
    out_shape = (members.size, *plan.shape)
    if plan.kind == FROZEN:
        return xp.broadcast_to(xp.reshape(value, (1, *plan.shape)), out_shape)
    if isinstance(noise, LowRankNoise):
        raise ValueError(
            f"vector({plan.name!r}) would form N dense low-rank matrices; use linear or embedding for this leaf"
        )
    perturbation = _pair_outputs(xp, 0.0, noise.E * members.sigma, members)
    return xp.reshape(value + xp.reshape(perturbation, out_shape), out_shape)


def embedding(xp, plan: LeafPlan, value, noise, ids, members: Members, *, shared: bool | None = None):
    """Rows `ids` of every member's table Wᵢ (V, d) without forming it: ids (N, ...) per member or (...)
    shared, integers in [0, V); returns (N, ..., d)."""
    if len(plan.shape) != 2:
        raise ValueError(f"embedding needs a 2-D table; {plan.name!r} has shape {plan.shape}")
    if not xp.isdtype(ids.dtype, "integral"):
        raise TypeError(f"embedding({plan.name!r}) needs integer ids, got dtype {dtype_name(ids.dtype)}")
    ids = xp.astype(ids, index_dtype(xp, ids.device))
    vocabulary, width = plan.shape
    per_member = is_per_member(
        tuple(ids.shape), members.size, shared, f"the ids of embedding({plan.name!r})", min_ndim=1
    )
    middle = tuple(ids.shape[1:] if per_member else ids.shape)
    count = prod(middle)
    out_shape = (members.size, *middle, width)
    if per_member:
        flat = xp.reshape(ids, (members.size * count,))
        base = xp.take(value, flat, axis=0)
        if plan.kind != FROZEN:
            grouped = xp.reshape(flat, (members.directions, members.per_direction * count))
            offsets = xp.reshape(xp.arange(members.directions, dtype=ids.dtype, device=ids.device), (-1, 1))
            rows = xp.reshape(grouped + offsets * vocabulary, (-1,))
            correction = _gathered_direction_rows(xp, noise, rows, members.directions)
            correction = _signed(xp, correction, members, _scale(noise, members.sigma, members.rank))
            base = base + xp.reshape(correction, (members.size * count, width))
        return xp.reshape(base, out_shape)
    flat = xp.reshape(ids, (count,))
    base = xp.take(value, flat, axis=0)
    if plan.kind == FROZEN:
        return xp.broadcast_to(xp.reshape(base, (1, *middle, width)), out_shape)
    correction = _shared_direction_rows(xp, noise, flat) * _scale(noise, members.sigma, members.rank)
    return xp.reshape(_pair_outputs(xp, base, correction, members), out_shape)


def _gathered_direction_rows(xp, noise, rows, directions: int):
    """Rows k·V + id of the stacked directions, as (D, c, d): Aₖ[id] Bₖᵀ for low rank, Eₖ[id] for full."""
    if isinstance(noise, LowRankNoise):
        d_, vocabulary, rank = noise.A.shape
        picked = xp.reshape(xp.take(xp.reshape(noise.A, (d_ * vocabulary, rank)), rows, axis=0), (directions, -1, rank))
        return picked @ xp.matrix_transpose(noise.B)
    d_, vocabulary, width = noise.E.shape
    return xp.reshape(xp.take(xp.reshape(noise.E, (d_ * vocabulary, width)), rows, axis=0), (directions, -1, width))


def _shared_direction_rows(xp, noise, ids):
    """Rows `ids` of every direction, as (D, c, d): Aₖ[ids] Bₖᵀ for low rank, Eₖ[ids] for full."""
    if isinstance(noise, LowRankNoise):
        return xp.take(noise.A, ids, axis=1) @ xp.matrix_transpose(noise.B)
    return xp.take(noise.E, ids, axis=1)
