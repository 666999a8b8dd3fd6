"""Fitness shaping: plain functions from raw fitness F ∈ R^N to weights f ∈ R^N (docs/algorithm.md, "Fitness shaping"),
and the policies for non-finite fitness.

Members are in population order; with antithetic pairs, member 2k (+ε) and 2k+1 (−ε) are adjacent, and
groups are consecutive runs of `group_size` members. Every shaping function here is pure and sync-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from ._array_api import array_namespace, device, is_traced, searchsorted, to_numpy

__all__ = [
    "GROUP_SHAPINGS",
    "NAN_POLICIES",
    "SHAPINGS",
    "centered_rank",
    "group_center",
    "group_zscore",
    "handle_nonfinite",
    "make_shaping",
    "raw",
    "sign",
    "zscore",
]

EPS = 1e-8


def raw(F):
    """f = F."""
    return F


def zscore(F, eps: float = EPS):
    """f = (F − mean F) / (std F + eps), std with divisor N."""
    xp = array_namespace(F)
    return (F - xp.mean(F)) / (xp.std(F) + eps)


def centered_rank(F):
    """f = rank(F) / (N − 1) − ½ ∈ [−½, ½], ranks from 0; tied values share the average of their ranks.

    Sums to 0 and depends on F only through its order, so any increasing map of F leaves f unchanged.
    """
    xp = array_namespace(F)
    n = F.shape[0]
    ordered = xp.sort(F)
    below = xp.astype(searchsorted(xp, ordered, F, side="left"), F.dtype)
    through = xp.astype(searchsorted(xp, ordered, F, side="right"), F.dtype)
    return (below + through - 1.0) / (2.0 * (n - 1)) - 0.5


def _groups(F, group_size: int):
    xp = array_namespace(F)
    return xp, xp.reshape(F, (F.shape[0] // group_size, group_size))


def group_zscore(F, group_size: int, eps: float = EPS):
    """Per consecutive group g of G members: f = (F − mean_g F) / (std_g F + eps)."""
    xp, groups = _groups(F, group_size)
    centered = groups - xp.mean(groups, axis=1, keepdims=True)
    return xp.reshape(centered / (xp.std(groups, axis=1, keepdims=True) + eps), F.shape)


def group_center(F, group_size: int, eps: float = EPS):
    """f = (F − mean_g F) / (std F + eps): per-group mean, global std (the paper's GRPO-like score)."""
    xp, groups = _groups(F, group_size)
    centered = groups - xp.mean(groups, axis=1, keepdims=True)
    return xp.reshape(centered, F.shape) / (xp.std(F) + eps)


def sign(F):
    """Antithetic pairs: f₂ₖ = sign(F₂ₖ − F₂ₖ₊₁), f₂ₖ₊₁ = −f₂ₖ, i.e. fᵢ = sᵢ·sign(F₂ₖ − F₂ₖ₊₁)."""
    xp = array_namespace(F)
    pairs = xp.reshape(F, (F.shape[0] // 2, 2))
    s = xp.sign(pairs[:, 0] - pairs[:, 1])
    return xp.reshape(xp.stack([s, -s], axis=1), F.shape)


SHAPINGS = {
    "raw": raw,
    "zscore": zscore,
    "centered_rank": centered_rank,
    "group_zscore": group_zscore,
    "group_center": group_center,
    "sign": sign,
}
GROUP_SHAPINGS = ("group_zscore", "group_center")


def make_shaping(
    shaping: str | Callable, *, population_size: int, group_size: int = 0, antithetic: bool = True
) -> Callable:
    """The function F → f for a shaping name or callable, with its settings checked against the population."""
    if callable(shaping):
        if group_size:
            raise ValueError(
                f"group_size={group_size} only applies to {' and '.join(GROUP_SHAPINGS)}; for a custom shaping "
                "callable, apply your own grouping inside it and leave group_size=0"
            )
        return shaping
    if not isinstance(shaping, str) or shaping not in SHAPINGS:
        error = ValueError if isinstance(shaping, str) else TypeError
        raise error(f"shaping={shaping!r} must be one of {', '.join(map(repr, SHAPINGS))} or a callable F -> f")
    if shaping == "sign" and not antithetic:
        raise ValueError("shaping='sign' compares antithetic pairs; use antithetic=True or another shaping")
    if shaping not in GROUP_SHAPINGS:
        if group_size:
            raise ValueError(
                f"group_size={group_size} only applies to {' and '.join(GROUP_SHAPINGS)}, not shaping={shaping!r}; "
                "set group_size=0 or pick a group shaping"
            )
        return SHAPINGS[shaping]
    if group_size < 2 or population_size % group_size:
        raise ValueError(
            f"shaping={shaping!r} needs a group_size of at least 2 that divides population_size={population_size}; "
            f"got group_size={group_size}"
        )
    if antithetic and group_size % 2:
        raise ValueError(
            f"group_size={group_size} would split antithetic pairs; use an even group size or antithetic=False"
        )
    return partial(SHAPINGS[shaping], group_size=group_size)


NAN_POLICIES = ("raise", "worst")


def handle_nonfinite(G, nan_policy: str):
    """G (N,), higher is better, under a nan policy: "raise" reads back one boolean and raises a ValueError
    naming the members whose fitness is NaN or ±inf; "worst" (no read-back) replaces each non-finite value
    by the worst finite one, or by 0 when none is finite."""
    xp = array_namespace(G)
    finite = xp.isfinite(G)
    if nan_policy == "raise":
        if is_traced(finite):
            raise ValueError(
                "nan_policy='raise' reads the fitness back to check it, which a traced (jax.jit, lax.scan) "
                "generation cannot; pass nan_policy='worst' to the strategy to count non-finite fitness as the worst"
            )
        if not bool(xp.all(finite)):
            bad = [int(i) for i in (~to_numpy(finite)).nonzero()[0]]
            raise ValueError(
                f"fitness is NaN or infinite for members {bad}; fix the evaluation, or pass "
                "nan_policy='worst' to count them as the worst member"
            )
        return G
    worst = xp.min(xp.where(finite, G, xp.asarray(math.inf, dtype=G.dtype, device=device(G))))
    worst = xp.where(xp.isfinite(worst), worst, xp.zeros_like(worst))
    return xp.where(finite, G, worst)
