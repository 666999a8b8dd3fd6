"""The batched perturbed forward pass: every member's product with its perturbed leaf, never forming one.

Members are grouped by direction: with antithetic pairs, members 2k and 2k+1 share direction k, so any
per-member array (N, ...) is viewed as (D, P·..., ...) with P = 2 members per direction (signs +1, −1), or
P = 1 without pairs. For member i with direction k and sign s:

    low-rank leaf W (m, n):  yᵢ = xᵢ Wᵀ + (σ s/√r) (xᵢ Bₖ) Aₖᵀ     one shared GEMM + a rank-r correction
    full-rank leaf W:        yᵢ = xᵢ Wᵀ + σ s xᵢ Eₖᵀ
    frozen leaf W:           yᵢ = xᵢ Wᵀ
    embedding rows:          W[ids] + (σ s/√r) Aₖ[ids] Bₖᵀ  (low rank),  W[ids] + σ s Eₖ[ids]  (full rank)

An input is shared by all members, x of shape (..., n), unless the call says `shared=False`: then it holds
one slice per member, x of shape (N, ..., n). The reading never depends on x's sizes. A shared input's
x Wᵀ and x Bₖ are computed once per direction, and a pair's outputs are base ± correction. Nothing here
allocates O(N·m·n): the largest arrays are the inputs, the outputs and one correction of the output's size.
The per-kind products come from the leaf's noise record (`noise`); a frozen leaf has none. An int8 leaf runs
the exact integer forward pass of `integer` instead (int8 in, int8 out).
"""

from __future__ import annotations

from . import _checks, integer
from ._array_api import device, dtype_name, index_dtype, prod
from .leaves import INT8

__all__ = ["embedding", "linear", "linear_portable", "vector"]


def _leaf(pop, name: str):
    if name not in pop.plans:
        raise KeyError(f"no leaf named {name!r}; the leaves are {', '.join(map(repr, pop.plans))}")
    return pop.plans[name], pop.params[name], pop.noise.get(name)


def _per_member(pop, shape: tuple, shared, what: str, min_ndim: int) -> bool:
    """Whether an input holds one slice per member: exactly when shared=False, which needs a leading axis
    of size N (and at least `min_ndim` axes)."""
    if _checks.boolean("shared", shared):
        return False
    if len(shape) < min_ndim or shape[0] != pop.layout.size:
        raise ValueError(
            f"{what} has shape {shape}; with shared=False its leading axis must be the population ({pop.layout.size})"
        )
    return True


def _row_coefficients(xp, pop, rows: int, dtype, dev):
    """σ·sᵢ for the P·rows rows of one direction's members, as (1, P·rows, 1); σ itself when P = 1."""
    if pop.layout.per_direction == 1:
        return pop.sigma
    plus = xp.full((rows,), pop.sigma, dtype=dtype, device=dev)
    return xp.reshape(xp.concat([plus, -plus]), (1, 2 * rows, 1))


def _pair_outputs(xp, base, correction, per_direction: int):
    """Outputs of a shared input, (D, P, ...): base + correction, and base − correction for the partner."""
    if per_direction == 1:
        return base + correction
    return xp.stack([base + correction, base - correction], axis=1)


def _linear_layout(pop, name: str, x, shared):
    """Check a linear call; return (plan, W as (m, n), noise, per_member, the input's middle axes)."""
    xp = pop.xp
    plan, value, noise = _leaf(pop, name)
    if len(plan.shape) < 2:
        raise ValueError(f"linear needs a leaf with at least 2 dimensions; {name!r} has shape {plan.shape}")
    weight = value if len(plan.shape) == 2 else xp.reshape(value, (plan.shape[0], prod(plan.shape[1:])))
    n = weight.shape[1]
    if x.ndim < 1 or x.shape[-1] != n:
        raise ValueError(f"linear({name!r}) multiplies inputs of last axis {n}; got shape {tuple(x.shape)}")
    per_member = _per_member(pop, tuple(x.shape), shared, f"the input of linear({name!r})", 2)
    return plan, weight, noise, per_member, tuple(x.shape[1:-1] if per_member else x.shape[:-1])


