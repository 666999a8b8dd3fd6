"""Raw fitness as the strategy takes it: one real value per member, on the params' library and device.

The dtype rule (docs/algorithm.md, "Fitness"):
- Fitness may be an array of any library, a sequence or a NumPy array. An array of the params' own library
  (other than NumPy) stays where it is; anything else is converted on the host first.
- Real floating fitness keeps its dtype where the device has it (float32 stays float32, float64 float64).
- Integer and boolean fitness is widened to the device's widest float (float64, or float32 where 64-bit
  types are missing). Where that could merge values (int64 into float64 beyond 2⁵³, int32 into float32
  beyond 2²⁴), values that were distinct must stay distinct, or the fitness is refused with the members
  named: ranks and pair comparisons would otherwise change without a word. On the host this check is
  free; on a device it reads back one boolean, and only for those dtypes.
- Floating fitness of a dtype the device lacks (float64 on a device without it) is rounded to the device's
  widest float, as any computation on that device would round it.
- Complex numbers, strings, None, mappings and objects are refused with a TypeError naming what was given.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._array_api import (
    array_namespace,
    detached,
    dtype_name,
    has_dtype,
    is_array_api_obj,
    is_numpy_namespace,
    is_traced,
    to_numpy,
)

__all__ = ["as_fitness"]

# Integer dtypes whose every value a float of this mantissa width holds exactly (float32: 24, float64: 53).
_EXACT_BITS = {"bool": 1, "int8": 8, "uint8": 8, "int16": 16, "uint16": 16, "int32": 32, "uint32": 32}
_MANTISSA_BITS = {"float32": 24, "float64": 53}


def _widest_float(xp, dev) -> str:
    return "float64" if has_dtype(xp, "float64", dev) else "float32"


def _target(xp, dev, dtype) -> str:
    """The float dtype fitness of `dtype` becomes on `dev`."""
    name = dtype_name(dtype)
    if name in _MANTISSA_BITS and has_dtype(xp, name, dev):
        return name
    return _widest_float(xp, dev)


def _may_merge(dtype, target: str, floating: bool) -> bool:
    """Whether widening values of `dtype` (integers, unless `floating`) to `target` could map two distinct
    integers to one float; floats are rounded, not checked."""
    return not floating and _EXACT_BITS.get(dtype_name(dtype), 64) > _MANTISSA_BITS[target]


def _merges(xp, F, target):
    """Whether casting F to `target` makes two distinct values equal (a 0-D boolean): the cast is monotone,
    so it suffices to compare neighbours of the sorted values."""
    ordered = xp.sort(F)
    cast = xp.astype(ordered, target)
    return xp.any((ordered[1:] != ordered[:-1]) & (cast[1:] == cast[:-1]))


def _merge_error(F, target: str) -> ValueError:
    host = to_numpy(F)
    order = np.argsort(host, kind="stable")
    ordered, cast = host[order], host[order].astype(target)
    pairs = np.nonzero((ordered[1:] != ordered[:-1]) & (cast[1:] == cast[:-1]))[0][:3]
    shown = "; ".join(
        f"members {order[j]} and {order[j + 1]} ({ordered[j].item()} and {ordered[j + 1].item()})" for j in pairs
    )
    wider = ", or use a device with float64 (for JAX: JAX_ENABLE_X64=1)" if target == "float32" else ""
    return ValueError(
        f"fitness of dtype {host.dtype} would lose distinct values as {target}, the widest float here: {shown} "
        f"become equal; convert it to floats yourself if that is acceptable{wider}"
    )


def _host(fitness) -> np.ndarray:
    if fitness is None or isinstance(fitness, str | bytes | Mapping | set):
        raise TypeError(f"fitness must be real numbers, one per member; got a {type(fitness).__name__}")
    try:
        host = to_numpy(fitness) if is_array_api_obj(fitness) else np.asarray(fitness)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"fitness must be real numbers, one per member; {type(fitness).__name__} gave: {exc}") from None
    if host.dtype.kind not in "biuf":
        what = "complex numbers" if host.dtype.kind == "c" else f"dtype {host.dtype}"
        raise TypeError(f"fitness must be real numbers, one per member; got {what}")
    return host


def _check_shape(F, population_size: int) -> None:
    if F.ndim != 1 or F.shape[0] != population_size:
        raise ValueError(
            f"fitness has shape {tuple(F.shape)}; it must have shape ({population_size},), one value per member "
            "in population order"
        )


def as_fitness(fitness, xp, dev, population_size: int):
    """Raw fitness (N,) as a real floating array of `xp` on `dev`, by the module's dtype rule."""
    if is_array_api_obj(fitness) and not is_numpy_namespace(xp) and array_namespace(fitness) is xp:
        F = detached(fitness)
        _check_shape(F, population_size)
        if xp.isdtype(F.dtype, "complex floating"):
            raise TypeError("fitness must be real numbers, one per member; got complex numbers")
        if dtype_name(F.dtype) in _MANTISSA_BITS and has_dtype(xp, dtype_name(F.dtype), dev):
            return F
        target = _target(xp, dev, F.dtype)
        floating = xp.isdtype(F.dtype, "real floating")
        if _may_merge(F.dtype, target, floating):
            if is_traced(F):
                raise TypeError(
                    f"{dtype_name(F.dtype)} fitness widened to {target} could merge distinct values, which a traced "
                    f"(jax.jit, lax.scan) generation cannot check; cast it yourself where its values are below "
                    f"2^{_MANTISSA_BITS[target]} in magnitude (for EGG's log-likelihood of T bytes, |F| ≤ 398·T), "
                    f"for example jnp.astype(F, jnp.{target})"
                )
            if bool(_merges(xp, F, getattr(xp, target))):
                raise _merge_error(F, target)
        return xp.astype(F, getattr(xp, target))
    host = _host(fitness)
    _check_shape(host, population_size)
    target = _target(xp, dev, host.dtype)
    if _may_merge(host.dtype, target, host.dtype.kind == "f") and bool(_merges(np, host, target)):
        raise _merge_error(host, target)
    return xp.asarray(host.astype(target, copy=False), dtype=getattr(xp, target), device=dev)
