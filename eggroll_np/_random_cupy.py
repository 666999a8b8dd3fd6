"""CuPy fast path of `random`: one fused CUDA kernel that runs Philox4x32-10 and writes the uniforms,
normals or signs straight into the (D, n) output, where the portable path launches a hundred-odd
elementwise kernels with (D, n_blocks) temporaries between them.

Thread t computes block b = t mod n_blocks of row d = t div n_blocks: the counter (b, start + d, stream id,
epoch), ten rounds under the round keys (k₀ + j·W₀, k₁ + j·W₁), then elements e = b·L + l < n of row d with
the portable path's conversions:

    uniform     float32: top24(w)·2⁻²⁴ + 2⁻²⁵      float64: top53(w₀, w₁)·2⁻⁵³ + 2⁻⁵⁴
    normal      Box–Muller on consecutive uniforms: z = √(−2 ln u₁)·(cos 2πu₂, sin 2πu₂)
    rademacher  1 − 2·(w >> 31)

Uniforms and signs are bit-identical to the portable path. Normals use CUDA's accurate logf, sqrtf and
sincosf (1, 0 and 2 ulp in NVIDIA's tables; log, sqrt and sincos in float64), never the fast-math
intrinsics, and the source is compiled with --fmad=false: within 7 ulp of the exact Box–Muller values of
the same uniforms by those tables (the gpu tests' bound; the CPU build of this source stays within 5; an
H200 measured 3.05), so within a few ulp of every other backend.

The source is plain C++ apart from `__global__`, `__device__` and the thread indices, so
tests/test_random_cupy_source.py compiles the same text on the CPU with a small shim and compares it with the
portable path: the kernel is checked wherever a C++ compiler exists, not only on a GPU.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._philox import PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1, StreamKey, lanes_per_block

__all__ = ["KERNEL_NAMES", "SOURCE", "draw_cupy", "kernel_name", "launch_shape"]

BLOCK_THREADS = 256
MAX_GRID = 65536  # threads beyond grid·block loop over the rest (grid-stride loop)

_CONSTANTS = {"EGG_M0": PHILOX_M0, "EGG_M1": PHILOX_M1, "EGG_W0": PHILOX_W0, "EGG_W1": PHILOX_W1}
SOURCE = (
    "".join(f"#define {name} {value}u\n" for name, value in _CONSTANTS.items())
    + r"""
typedef unsigned int egg_u32;
typedef unsigned long long egg_u64;

/* Ten Philox4x32 rounds in place: (x0, x1, x2, x3) <- (hi(M1 x2) ^ x1 ^ k0, lo(M1 x2), hi(M0 x0) ^ x3 ^ k1,
   lo(M0 x0)), the key bumped by (W0, W1) after each round. */
__device__ void egg_philox(egg_u32 x[4], egg_u32 k0, egg_u32 k1) {
    for (int round = 0; round < 10; ++round) {
        egg_u64 p0 = (egg_u64)EGG_M0 * x[0];
        egg_u64 p1 = (egg_u64)EGG_M1 * x[2];
        egg_u32 y0 = (egg_u32)(p1 >> 32) ^ x[1] ^ k0;
        egg_u32 y2 = (egg_u32)(p0 >> 32) ^ x[3] ^ k1;
        x[0] = y0;
        x[1] = (egg_u32)p1;
        x[2] = y2;
        x[3] = (egg_u32)p0;
        k0 += EGG_W0;
        k1 += EGG_W1;
    }
}

/* top24(w) 2^-24 + 2^-25: both products exact, one rounding in the sum. */
__device__ float egg_uniform24(egg_u32 w) {
    return (float)(w >> 8) * 5.9604644775390625e-08f + 2.98023223876953125e-08f;
}

/* top53(hi, lo) 2^-53 + 2^-54, top53 = (hi >> 5) 2^26 + (lo >> 6). */
__device__ double egg_uniform53(egg_u32 hi, egg_u32 lo) {
    double top = (double)(((egg_u64)(hi >> 5) << 26) | (egg_u64)(lo >> 6));
    return top * 1.1102230246251565404236316680908203125e-16 + 5.5511151231257827021181583404541015625e-17;
}

/* Box-Muller: z = sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2), 2 pi rounded to the float's precision first. */
__device__ void egg_box_muller32(float u1, float u2, float* z) {
    float radius = sqrtf(-2.0f * logf(u1));
    float s, c;
    sincosf((float)6.283185307179586 * u2, &s, &c);
    z[0] = radius * c;
    z[1] = radius * s;
}

__device__ void egg_box_muller64(double u1, double u2, double* z) {
    double radius = sqrt(-2.0 * log(u1));
    double s, c;
    sincos(6.283185307179586 * u2, &s, &c);
    z[0] = radius * c;
    z[1] = radius * s;
}

/* Conversions of one block's four words into its LANES elements. */
struct EggUniform32 {
    typedef float T;
    static const int LANES = 4;
    __device__ static void fill(const egg_u32* w, float* v) {
        for (int l = 0; l < 4; ++l) v[l] = egg_uniform24(w[l]);
    }
};

struct EggUniform64 {
    typedef double T;
    static const int LANES = 2;
    __device__ static void fill(const egg_u32* w, double* v) {
        v[0] = egg_uniform53(w[0], w[1]);
        v[1] = egg_uniform53(w[2], w[3]);
    }
};

