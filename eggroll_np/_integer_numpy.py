"""NumPy fast path of the int8 linear layer (`integer.mean_linear`, `integer.population_linear`): the same
integers, computed in float32 a cache-sized block of output rows at a time, so that the passes after the
matrix product (the correction, the division, floor, clip, the cast to int8) run in L2 instead of memory.

With t = yᵢ's pre-activation divided by 2^σ̂, t = x Wᵀ + sᵢ 2^−σ̂ (x Bₖ) Aₖᵀ, and the layer is
y = clip(⌊t / d⌋, −127, 127), d = d(n). Every step is exact in float32 wherever the result depends on it:

- x Wᵀ, x Bₖ and (x Bₖ) Aₖᵀ are integers below 2²⁴ (n · 127² and r · n · 127 · 16 · 16 < 2²⁴: n ≤ 516 at
  rank 1); scaling by ±2^−σ̂ is exact;
- y depends on t only for |t| < 128 d. There the sum has σ̂ fractional bits and fewer than 24 bits in all
  (128 d · 2^σ̂ < 2²⁴), so it is exact; beyond, rounding to nearest is monotone and 128 d is a float32, so
  the rounded t stays beyond and clips the same way;
- t / d, correctly rounded, floors to ⌊t / d⌋: within the range, t / d is an integer (exact) or lies at
  least 2^−σ̂ / d from one, more than half a float32 ulp at 128 (2^−17), since 2^σ̂ d < 2¹⁷.

Where a bound fails (a wider fan-in, a larger σ̂) `applies` says no and the portable int32 path runs.
tests/test_integer_numpy.py compares the two paths and an int64 reference.
"""

from __future__ import annotations

import numpy as np

from .integer import FACTOR_BOUND, INT8_MAX, divisor

__all__ = ["applies", "exp2_sums_numpy", "mean_linear_numpy", "norm_numpy", "population_linear_numpy"]

_FLOAT32_EXACT = 2**24
_BLOCK_BYTES = 512 * 1024  # float32 output rows per block, kept in L2 (2 MiB here) with the block's input


def applies(n: int, shift: int = 0, rank: int = 0) -> bool:
    """Whether every step of the module docstring is exact for fan-in n, σ = 2^−shift and rank-r noise (0:
    the mean parameters)."""
    products = n * INT8_MAX * max(INT8_MAX, rank * FACTOR_BOUND * FACTOR_BOUND)
    return products < _FLOAT32_EXACT and 128 * divisor(n) * 2**shift < _FLOAT32_EXACT


def _saturate_into(t, d: int, out) -> None:
    """out[...] = clip(⌊t / d⌋, −127, 127) as int8, t a float32 block overwritten on the way."""
    if d & (d - 1) == 0:
        t *= np.float32(1 / d)  # a power of two: exact
    else:
        np.divide(t, np.float32(d), out=t)
    np.floor(t, out=t)
    np.clip(t, -INT8_MAX, INT8_MAX, out=t)
    out[...] = t


