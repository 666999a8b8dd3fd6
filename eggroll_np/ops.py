"""Model ops: the operations a model is written in, offered alike by the mean parameters (`MeanOps`) and by a
whole population (`Population`), so one model function serves evaluation and evolution.

    def model(ops, x):
        h = xp.tanh(ops.linear("hidden.w", x, bias="hidden.b"))            # x shared by all members
        h = h * ops.vector("gain", like=h)                                 # each member's own gain
        return ops.linear("out.w", h, bias="out.b", shared=False)          # h is per member from here on

    model(egg.MeanOps(state.params), x)    # (batch, out): the mean parameters θ
    model(es.ask(state), x)                # (N, batch, out): every member

- `linear(name, x, bias=None, *, shared=True)`: x Wᵀ (+ b) for a leaf W of shape (m, n) (a ≥3-D leaf acts as
  (shape[0], prod(shape[1:]))). `bias` is a leaf name, an array or None.
- `vector(name, like=None)`: the leaf itself; with `like`, shaped to broadcast against the activation `like`.
- `embedding(name, ids, *, shared=True)`: rows `ids` of a 2-D table.

The input rule does not look at sizes: an input is shared by all members unless the call passes
`shared=False`, which says it holds one slice per member on a leading axis of size N. Anything a population
op returns is per member, so pass `shared=False` when feeding it back. MeanOps checks `shared` and then
ignores it, so model code runs unchanged on both.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import _checks, integer
from ._array_api import index_dtype, is_numpy_namespace, namespace_and_device

__all__ = ["MeanOps", "add_bias", "vector_like"]


def vector_like(ops, v, like, name: str):
    """`v` (ops.vector(name)) shaped to broadcast against the activation `like`: (N, 1, ..., 1, *shape) for a
    population's (N, ..., *shape), the leaf itself for MeanOps; `like` None leaves `v` as it is."""
    if like is None:
        return v
    per_member = not isinstance(ops, MeanOps)
    leaf_shape = tuple(v.shape[1:] if per_member else v.shape)
    lead = 1 if per_member else 0
    ndim = getattr(like, "ndim", None)
    if ndim is None or ndim < lead + len(leaf_shape) or (per_member and like.shape[0] != v.shape[0]):
        wanted = f"(N, ..., *shape) with N = {v.shape[0]}" if per_member else "(..., *shape)"
        raise ValueError(
            f"vector({name!r}, like=...) needs an activation {wanted} for a leaf of shape {leaf_shape}; "
            f"got {'shape ' + str(tuple(like.shape)) if ndim is not None else type(like).__name__}"
        )
    if not per_member:
        return v
    fill = (1,) * (ndim - 1 - len(leaf_shape))
    return ops.xp.reshape(v, (v.shape[0], *fill, *leaf_shape))


def add_bias(ops, y, bias):
    """y + b with b a leaf name (taken through `ops.vector(bias, like=y)`), an array, or None."""
    if bias is None:
        return y
    if not isinstance(bias, str):
        return y + bias
    return y + ops.vector(bias, like=y)


def add_bias_into(ops, y, bias):
    """`add_bias` for a y the caller has just made and holds alone: on NumPy the sum is written into y (one
    pass fewer over the activations) where it has y's shape and dtype."""
    if bias is None or not is_numpy_namespace(ops.xp) or not y.flags.writeable:
        return add_bias(ops, y, bias)
    b = ops.vector(bias, like=y) if isinstance(bias, str) else bias
    if np.result_type(y, b) != y.dtype or np.broadcast_shapes(y.shape, np.shape(b)) != y.shape:
        return y + b
    return np.add(y, b, out=y)


class MeanOps:
    """The model ops on plain parameters θ (a mapping name → array, one namespace and device)."""

    owns_outputs = True  # linear returns arrays no one else holds (models may write into them)

    def __init__(self, params: Mapping):
        if not isinstance(params, Mapping):
            raise TypeError(
                f"MeanOps needs a mapping name -> array, for example state.params; got {type(params).__name__}"
            )
        if not params:
            raise ValueError("MeanOps needs a non-empty mapping name -> array, for example state.params")
        self.xp, self.device = namespace_and_device(params)
        self.params = params

    def _leaf(self, name: str):
        if name not in self.params:
            raise KeyError(f"no leaf named {name!r}; the leaves are {', '.join(map(repr, self.params))}")
        return self.params[name]

    def linear(self, name: str, x, bias=None, *, shared: bool = True):
        """x Wᵀ (+ b): x (..., n) → (..., m); for an int8 leaf the integer forward pass of `integer`
        (clip(⌊x Wᵀ / d(n)⌋, ±127), int8 x, no bias)."""
        _checks.boolean("shared", shared)
        xp, weight = self.xp, self._leaf(name)
        if weight.ndim < 2:
            raise ValueError(f"linear needs a leaf with at least 2 dimensions; {name!r} has shape {weight.shape}")
        if weight.ndim > 2:
            weight = xp.reshape(weight, (weight.shape[0], -1))
        if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"linear({name!r}) multiplies inputs of last axis {weight.shape[1]}; got shape {tuple(x.shape)}"
            )
        if weight.dtype == xp.int8:
            if bias is not None:
                raise ValueError(f"linear({name!r}) of an int8 leaf takes no bias")
            return integer.mean_linear(xp, weight, x, name)
        rows = xp.reshape(x, (-1, weight.shape[1]))  # one 2-D GEMM: a stack of small ones is slower on BLAS
        y = xp.reshape(rows @ xp.matrix_transpose(weight), (*x.shape[:-1], weight.shape[0]))
        return add_bias_into(self, y, bias)

    def vector(self, name: str, like=None):
        """θ[name] (with `like`, checked to broadcast against the activation `like` (..., *shape))."""
        return vector_like(self, self._leaf(name), like, name)

    def embedding(self, name: str, ids, *, shared: bool = True):
        """W[ids]: ids (...) integers in [0, V) → (..., d)."""
        _checks.boolean("shared", shared)
        xp, table = self.xp, self._leaf(name)
        if table.ndim != 2:
            raise ValueError(f"embedding needs a 2-D table; {name!r} has shape {table.shape}")
        flat = xp.reshape(xp.astype(ids, index_dtype(xp, self.device)), (-1,))
        return xp.reshape(xp.take(table, flat, axis=0), (*ids.shape, table.shape[1]))