struct EggNormal32 {
    typedef float T;
    static const int LANES = 4;
    __device__ static void fill(const egg_u32* w, float* v) {
        egg_box_muller32(egg_uniform24(w[0]), egg_uniform24(w[1]), v);
        egg_box_muller32(egg_uniform24(w[2]), egg_uniform24(w[3]), v + 2);
    }
};

struct EggNormal64 {
    typedef double T;
    static const int LANES = 2;
    __device__ static void fill(const egg_u32* w, double* v) {
        egg_box_muller64(egg_uniform53(w[0], w[1]), egg_uniform53(w[2], w[3]), v);
    }
};

template <typename F>
struct EggRademacher {
    typedef F T;
    static const int LANES = 4;
    __device__ static void fill(const egg_u32* w, F* v) {
        for (int l = 0; l < 4; ++l) v[l] = (F)1 - (F)2 * (F)(w[l] >> 31);
    }
};

/* Grid-stride loop over the (rows x n_blocks) blocks; element b LANES + l of row d goes to out[d n + ...]. */
template <typename K>
__device__ void egg_draw(typename K::T* out, egg_u64 total, egg_u32 n_blocks, egg_u64 n, egg_u32 start,
                         egg_u32 stream_id, egg_u32 epoch, egg_u32 k0, egg_u32 k1) {
    egg_u64 stride = (egg_u64)gridDim.x * blockDim.x;
    for (egg_u64 t = (egg_u64)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        egg_u64 row = t / n_blocks;
        egg_u32 block = (egg_u32)(t - row * n_blocks);
        egg_u32 x[4] = {block, start + (egg_u32)row, stream_id, epoch};
        egg_philox(x, k0, k1);
        typename K::T v[K::LANES];
        K::fill(x, v);
        egg_u64 first = (egg_u64)block * K::LANES;
        typename K::T* dst = out + row * n + first;
        for (int l = 0; l < K::LANES; ++l) {
            if (first + l < n) dst[l] = v[l];
        }
    }
}

#define EGG_KERNEL(NAME, K)                                                                              \
    extern "C" __global__ void NAME(K::T* out, egg_u64 total, egg_u32 n_blocks, egg_u64 n, egg_u32 start, \
                                    egg_u32 stream_id, egg_u32 epoch, egg_u32 k0, egg_u32 k1) {           \
        egg_draw<K>(out, total, n_blocks, n, start, stream_id, epoch, k0, k1);                           \
    }

EGG_KERNEL(eggroll_uniform_float32, EggUniform32)
EGG_KERNEL(eggroll_uniform_float64, EggUniform64)
EGG_KERNEL(eggroll_normal_float32, EggNormal32)
EGG_KERNEL(eggroll_normal_float64, EggNormal64)
EGG_KERNEL(eggroll_rademacher_float32, EggRademacher<float>)
EGG_KERNEL(eggroll_rademacher_float64, EggRademacher<double>)
"""
)

KERNEL_NAMES = tuple(
    f"eggroll_{kind}_{dtype}" for kind in ("uniform", "normal", "rademacher") for dtype in ("float32", "float64")
)
OPTIONS = ("--fmad=false",)


def kernel_name(kind: str, dtype) -> str:
    """The kernel of a draw kind and dtype: eggroll_<kind>_<float32|float64>."""
    return f"eggroll_{kind}_{np.dtype(dtype).name}"


def launch_shape(total: int) -> tuple[int, int]:
    """(grid, block) for `total` threads: 256 per block, at most 65 536 blocks (the rest loop)."""
    return min(MAX_GRID, -(-total // BLOCK_THREADS)), BLOCK_THREADS


@lru_cache(maxsize=16)
def _module(device_id: int):
    import cupy

    with cupy.cuda.Device(device_id):
        return cupy.RawModule(code=SOURCE, options=OPTIONS)


@lru_cache(maxsize=64)
def _kernel(name: str, device_id: int):
    """The compiled kernel on one device (the module is compiled once per device, on first use)."""
    import cupy

    with cupy.cuda.Device(device_id):
        return _module(device_id).get_function(name)


def draw_cupy(kind: str, stream: StreamKey, directions: range, n: int, *, dtype, dev):
    """(D, n) draws of `kind` on `dev` (a cupy.cuda.Device; None: the current device): one kernel launch over
    the D·⌈n / L⌉ blocks, none for an empty draw."""
    import cupy

    device = dev if isinstance(dev, cupy.cuda.Device) else cupy.cuda.Device()
    n_blocks = -(-n // lanes_per_block(kind, dtype))
    total = len(directions) * n_blocks
    with device:
        out = cupy.empty((len(directions), n), dtype=dtype)
        if total:
            grid, block = launch_shape(total)
            key0, key1 = stream.key
            args = (
                out,
                np.uint64(total),
                np.uint32(n_blocks),
                np.uint64(n),
                np.uint32(directions.start),
                np.uint32(stream.stream_id),
                np.uint32(stream.epoch),
                np.uint32(key0),
                np.uint32(key1),
            )
            _kernel(kernel_name(kind, dtype), device.id)((grid,), (block,), args)
    return out
