"""Per-leaf noise: which leaves are perturbed and how, and each direction's factors (docs/algorithm.md).

- `lowrank` (default for 2-D leaves, shape (m, n)): εₖ = (1/√r) Aₖ Bₖᵀ with Aₖ (m, r), Bₖ (n, r), entries
  iid N(0, 1) (or ±1 with noise="rademacher"), so every entry of εₖ has variance 1. A ≥3-D leaf may opt in;
  it is perturbed as the matrix (shape[0], prod(shape[1:])).
- `full` (default for every other leaf): εₖ iid N(0, 1) of the leaf's shape.
- `frozen`: never perturbed, never updated.

Member i uses direction k(i) with sign sᵢ: with antithetic pairs k(i) = i // 2 and sᵢ = (−1)ⁱ; without,
k(i) = i and sᵢ = +1. Direction k of a leaf is the stream (seed, epoch, leaf id), row k: its first m·r
elements are the r columns of Aₖ, m consecutive elements each, the next n·r the r columns of Bₖ, so that
εₖ = (1/√r) Σⱼ aⱼ bⱼᵀ reads each rank-1 term from two contiguous runs (and the forward pass multiplies by
contiguous Aₖᵀ); a full leaf's εₖ is its first size elements.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from . import random
from ._array_api import prod

__all__ = [
    "FROZEN",
    "FULL",
    "KINDS",
    "LOWRANK",
    "NOISE_KINDS",
    "FullNoise",
    "LeafPlan",
    "LowRankNoise",
    "Policy",
    "direction_of",
    "leaf_noise",
    "n_directions",
    "perturbation",
    "plan_leaves",
    "sign_of",
]

LOWRANK = "lowrank"
FULL = "full"
FROZEN = "frozen"
KINDS = (LOWRANK, FULL, FROZEN)
NOISE_KINDS = ("gaussian", "rademacher")

Policy = None | Mapping[str, str] | Callable[[str, Any], str | None]


class LeafPlan(NamedTuple):
    """How one leaf is perturbed: its kind, shape, the (m, n) matrix a low-rank leaf is viewed as, and the
    stable stream id of its name."""

    name: str
    kind: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int] | None
    stream: int


class LowRankNoise(NamedTuple):
    """Factors of D directions of a low-rank leaf: A (D, m, r), B (D, n, r), each stored column by column
    (A's transpose (D, r, m) is the contiguous one)."""

    A: Any
    B: Any


class FullNoise(NamedTuple):
    """D directions of a full-rank leaf: E (D, *shape)."""

    E: Any


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


def plan_leaves(params: Mapping[str, Any], policy: Policy = None) -> dict[str, LeafPlan]:
    """The plan of every leaf: policy by name (mapping) or by callable (name, array) → kind or None, and the
    default by ndim (2-D lowrank, others full) wherever the policy is silent."""
    if policy is not None and not callable(policy):
        if not isinstance(policy, Mapping):
            raise TypeError(f"policy must be None, a mapping name -> kind, or a callable; got {type(policy).__name__}")
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


def n_directions(population_size: int, antithetic: bool) -> int:
    """Number of distinct directions: N/2 with antithetic pairs, N without."""
    return population_size // 2 if antithetic else population_size


def direction_of(member: int, antithetic: bool) -> int:
    """k(i): i // 2 with antithetic pairs, i without."""
    return member // 2 if antithetic else member


def sign_of(member: int, antithetic: bool) -> int:
    """sᵢ: +1 for even members and −1 for odd ones with antithetic pairs, +1 without."""
    return -1 if antithetic and member % 2 else 1


def leaf_noise(
    xp, plan: LeafPlan, *, seed: int, epoch: int, directions: range, rank: int, noise: str, dtype, dev
) -> LowRankNoise | FullNoise:
    """The noise of `directions` of one leaf: factors (A, B) of a low-rank leaf or E of a full-rank leaf."""
    if noise not in NOISE_KINDS:
        raise ValueError(f"noise={noise!r}; use one of {', '.join(NOISE_KINDS)}")
    stream = random.derive_key(seed, epoch, plan.stream)
    d = len(directions)
    if plan.kind == LOWRANK:
        m, n = plan.matrix_shape
        kind = "normal" if noise == "gaussian" else "rademacher"
        draws = random.draw(xp, kind, stream, directions, (m + n) * rank, dtype=dtype, dev=dev)
        columns_a = xp.reshape(draws[:, : m * rank], (d, rank, m))
        columns_b = xp.reshape(draws[:, m * rank :], (d, rank, n))
        return LowRankNoise(A=xp.matrix_transpose(columns_a), B=xp.matrix_transpose(columns_b))
    if plan.kind == FULL:
        draws = random.draw(xp, "normal", stream, directions, prod(plan.shape), dtype=dtype, dev=dev)
        return FullNoise(E=xp.reshape(draws, (d, *plan.shape)))
    raise ValueError(f"leaf {plan.name!r} is frozen and has no noise")


def perturbation(xp, plan: LeafPlan, noise: LowRankNoise | FullNoise, index: int):
    """εₖ of row `index` of the noise, in the leaf's shape: (1/√r) Aₖ Bₖᵀ or Eₖ."""
    if isinstance(noise, LowRankNoise):
        a, b = noise.A[index, ...], noise.B[index, ...]
        eps = (a @ xp.matrix_transpose(b)) * (1.0 / math.sqrt(a.shape[-1]))
        return xp.reshape(eps, plan.shape)
    return noise.E[index, ...]
