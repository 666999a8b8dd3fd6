"""Integer EGGROLL: int8 leaves, integer noise, an exact integer forward pass, and the thresholded update.

An int8 leaf W (m, n) holds integers in [−127, 127]. Its noise is rank-r integer factors Aₖ (m, r), Bₖ (n, r)
whose entries are popcount(w) − 16 of one 32-bit Philox word w each: a centred Binomial(32, ½), in
[−16, 16], variance 8, drawn with integer operations only, so the same bits on every backend. σ must be a
power of two, σ = 2^−σ̂, and member i's weight is the dyadic rational Wᵢ = W + σ sᵢ Aₖ Bₖᵀ (no 1/√r: the
factors are integers).

The forward pass of a linear layer is integer arithmetic throughout. With d(n) = round(16 √n) (a power of
two, a shift, when n is a power of 4):

    yᵢ = clip(⌊ xᵢ Wᵢᵀ / d(n) ⌋, −127, 127) = clip(⌊ (2^σ̂ xᵢ Wᵀ + sᵢ (xᵢ Bₖ) Aₖᵀ) / (2^σ̂ d(n)) ⌋, −127, 127)

for int8 inputs x. x Wᵀ and x Bₖ are float32 matrix products, exact because every partial sum is an integer
below 2²⁴ (|x|, |W| ≤ 127 and n · 127² < 2²⁴, i.e. n ≤ 1040; x Bₖ needs n · 127 · 16 < 2²⁴), whatever the
summation order; wider fan-ins take an int32 product instead. Everything after is int32 and is refused
where it could overflow. The mean parameters take the same formula with ε = 0 (`mean_linear`).

The update (`optim.integer_step`) forms the integer estimate E = Σₖ wₖ Aₖ Bₖᵀ (wₖ = f₂ₖ − f₂ₖ₊₁, integers
for shaping="sign"), exactly, in chunks of directions whose float32 partial sums stay below 2²⁴, and moves
every weight whose |E| is among the largest fraction α of the leaf one step towards sign(E), saturating at
±127.
"""

from __future__ import annotations

import math

from ._array_api import device, is_numpy_namespace, is_traced

__all__ = [
    "FACTOR_BOUND",
    "INT8_MAX",
    "direction_estimate",
    "divisor",
    "exact_matmul",
    "integer_factors",
    "mean_linear",
    "population_linear",
    "population_rows",
    "sigma_shift",
    "threshold_step",
]

INT8_MAX = 127
FACTOR_BOUND = 16  # |entries of Aₖ, Bₖ| ≤ 16
_FLOAT32_EXACT = 2**24
_INT32_LIMIT = 2**31 - 1
_MAX_SHIFT = 16


def divisor(n: int) -> int:
    """d(n) = round(16 √n): the scale of a fan-in of n (16 · 2^j exactly when n = 4^j)."""
    return round(16 * math.sqrt(n))


def sigma_shift(sigma: float) -> int:
    """σ̂ with σ = 2^−σ̂, an integer in [0, 16]; a σ that is not such a power of two is refused."""
    if is_traced(sigma):
        raise ValueError(
            "int8 leaves need σ = 2^-k known when the forward is traced, but this σ is traced (a σ schedule inside "
            "jax.jit or lax.scan); pass a constant sigma, such as sigma=1/16"
        )
    shift = -math.log2(sigma) if sigma > 0 else math.inf
    if not (math.isfinite(shift) and shift == round(shift) and 0 <= shift <= _MAX_SHIFT):
        raise ValueError(
            f"sigma={sigma!r}: int8 leaves need σ = 2^-k with an integer k in [0, {_MAX_SHIFT}], for example "
            "sigma=1/16 (k = 4)"
        )
    return round(shift)


def _popcount(xp, words):
    """The number of set bits of each uint32 word (SWAR, without a multiply that could wrap)."""
    v = words - ((words >> 1) & 0x55555555)
    v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
    v = (v + (v >> 4)) & 0x0F0F0F0F
    return (v & 0xFF) + ((v >> 8) & 0xFF) + ((v >> 16) & 0xFF) + (v >> 24)


