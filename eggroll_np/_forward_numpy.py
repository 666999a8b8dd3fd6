"""NumPy fast path of `forward.linear` for low-rank leaves: the shared GEMM into a fresh output, then the
rank-r corrections added in place, a cache-sized block of directions at a time, so the only temporaries
are one block's correction and the small (x Bₖ) factors.

Same result as the portable path up to rounding (tests/test_forward.py compares them).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["lowrank_linear_numpy"]

_BLOCK_BYTES = 256 * 1024  # one block of output rows, kept in L2 while its correction is added


def _block_directions(rows_per_direction: int, width: int, itemsize: int) -> int:
    return max(1, _BLOCK_BYTES // max(1, rows_per_direction * width * itemsize))


_VECDOT_MIN_WIDTH = 64  # below this input width NumPy's vecdot loop is slower than batched matmul (5× at n = 16)


def _coefficients(x_block, b_block):
    """x Bₖ for a block of directions, (K, c, r): a row-wise dot product when r = 1 and rows are long (faster
    than matmul there: 0.66 against 0.80 ms at K = 1024, c = 2, n = 1024), else a batched matmul."""
    if b_block.shape[-1] == 1 and x_block.shape[-1] >= _VECDOT_MIN_WIDTH:
        return np.vecdot(x_block, b_block[:, None, :, 0])[..., None]
    return np.matmul(x_block, b_block)


def _correction(coefficients, a_block, out):
    """out = (x Bₖ) Aₖᵀ for a block: a broadcast outer product when r = 1, else a batched matmul over the
    contiguous Aₖᵀ (the noise layout stores A column by column for this)."""
    out = out[: coefficients.shape[0]]
    if coefficients.shape[-1] == 1:
        return np.multiply(coefficients, a_block[:, None, :, 0], out=out)
    return np.matmul(coefficients, a_block.transpose(0, 2, 1), out=out)


def lowrank_linear_numpy(x, weight, noise, per_direction: int, sigma: float, per_member: bool, rows: int):
    """(N·rows, m) outputs yᵢ = xᵢ Wᵀ + (σ sᵢ/√r) (xᵢ Bₖ) Aₖᵀ, sᵢ = ±1 within each direction's P members."""
    a, b = noise.A, noise.B
    directions, m = a.shape[0], a.shape[1]
    scale = sigma / math.sqrt(a.shape[-1])
    n = weight.shape[1]
    signs = np.asarray([scale, -scale][:per_direction], dtype=a.dtype)
    if per_member:
        x = np.reshape(x, (directions, per_direction * rows, n))
        out = np.matmul(np.reshape(x, (directions * per_direction * rows, n)), weight.T).reshape(
            directions, per_direction * rows, m
        )
        step = _block_directions(per_direction * rows, m, out.itemsize)
        row_signs = np.repeat(signs, rows)[None, :, None]
        scratch = np.empty((min(step, directions), per_direction * rows, m), dtype=out.dtype)
        for start in range(0, directions, step):
            block = slice(start, start + step)
            coefficients = _coefficients(x[block], b[block])
            coefficients *= row_signs
            out[block] += _correction(coefficients, a[block], scratch)
        return out.reshape(directions * per_direction * rows, m)
    x = np.reshape(x, (rows, n))
    base = x @ weight.T
    rank = b.shape[-1]
    coefficients = (x @ b.transpose(1, 0, 2).reshape(n, directions * rank)).reshape(rows, directions, rank)
    coefficients = coefficients.transpose(1, 0, 2) * scale
    out = np.empty((directions, per_direction, rows, m), dtype=np.result_type(base, a))
    step = _block_directions(rows, m, out.itemsize)
    scratch = np.empty((min(step, directions), rows, m), dtype=out.dtype)
    for start in range(0, directions, step):
        block = slice(start, start + step)
        correction = _correction(coefficients[block], a[block], scratch)
        np.add(base, correction, out=out[block, 0])
        if per_direction == 2:
            np.subtract(base, correction, out=out[block, 1])
    return out.reshape(directions * per_direction * rows, m)
