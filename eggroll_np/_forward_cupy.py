"""CuPy fast path of `forward.linear` for low-rank leaves: the shared GEMM (cuBLAS), the small coefficients
c = (σ sᵢ/√r)·(xᵢ Bₖ) (a batched product: N·rows × r values), then one fused kernel that adds Σⱼ cⱼ Aₖ[:, j]
to each output row in place (per-member inputs), or writes base ± Σⱼ cⱼ Aₖ[:, j] for both members of a
pair (a shared input). The portable path makes three output-sized temporaries instead (the correction, its
signed copy and the sum); on the paper's 8192 × 8192 layer they cost a tenth of the forward pass
(bench/gpu_check.py measures both).

Same result as the portable path up to rounding (tests/test_cupy.py compares them).
"""

from __future__ import annotations

import functools
import math

__all__ = ["lowrank_linear_cupy"]

# i runs over the output (D·P·rows, m) row-major; row q belongs to direction q / (P·rows).
_ADD_PER_MEMBER = r"""
const long long j = i % m;
const long long q = i / m;
const long long d = q / rows_per_direction;
T acc = 0;
for (long long r = 0; r < rank; ++r) acc += coef[q * rank + r] * at[(d * rank + r) * m + j];
out += acc;
"""

# i runs over the output (D, P, rows, m) row-major; slot p = 1 is the antithetic partner (minus sign).
_PAIRS_OF_SHARED = r"""
const long long j = i % m;
long long t = i / m;
const long long row = t % rows;
t /= rows;
const long long p = t % per_direction;
const long long d = t / per_direction;
T acc = 0;
for (long long r = 0; r < rank; ++r) acc += coef[(d * rows + row) * rank + r] * at[(d * rank + r) * m + j];
const T b = base[row * m + j];
out = p == 0 ? b + acc : b - acc;
"""


@functools.cache
def _kernels():
    import cupy

    add_per_member = cupy.ElementwiseKernel(
        "raw T coef, raw T at, int64 rank, int64 rows_per_direction, int64 m",
        "T out",
        _ADD_PER_MEMBER,
        "eggroll_lowrank_add_per_member",
    )
    pairs_of_shared = cupy.ElementwiseKernel(
        "raw T base, raw T coef, raw T at, int64 rank, int64 per_direction, int64 rows, int64 m",
        "T out",
        _PAIRS_OF_SHARED,
        "eggroll_lowrank_pairs_of_shared",
    )
    return add_per_member, pairs_of_shared


def lowrank_linear_cupy(x, weight, noise, per_direction: int, sigma: float, per_member: bool, rows: int):
    """(N·rows, m) outputs yᵢ = xᵢ Wᵀ + (σ sᵢ/√r) (xᵢ Bₖ) Aₖᵀ, sᵢ = ±1 within each direction's P members."""
    import cupy

    add_per_member, pairs_of_shared = _kernels()
    a, b = noise.A, noise.B
    directions, m, rank = a.shape
    scale = sigma / math.sqrt(rank)
    n = weight.shape[1]
    dtype = cupy.result_type(x, weight, a)
    a_t = cupy.ascontiguousarray(a.transpose(0, 2, 1), dtype=dtype)  # (D, r, m): the stored layout, no copy
    if per_member:
        x = cupy.reshape(x, (directions, per_direction * rows, n))
        out = cupy.ascontiguousarray(cupy.reshape(x, (directions * per_direction * rows, n)) @ weight.T, dtype=dtype)
        signs = cupy.asarray([scale, -scale][:per_direction], dtype=dtype)
        coefficients = (x @ b).reshape(directions, per_direction, rows, rank) * signs.reshape(1, -1, 1, 1)
        coefficients = cupy.ascontiguousarray(coefficients, dtype=dtype)
        add_per_member(coefficients, a_t, rank, per_direction * rows, m, out)
        return out
    x = cupy.reshape(x, (rows, n))
    base = cupy.ascontiguousarray(x @ weight.T, dtype=dtype)
    coefficients = (x @ b.transpose(1, 0, 2).reshape(n, directions * rank)).reshape(rows, directions, rank)
    coefficients = cupy.ascontiguousarray(coefficients.transpose(1, 0, 2) * scale, dtype=dtype)
    out = cupy.empty((directions * per_direction * rows, m), dtype=dtype)
    pairs_of_shared(base, coefficients, a_t, rank, per_direction, rows, m, out)
    return out
