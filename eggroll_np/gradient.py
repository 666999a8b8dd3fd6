"""The ES gradient estimate (ascent direction), exactly as docs/algorithm.md states it:

    g = 1/(N σ) · Σᵢ fᵢ sᵢ ε_{k(i)}

Members that share a direction are merged first, wₖ = Σ_{i: k(i)=k} fᵢ sᵢ (wₖ = f₂ₖ − f₂ₖ₊₁ with antithetic
pairs), so g = 1/(N σ) Σₖ wₖ εₖ. A low-rank leaf then takes one GEMM over the stacked factors,

    g = 1/(N σ √r) · Ãᵀ B̃,   Ã = stack of wₖ Aₖ as (D·r, m),   B̃ = stack of Bₖ as (D·r, n),

whose rank is min(D·r, m, n), and never the rank-r product of sums (Σ wₖ Aₖ)(Σ wₖ Bₖ)ᵀ. A full-rank leaf
takes one weighted reduction over its D directions. No code path forms D dense m×n matrices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from .noise import FROZEN, FullNoise, LeafPlan, LowRankNoise

__all__ = ["direction_weights", "es_gradient", "full_gradient", "lowrank_gradient"]


def direction_weights(xp, f, antithetic: bool):
    """wₖ = Σ_{i: k(i)=k} fᵢ sᵢ: f₂ₖ − f₂ₖ₊₁ with antithetic pairs, f itself without."""
    if not antithetic:
        return f
    pairs = xp.reshape(f, (f.shape[0] // 2, 2))
    return pairs[:, 0] - pairs[:, 1]


def lowrank_gradient(xp, noise: LowRankNoise, w, scale: float):
    """scale · Σₖ wₖ Aₖ Bₖᵀ as one GEMM contracting (direction, rank): an (m, n) matrix."""
    weighted = noise.A * xp.reshape(w * scale, (w.shape[0], 1, 1))
    return xp.tensordot(weighted, noise.B, axes=((0, 2), (0, 2)))


def full_gradient(xp, noise: FullNoise, w, scale: float):
    """scale · Σₖ wₖ Eₖ as one weighted reduction over the directions."""
    return xp.tensordot(w * scale, noise.E, axes=1)


def es_gradient(
    xp,
    plans: Mapping[str, LeafPlan],
    noises: Mapping,
    f,
    *,
    sigma: float,
    rank: int,
    antithetic: bool,
) -> dict:
    """g for every non-frozen leaf from shaped fitness f (N,) and the population's noise, in leaf shapes."""
    population_size = f.shape[0]
    w = direction_weights(xp, f, antithetic)
    grads = {}
    for name, plan in plans.items():
        if plan.kind == FROZEN:
            continue
        noise = noises[name]
        dtype = (noise.A if isinstance(noise, LowRankNoise) else noise.E).dtype
        leaf_w = w if w.dtype == dtype else xp.astype(w, dtype)
        if isinstance(noise, LowRankNoise):
            g = lowrank_gradient(xp, noise, leaf_w, 1.0 / (population_size * sigma * math.sqrt(rank)))
            grads[name] = xp.reshape(g, plan.shape)
        else:
            grads[name] = full_gradient(xp, noise, leaf_w, 1.0 / (population_size * sigma))
    return grads
