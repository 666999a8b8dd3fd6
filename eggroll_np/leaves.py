"""Leaves: which kind each leaf of θ is, and what a leaf may be.

- `lowrank` (default for 2-D leaves, shape (m, n)): perturbed by rank-r factors; a ≥3-D leaf may opt in and
  is then perturbed as the matrix (shape[0], prod(shape[1:])).
- `full` (default for every other leaf: biases, norms, 0-D, ≥3-D): perturbed by dense Gaussian noise.
- `frozen`: never perturbed, never updated; it has no noise record (see `noise.NOISE_TYPES`).

Leaves are float32 or float64 arrays in the machine's byte order (the generator draws those two dtypes), all
from one array library and device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from . import random
from ._array_api import dtype_name, is_floating_dtype, namespace_and_device, prod

__all__ = [
    "FROZEN",
    "FULL",
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
KINDS = (LOWRANK, FULL, FROZEN)
LEAF_DTYPES = ("float32", "float64")

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
    """(xp, device) of params, if it is a non-empty mapping of float32 or float64 arrays in native byte order,
    of one library and device; otherwise a TypeError or ValueError naming the leaf (`plan_leaves` checks the
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
        if not is_floating_dtype(xp, dtype) or dtype_name(dtype) not in LEAF_DTYPES:
            raise TypeError(
                f"leaf {name!r} has dtype {dtype_name(dtype)}; ES needs float32 or float64 leaves, for example "
                f"xp.astype(params[{name!r}], xp.float32)"
            )
    return xp, dev


def _default_kind(shape: tuple[int, ...]) -> str:
    return LOWRANK if len(shape) == 2 else FULL


def _resolve_kind(name: str, value, policy: Policy) -> str:
    if policy is None:
        return _default_kind(tuple(value.shape))
    kind = policy(name, value) if callable(policy) else policy.get(name)
    if kind is None:
        return _default_kind(tuple(value.shape))
    if kind not in KINDS:
        raise ValueError(f"policy gives leaf {name!r} the kind {kind!r}; use one of {', '.join(KINDS)}")
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
        if kind == LOWRANK:
            if len(shape) < 2:
                raise ValueError(
                    f"leaf {name!r} has shape {shape}: lowrank needs at least 2 dimensions; use 'full' or 'frozen'"
                )
            matrix_shape = (shape[0], prod(shape[1:]))
        stream = random.stream_id(name)
        if stream in owners:
            raise ValueError(
                f"leaf names {owners[stream]!r} and {name!r} hash to the same noise stream; rename one of them"
            )
        owners[stream] = name
        plans[name] = LeafPlan(name, kind, shape, matrix_shape, stream)
    return plans
