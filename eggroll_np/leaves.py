"""Leaves: which kind each leaf of θ is, and what a leaf may be.

- `lowrank` (default for 2-D leaves, shape (m, n)): perturbed by rank-r factors; a ≥3-D leaf may opt in and
  is then perturbed as the matrix (shape[0], prod(shape[1:])).
- `full` (default for every other leaf: biases, norms, 0-D, ≥3-D): perturbed by dense Gaussian noise.
- `int8` (every ≥2-D int8 leaf, viewed as (shape[0], prod(shape[1:]))): perturbed by rank-r integer factors,
  run through the integer forward pass and updated by `optim.integer_step` (see `integer`).
- `frozen`: never perturbed, never updated; it has no noise record (see `noise.NOISE_TYPES`).

Leaves are float32 or float64 arrays in the machine's byte order (the generator draws those two dtypes), or
int8 arrays, all from one array library and device. An int8 leaf is `int8` or (by the policy) `frozen`; a
float leaf is any other kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from . import random
from ._array_api import dtype_name, is_floating_dtype, namespace_and_device, prod

__all__ = [
    "FROZEN",
    "FULL",
    "INT8",
    "KINDS",
    "LEAF_DTYPES",
    "LOWRANK",
    "LeafPlan",
    "Policy",
    "check_leaves",
    "check_policy",
    "plan_leaves",
]

LOWRANK = "lowrank"
FULL = "full"
FROZEN = "frozen"
INT8 = "int8"
KINDS = (LOWRANK, FULL, FROZEN, INT8)
LEAF_DTYPES = ("float32", "float64", "int8")

Policy = None | Mapping[str, str] | Callable[[str, Any], str | None]


class LeafPlan(NamedTuple):
    """How one leaf is perturbed: its kind, shape, the (m, n) matrix a low-rank leaf is viewed as, and the
    stable stream id of its name."""

    name: str
    kind: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int] | None
    stream: int


def check_leaves(params) -> tuple[Any, Any]:
    """(xp, device) of params, if it is a non-empty mapping of float32, float64 or int8 arrays in native byte
    order, of one library and device; otherwise a TypeError or ValueError naming the leaf (`plan_leaves` checks the
    names)."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping name -> array, not a {type(params).__name__}")
    if not params:
        raise ValueError("params is empty; pass a dict name -> array with at least one leaf")
    xp, dev = namespace_and_device(params)
    for name, value in params.items():
        dtype = value.dtype
        if not getattr(dtype, "isnative", True):
            raise TypeError(
                f"leaf {name!r} has dtype {dtype.str} (non-native byte order); convert it first, for example "
                f"params[{name!r}].astype(params[{name!r}].dtype.newbyteorder('='))"
            )
        if dtype_name(dtype) not in LEAF_DTYPES or not (is_floating_dtype(xp, dtype) or dtype == xp.int8):
            raise TypeError(
                f"leaf {name!r} has dtype {dtype_name(dtype)}; ES needs float32, float64 or int8 leaves, for example "
                f"xp.astype(params[{name!r}], xp.float32)"
            )
    return xp, dev


def _is_int8(value) -> bool:
    return dtype_name(value.dtype) == "int8"


def _default_kind(value) -> str:
    if _is_int8(value):
        return INT8
    return LOWRANK if len(value.shape) == 2 else FULL


def _resolve_kind(name: str, value, policy: Policy) -> str:
    kind = None
    if policy is not None:
        kind = policy(name, value) if callable(policy) else policy.get(name)
    if kind is None:
        kind = _default_kind(value)
    if kind not in KINDS:
        raise ValueError(f"policy gives leaf {name!r} the kind {kind!r}; use one of {', '.join(KINDS)}")
    if _is_int8(value) and kind not in (INT8, FROZEN):
        raise ValueError(f"int8 leaf {name!r} can be 'int8' or 'frozen', not {kind!r}")
    if not _is_int8(value) and kind == INT8:
        raise ValueError(f"leaf {name!r} is {dtype_name(value.dtype)}; the kind 'int8' needs an int8 leaf")
    return kind


def check_policy(policy: Policy) -> Policy:
    """`policy`, if it is None, a mapping name → kind, or a callable (name, array) → kind or None."""
    if policy is not None and not callable(policy) and not isinstance(policy, Mapping):
        raise TypeError(
            f"policy={policy!r} must be None, a mapping name -> kind, or a callable, not a {type(policy).__name__}"
        )
    return policy


def plan_leaves(params: Mapping[str, Any], policy: Policy = None) -> dict[str, LeafPlan]:
    """The plan of every leaf: policy by name (mapping) or by callable (name, array) → kind or None, and the
    default by ndim (2-D lowrank, others full) wherever the policy is silent."""
    check_policy(policy)
    if isinstance(policy, Mapping):
        unknown = sorted(set(policy) - set(params))
        if unknown:
            raise ValueError(
                f"policy names leaves that params do not have: {', '.join(map(repr, unknown))}; "
                f"the leaves are {', '.join(map(repr, params))}"
            )
    plans = {}
    owners: dict[int, str] = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise TypeError(f"leaf names must be strings, got {name!r}")
        shape = tuple(value.shape)
        kind = _resolve_kind(name, value, policy)
        matrix_shape = None
        if kind in (LOWRANK, INT8):
            if len(shape) < 2:
                other = "freeze it with the policy" if kind == INT8 else "use 'full' or 'frozen'"
                raise ValueError(f"leaf {name!r} has shape {shape}: {kind} needs at least 2 dimensions; {other}")
            matrix_shape = (shape[0], prod(shape[1:]))
        stream = random.stream_id(name)
        if stream in owners:
            raise ValueError(
                f"leaf names {owners[stream]!r} and {name!r} hash to the same noise stream; rename one of them"
            )
        owners[stream] = name
        plans[name] = LeafPlan(name, kind, shape, matrix_shape, stream)
    return plans