def _rows_per_block(width: int) -> int:
    return max(1, _BLOCK_BYTES // (4 * width))


def mean_linear_numpy(weight, x):
    """clip(⌊x Wᵀ / d(n)⌋, ±127) as int8 (rows, m) for int8 x (rows, n) and W (m, n)."""
    m, n = weight.shape
    weight_t = weight.T.astype(np.float32)
    out = np.empty((x.shape[0], m), dtype=np.int8)
    step = _rows_per_block(m)
    for start in range(0, x.shape[0], step):
        block = slice(start, start + step)
        _saturate_into(x[block].astype(np.float32) @ weight_t, divisor(n), out[block])
    return out


def _corrections(projection, a_t, out):
    """(x Bₖ) Aₖᵀ for a block of directions, (K, rows, m): a broadcast product where r = 1."""
    out = out[: projection.shape[0]]
    if projection.shape[-1] == 1:
        return np.multiply(projection, a_t, out=out)
    return np.matmul(projection, a_t, out=out)


def population_linear_numpy(x, weight, noise, per_direction: int, shift: int, per_member: bool, rows: int):
    """clip(⌊(x Wᵀ + sᵢ 2^−σ̂ (x Bₖ) Aₖᵀ) / d(n)⌋, ±127) as int8 (N·rows, m) for every member: x (N·rows, n)
    per member (rows each) or (rows, n) shared."""
    m, n = weight.shape
    directions = noise.A.shape[0]
    d = divisor(n)
    weight_t = weight.T.astype(np.float32)
    a_t = np.ascontiguousarray(noise.A.transpose(0, 2, 1), dtype=np.float32)  # (D, r, m)
    b = noise.B.astype(np.float32)  # (D, n, r)
    signs = np.asarray([1.0, -1.0][:per_direction], dtype=np.float32) * np.float32(2.0**-shift)
    out = np.empty((directions, per_direction * rows, m), dtype=np.int8)
    step = max(1, _rows_per_block(m) // (per_direction * rows))
    if per_member:
        scratch = np.empty((min(step, directions), per_direction * rows, m), dtype=np.float32)
        grouped = np.reshape(x, (directions, per_direction * rows, n))
        row_signs = np.repeat(signs, rows)[None, :, None]
        for start in range(0, directions, step):
            block = slice(start, start + step)
            xb = grouped[block].astype(np.float32)
            t = np.reshape(np.reshape(xb, (-1, n)) @ weight_t, (*xb.shape[:2], m))
            t += _corrections(np.matmul(xb, b[block]) * row_signs, a_t[block], scratch)
            _saturate_into(t, d, out[block])
        return np.reshape(out, (directions * per_direction * rows, m))
    flat = x.astype(np.float32)
    base = flat @ weight_t  # (rows, m)
    projection = np.matmul(flat, b)  # (D, rows, r)
    members = np.reshape(out, (directions, per_direction, rows, m))
    scratch = np.empty((min(step, directions), rows, m), dtype=np.float32)
    for start in range(0, directions, step):
        block = slice(start, start + step)
        for member, sign in enumerate(signs):
            t = _corrections(projection[block] * sign, a_t[block], scratch)
            _saturate_into(np.add(t, base, out=t), d, members[block, member])
    return np.reshape(out, (directions * per_direction * rows, m))


def norm_numpy(v, scale: int):
    """EGG's norm clip(⌊scale · v / max(1, ⌊Σ|vⱼ| / D⌋)⌋, ±127) of int8 v (…, D) in float32, exact: the sum is
    an integer below 2²⁴; ⌊Σ / D⌋ ≤ 127 lies 1/D from a wrong floor, and ⌊scale · v / s⌋ (|scale · v| < 2¹²,
    s ≤ 127) 1/s from one, both more than half a float32 ulp at 2¹² (2⁻¹²), for D < 2¹²."""
    width = v.shape[-1]
    if width * INT8_MAX >= _FLOAT32_EXACT or width >= 2**12 or abs(scale) * INT8_MAX >= 2**12:
        raise ValueError(f"norm_numpy is exact for widths below 4096 and |scale · 127| < 4096; got {width}, {scale}")
    wide = v.astype(np.float32)
    divisor_ = np.floor(np.sum(np.abs(wide), axis=-1, keepdims=True) / np.float32(width))
    np.maximum(divisor_, 1, out=divisor_)
    wide *= np.float32(scale)
    np.divide(wide, divisor_, out=wide)
    np.floor(wide, out=wide)
    np.clip(wide, -INT8_MAX, INT8_MAX, out=wide)
    return wide.astype(np.int8)


def exp2_sums_numpy(logits, exp2):
    """(max l, Σᵥ EXP2[lᵥ − max l + 254]) over the last axis of int8 logits (…, V), both int32 (…): the
    gather a cache-sized block of rows at a time (all at once it moves an intp index and an int32 term per
    logit through memory; EGG's population forward spent a third of its time there)."""
    width = logits.shape[-1]
    flat = np.reshape(logits, (-1, width))
    offset = flat.max(axis=1).astype(np.intp) - (len(exp2) - 1)
    totals = np.empty(len(flat), dtype=np.int32)
    step = max(1, _BLOCK_BYTES // (8 * width))
    for start in range(0, len(flat), step):
        block = slice(start, start + step)
        index = flat[block].astype(np.intp)
        index -= offset[block, None]
        np.sum(exp2.take(index), axis=1, dtype=np.int32, out=totals[block])
    shape = logits.shape[:-1]
    return np.reshape(offset + (len(exp2) - 1), shape).astype(np.int32), np.reshape(totals, shape)