def integer_factors(xp, stream, directions: range, n: int, dev):
    """(D, n) int8 entries popcount(w) − 16 of the stream's words: element e from block e // 4, lane e % 4."""
    from . import random

    words = random.random_bits(xp, stream, directions, -(-n // 4), dev)
    counts = xp.stack([_popcount(xp, w) for w in words], axis=-1)
    d = counts.shape[0]
    flat = xp.reshape(counts, (d, counts.shape[1] * 4))[:, :n]
    return xp.astype(xp.astype(flat, xp.int32) - 16, xp.int8)


def exact_matmul(xp, a, b, bound: int):
    """a @ b of integer arrays as int32, exactly: a float32 product where every partial sum is below 2²⁴
    (`bound` bounds Σ|aᵢⱼ bⱼₖ| over a row), an int32 product otherwise (refused past int32)."""
    if bound >= _INT32_LIMIT:
        raise ValueError(f"an integer product of bound {bound} would overflow int32; use smaller fan-ins")
    if a.ndim > 2 and b.ndim == 2:  # one 2-D product: a stack of small ones is several times slower on BLAS
        rows = xp.reshape(a, (-1, a.shape[-1]))
        return xp.reshape(exact_matmul(xp, rows, b, bound), (*a.shape[:-1], b.shape[-1]))
    if bound < _FLOAT32_EXACT:
        return xp.astype(xp.astype(a, xp.float32) @ xp.astype(b, xp.float32), xp.int32)
    return xp.astype(a, xp.int32) @ xp.astype(b, xp.int32)


def _check_input(xp, x, name: str) -> None:
    if x.dtype != xp.int8:
        raise TypeError(f"linear({name!r}) of an int8 leaf needs int8 inputs, got dtype {x.dtype}")


def _saturate(xp, z, scale: int):
    """clip(⌊z / scale⌋, −127, 127) as int8."""
    return xp.astype(xp.clip(z // scale, -INT8_MAX, INT8_MAX), xp.int8)


def mean_linear(xp, weight, x, name: str, *, portable: bool = False):
    """clip(⌊x Wᵀ / d(n)⌋, −127, 127) for int8 W (m, n) and int8 x (..., n) → int8 (..., m); on NumPy the
    blocked float32 path of `_integer_numpy` where it is exact, unless `portable`."""
    _check_input(xp, x, name)
    m, n = weight.shape
    flat = xp.reshape(x, (-1, n))
    if not portable and is_numpy_namespace(xp):
        from . import _integer_numpy

        if _integer_numpy.applies(n):
            return xp.reshape(_integer_numpy.mean_linear_numpy(weight, flat), (*x.shape[:-1], m))
    base = exact_matmul(xp, flat, xp.matrix_transpose(weight), n * INT8_MAX * INT8_MAX)
    return xp.reshape(_saturate(xp, base, divisor(n)), (*x.shape[:-1], m))


def _outer(xp, projection, a_t):
    """projection @ a_t for int32 (D, rows, r) and (D, r, m): a broadcast product where r = 1 (integer
    matrix products have no BLAS kernel and are several times slower)."""
    if projection.shape[-1] == 1:
        return projection * a_t
    return projection @ a_t


def population_linear(pop, x, plan, weight, noise, per_member: bool, middle: tuple, *, portable: bool = False):
    """yᵢ = clip(⌊(2^σ̂ xᵢ Wᵀ + sᵢ (xᵢ Bₖ) Aₖᵀ) / (2^σ̂ d(n))⌋, −127, 127) for every member: (N, *middle, m);
    on NumPy the blocked float32 path of `_integer_numpy` where it is exact, unless `portable`."""
    xp, layout = pop.xp, pop.layout
    _check_input(xp, x, plan.name)
    m, n = weight.shape
    rank = noise.A.shape[-1]
    shift = sigma_shift(pop.sigma)
    base_bound = n * INT8_MAX * INT8_MAX
    projection_bound = n * INT8_MAX * FACTOR_BOUND
    total_bound = (base_bound << shift) + rank * projection_bound * FACTOR_BOUND
    if total_bound >= _INT32_LIMIT:
        raise ValueError(
            f"linear({plan.name!r}): fan-in {n}, rank {rank} and σ = 2^-{shift} could overflow int32; use a "
            "smaller fan-in, rank or σ̂"
        )
    rows = math.prod(middle)
    if not portable and is_numpy_namespace(xp):
        from . import _integer_numpy

        if _integer_numpy.applies(n, shift, rank):
            flat = _integer_numpy.population_linear_numpy(
                x, weight, noise, layout.per_direction, shift, per_member, rows
            )
            return xp.reshape(flat, (layout.size, *middle, m))
    weight_t = xp.matrix_transpose(weight)
    a_t = xp.astype(xp.matrix_transpose(noise.A), xp.int32)  # (D, r, m)
    if per_member:
        grouped = xp.reshape(x, (layout.directions, layout.per_direction * rows, n))
        base = exact_matmul(xp, grouped, weight_t, base_bound)
        projection = exact_matmul(xp, grouped, noise.B, projection_bound)  # (D, P·rows, r)
        if layout.per_direction == 2:  # sᵢ on the small projection, not on the (D, P·rows, m) correction
            plus = xp.ones((rows,), dtype=xp.int32, device=device(x))
            projection = projection * xp.reshape(xp.concat([plus, -plus]), (1, 2 * rows, 1))
        z = base * (2**shift) + _outer(xp, projection, a_t)
    else:
        flat = xp.reshape(x, (rows, n))
        base = exact_matmul(xp, flat, weight_t, base_bound) * (2**shift)  # (rows, m)
        correction = _outer(xp, exact_matmul(xp, flat, noise.B, projection_bound), a_t)  # (D, rows, m)
        z = base + correction if layout.per_direction == 1 else xp.stack([base + correction, base - correction], axis=1)
    y = _saturate(xp, z, divisor(n) << shift)
    return xp.reshape(y, (layout.size, *middle, m))


def population_rows(pop, noise, value, ids, per_member: bool):
    """Rows `ids` of every member's int8 table, rounded down: ⌊(2^σ̂ W[ids] + sᵢ Aₖ[ids] Bₖᵀ) / 2^σ̂⌋ clipped to
    ±127, as int8 (N, count, d); ids (N·count,) per member or (count,) shared."""
    from .noise import _gather

    xp, layout = pop.xp, pop.layout
    shift = sigma_shift(pop.sigma)
    b_t = xp.astype(xp.matrix_transpose(noise.B), xp.int32)  # (D, r, d)
    count = ids.shape[0] // (layout.size if per_member else 1)
    base = xp.astype(xp.take(value, ids, axis=0), xp.int32) * (2**shift)
    if per_member:
        grouped = xp.reshape(ids, (layout.directions, layout.per_direction * count))
        rows = xp.astype(_gather(xp, noise.A, grouped, True), xp.int32)  # (D, P·count, r)
        if layout.per_direction == 2:
            plus = xp.ones((count,), dtype=xp.int32, device=device(value))
            rows = rows * xp.reshape(xp.concat([plus, -plus]), (1, 2 * count, 1))
        correction = _outer(xp, rows, b_t)  # (D, P·count, d)
        z = xp.reshape(base, correction.shape) + correction
    else:
        correction = _outer(xp, xp.astype(_gather(xp, noise.A, ids, False), xp.int32), b_t)  # (D, count, d)
        z = base + correction if layout.per_direction == 1 else xp.stack([base + correction, base - correction], axis=1)
    return xp.reshape(_saturate(xp, z, 2**shift), (layout.size, count, value.shape[1]))


def direction_estimate(xp, A, B, w):
    """E = Σₖ wₖ Aₖ Bₖᵀ (m, n) as float32, computed exactly for integer |wₖ| ≤ 2: float32 products over chunks
    of directions small enough that every partial sum stays below 2²⁴, summed in int32."""
    directions, _, rank = A.shape
    per_term = 2 * FACTOR_BOUND * FACTOR_BOUND
    chunk = max(1, (_FLOAT32_EXACT - 1) // (per_term * rank))
    if per_term * rank * directions >= _INT32_LIMIT:
        raise ValueError(f"{directions} directions of rank {rank} could overflow the int32 update estimate")
    weighted = xp.astype(A, xp.float32) * xp.reshape(xp.astype(w, xp.float32), (directions, 1, 1))
    factors = xp.astype(B, xp.float32)
    total = None
    for start in range(0, directions, chunk):
        stop = min(start + chunk, directions)
        part = xp.tensordot(weighted[start:stop, ...], factors[start:stop, ...], axes=((0, 2), (0, 2)))
        part = xp.astype(part, xp.int32)
        total = part if total is None else total + part
    return xp.astype(total, xp.float32)


def threshold_step(xp, estimate, weight, fraction: float):
    """The int8 step that moves the weights whose |E| is among the ⌈fraction · size⌉ largest (ties included,
    zeros never) one unit towards sign(E), saturating at ±127: clip(W + sign(E)·moved, −127, 127) − W."""
    magnitude = xp.reshape(xp.abs(estimate), (-1,))
    size = magnitude.shape[0]
    keep = min(size, max(1, math.ceil(fraction * size)))
    threshold = xp.sort(magnitude)[size - keep]
    moved = (xp.abs(estimate) >= threshold) & (estimate != 0)
    direction = xp.where(moved, xp.astype(xp.sign(estimate), xp.int16), xp.zeros_like(weight, dtype=xp.int16))
    wide = xp.astype(weight, xp.int16)
    return xp.astype(xp.clip(wide + direction, -INT8_MAX, INT8_MAX) - wide, xp.int8)