def linear(pop, name: str, x, *, shared: bool = True):
    """yᵢ = xᵢ Wᵢᵀ for every member i of `pop`, with Wᵢ = W + σ sᵢ ε_{k(i)} never formed; where the leaf's
    noise record has a fast path for the backend (NumPy in place, CuPy fused kernels), it is taken.

    x: (..., n) shared, or (N, ..., n) per member with shared=False; returns (N, ..., m)."""
    checked = _linear_layout(pop, name, x, shared)
    plan, weight, noise, per_member, middle = checked
    if plan.kind == INT8:
        return integer.population_linear(pop, x, *checked)
    fast = None if noise is None else noise.fast_linear(pop.xp)
    if fast is None:
        return _linear_portable(pop, x, *checked)
    y = fast(x, weight, noise, pop.layout.per_direction, pop.sigma, per_member, prod(middle))
    return pop.xp.reshape(y, (pop.layout.size, *middle, weight.shape[0]))


def linear_portable(pop, name: str, x, *, shared: bool = True):
    """`linear` in array-API operations only."""
    checked = _linear_layout(pop, name, x, shared)
    if checked[0].kind == INT8:
        return integer.population_linear(pop, x, *checked, portable=True)
    return _linear_portable(pop, x, *checked)


def _linear_portable(pop, x, plan, weight, noise, per_member: bool, middle: tuple):
    xp, layout = pop.xp, pop.layout
    m, n = weight.shape
    rows = prod(middle)
    out_shape = (layout.size, *middle, m)
    weight_t = xp.matrix_transpose(weight)
    if per_member:
        base = xp.reshape(x, (layout.size * rows, n)) @ weight_t
        if noise is not None:
            grouped = xp.reshape(x, (layout.directions, layout.per_direction * rows, n))
            c = _row_coefficients(xp, pop, rows, x.dtype, device(x))
            base = base + xp.reshape(noise.products(xp, plan, grouped, c), (layout.size * rows, m))
        return xp.reshape(base, out_shape)
    flat = xp.reshape(x, (rows, n))
    base = flat @ weight_t
    if noise is None:
        return xp.broadcast_to(xp.reshape(base, (1, *middle, m)), out_shape)
    correction = noise.products(xp, plan, flat, pop.sigma)
    return xp.reshape(_pair_outputs(xp, base, correction, layout.per_direction), out_shape)


def vector(pop, name: str):
    """(N, *shape): θ + σ sᵢ ε_{k(i)} of a full-rank or frozen leaf for every member (frozen: a broadcast
    view); a low-rank leaf refuses, since that would form N dense matrices."""
    xp, layout = pop.xp, pop.layout
    plan, value, noise = _leaf(pop, name)
    out_shape = (layout.size, *plan.shape)
    if noise is None:
        return xp.broadcast_to(xp.reshape(value, (1, *plan.shape)), out_shape)
    perturbation = _pair_outputs(xp, 0.0, noise.dense(xp, plan) * pop.sigma, layout.per_direction)
    return value + xp.reshape(perturbation, out_shape)


def embedding(pop, name: str, ids, *, shared: bool = True):
    """Rows `ids` of every member's table Wᵢ (V, d) without forming it: ids (...) shared, or (N, ...) per
    member with shared=False, integers in [0, V); returns (N, ..., d)."""
    xp, layout = pop.xp, pop.layout
    plan, value, noise = _leaf(pop, name)
    if len(plan.shape) != 2:
        raise ValueError(f"embedding needs a 2-D table; {name!r} has shape {plan.shape}")
    if not xp.isdtype(ids.dtype, "integral"):
        raise TypeError(f"embedding({name!r}) needs integer ids, got dtype {dtype_name(ids.dtype)}")
    ids = xp.astype(ids, index_dtype(xp, device(ids)))
    width = plan.shape[1]
    per_member = _per_member(pop, tuple(ids.shape), shared, f"the ids of embedding({name!r})", 1)
    middle = tuple(ids.shape[1:] if per_member else ids.shape)
    count = prod(middle)
    out_shape = (layout.size, *middle, width)
    if plan.kind == INT8:
        flat = xp.reshape(ids, (-1,))
        return xp.reshape(integer.population_rows(pop, noise, value, flat, per_member), out_shape)
    if per_member:
        flat = xp.reshape(ids, (layout.size * count,))
        base = xp.take(value, flat, axis=0)
        if noise is not None:
            grouped = xp.reshape(flat, (layout.directions, layout.per_direction * count))
            c = _row_coefficients(xp, pop, count, value.dtype, device(value))
            base = base + xp.reshape(noise.rows(xp, grouped, c, True), (layout.size * count, width))
        return xp.reshape(base, out_shape)
    flat = xp.reshape(ids, (count,))
    base = xp.take(value, flat, axis=0)
    if noise is None:
        return xp.broadcast_to(xp.reshape(base, (1, *middle, width)), out_shape)
    correction = noise.rows(xp, flat, pop.sigma, False)
    return xp.reshape(_pair_outputs(xp, base, correction, layout.per_direction), out_shape)
