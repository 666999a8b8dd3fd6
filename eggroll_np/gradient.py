"""The ES gradient estimate (ascent direction), exactly as docs/algorithm.md states it:

    g = 1/(N σ) · Σᵢ fᵢ sᵢ ε_{k(i)}

Members that share a direction are merged first, wₖ = Σ_{i: k(i)=k} fᵢ sᵢ (wₖ = f₂ₖ − f₂ₖ₊₁ with antithetic
pairs), so g = 1/(N σ) Σₖ wₖ εₖ; each leaf's noise record then forms Σₖ wₖ εₖ its own way. A low-rank leaf
takes one GEMM over the stacked factors,

    g = 1/(N σ √r) · Ãᵀ B̃,   Ã = stack of wₖ Aₖ as (D·r, m),   B̃ = stack of Bₖ as (D·r, n),

whose rank is min(D·r, m, n), and never the rank-r product of sums (Σ wₖ Aₖ)(Σ wₖ Bₖ)ᵀ. A full-rank leaf
takes one weighted reduction over its D directions. No code path forms D dense m×n matrices.
"""

from __future__ import annotations

from ._array_api import is_floating_dtype

__all__ = ["direction_weights", "es_gradient"]


def direction_weights(xp, f, per_direction: int):
    """wₖ = Σ_{i: k(i)=k} fᵢ sᵢ: f₂ₖ − f₂ₖ₊₁ with antithetic pairs (P = 2), f itself without (P = 1)."""
    if per_direction == 1:
        return f
    pairs = xp.reshape(f, (f.shape[0] // 2, 2))
    return pairs[:, 0] - pairs[:, 1]


def es_gradient(pop, f) -> dict:
    """g for every perturbed leaf of the whole population `pop` from its shaped fitness f (N,), in leaf
    shapes and dtypes: 1/(N σ) Σₖ wₖ εₖ; for an int8 leaf the integer estimate Σₖ wₖ Aₖ Bₖᵀ in float32."""
    xp = pop.xp
    w = direction_weights(xp, f, pop.layout.per_direction)
    scale = 1.0 / (pop.layout.size * pop.sigma)
    grads = {}
    for name, noise in pop.noise.items():
        dtype = pop.params[name].dtype
        dtype = dtype if is_floating_dtype(xp, dtype) else xp.float32  # an int8 leaf's estimate is float32
        grads[name] = noise.gradient(xp, pop.plans[name], w if w.dtype == dtype else xp.astype(w, dtype), scale)
    return grads
