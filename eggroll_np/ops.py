"""Model ops: the three operations a model is written in, offered alike by the mean parameters (`MeanOps`)
and by a whole population (`Population`), so one model function serves evaluation and evolution.

    def model(ops, x):
        h = xp.tanh(ops.linear("hidden.w", x, bias="hidden.b"))
        return ops.linear("out.w", h, bias="out.b")

    model(egg.MeanOps(state.params), x)    # (batch, out): the mean parameters θ
    model(es.ask(state), x)                # (N, batch, out): every member, x shared by all of them

- `linear(name, x, bias=None, shared=None)`: x Wᵀ (+ b) for a leaf W of shape (m, n) (a ≥3-D leaf acts as
  (shape[0], prod(shape[1:]))). `bias` is a leaf name, an array or None.
- `vector(name)`: the leaf itself (a population gives one per member, stacked on a leading axis).
- `embedding(name, ids, shared=None)`: rows `ids` of a 2-D table.

`shared` only matters for a population: it says whether an input is one for all members (..., n) or one per
member (N, ..., n). MeanOps accepts and ignores it, so model code can pass it through.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._array_api import array_namespace, index_dtype, namespace_and_device

__all__ = ["MeanOps", "add_bias"]


def add_bias(ops, y, bias, *, per_member: bool):
    """y + b with b a leaf name (taken through `ops.vector`), an array, or None; for a population
    (`per_member`) a leaf bias (N, m) is broadcast over y's middle axes (N, ..., m)."""
    if bias is None:
        return y
    if not isinstance(bias, str):
        return y + bias
    b = ops.vector(bias)
    if per_member:
        xp = array_namespace(y)
        b = xp.reshape(b, (b.shape[0], *([1] * (y.ndim - 2)), b.shape[-1]))
    return y + b


class MeanOps:
    """The model ops on plain parameters θ (a mapping name → array, one namespace and device)."""

    def __init__(self, params: Mapping):
        if not isinstance(params, Mapping) or not params:
            raise ValueError("MeanOps needs a non-empty mapping name -> array, for example state.params")
        self.xp, self.device = namespace_and_device(params)
        self.params = params

    def _leaf(self, name: str):
        if name not in self.params:
            raise KeyError(f"no leaf named {name!r}; the leaves are {', '.join(map(repr, self.params))}")
        return self.params[name]

    def linear(self, name: str, x, bias=None, *, shared: bool | None = None):
        """x Wᵀ (+ b): x (..., n) → (..., m)."""
        xp, weight = self.xp, self._leaf(name)
        if weight.ndim < 2:
            raise ValueError(f"linear needs a leaf with at least 2 dimensions; {name!r} has shape {weight.shape}")
        if weight.ndim > 2:
            weight = xp.reshape(weight, (weight.shape[0], -1))
        if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"linear({name!r}) multiplies inputs of last axis {weight.shape[1]}; got shape {tuple(x.shape)}"
            )
        return add_bias(self, x @ xp.matrix_transpose(weight), bias, per_member=False)

    def vector(self, name: str):
        """θ[name]."""
        return self._leaf(name)

    def embedding(self, name: str, ids, *, shared: bool | None = None):
        """W[ids]: ids (...) integers in [0, V) → (..., d)."""
        xp, table = self.xp, self._leaf(name)
        if table.ndim != 2:
            raise ValueError(f"embedding needs a 2-D table; {name!r} has shape {table.shape}")
        flat = xp.reshape(xp.astype(ids, index_dtype(xp, self.device)), (-1,))
        return xp.reshape(xp.take(table, flat, axis=0), (*ids.shape, table.shape[1]))
