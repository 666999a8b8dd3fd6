"""The fused CuPy kernel's CUDA source, compiled on the CPU, gives the portable path's draws.

`eggroll_np/_random_cupy.py` keeps its kernel in plain C++ apart from `__global__`, `__device__` and the
thread indices. Here a shim defines those, a launcher runs every (block, thread) of a launch in turn, and the
system's C++ compiler builds the very text CuPy compiles on a GPU into a shared library loaded with ctypes.
Uniforms and signs must equal the portable path bit for bit; normals must lie within 5 ulp of the exact
Box–Muller values of those uniforms (glibc's logf and sincosf, within 1 ulp each, stand in for CUDA's; see
`NORMAL_ULP`). This checks the Philox rounds, the conversions, the element layout and the grid-stride loop on
every machine with a compiler, before any GPU runs them.
"""

import ctypes
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import exact_normals, get_backend, ulp_distance
from hypothesis import given
from hypothesis import strategies as st

from eggroll_np import _philox, _random_cupy, random

KINDS = ("uniform", "normal", "rademacher")
DTYPES = (np.float32, np.float64)
GUARD = 16  # sentinel elements on each side of the output: a write past either end changes them
SENTINEL = -7.0
# z = √(−2 ln u₁)·cos a with ln, cos (and sin) within e_log and e_trig ulp, √ and × correctly rounded: relative
# error ≤ (e_log + 1 + 2·e_trig + 1)·2⁻²⁴ (√ halves ln's relative error, one ulp is at most 2·2⁻²⁴ relative), and
# one ulp of z is at least |z|·2⁻²⁴, so |z − z*| ≤ e_log + 2·e_trig + 2 ulp: 5 for glibc (1 ulp each).
NORMAL_ULP = 5

SHIM = r"""
#include <math.h>
struct egg_dim3 { unsigned int x, y, z; };
static egg_dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
"""

LAUNCHER = r"""
extern "C" void launch_%(name)s(unsigned int grid, unsigned int block, void* out, egg_u64 total, egg_u32 n_blocks,
                                egg_u64 n, egg_u32 start, egg_u32 stream_id, egg_u32 epoch, egg_u32 k0, egg_u32 k1) {
    gridDim.x = grid;
    blockDim.x = block;
    for (blockIdx.x = 0; blockIdx.x < grid; ++blockIdx.x)
        for (threadIdx.x = 0; threadIdx.x < block; ++threadIdx.x)
            %(name)s((%(ctype)s*)out, total, n_blocks, n, start, stream_id, epoch, k0, k1);
}
"""


def _compiler() -> str:
    found = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++")
    if found is None:
        pytest.skip("no C++ compiler (set CXX) to build the CUDA source on the CPU")
    return found


def _build(directory, source: str):
    """The kernel source with the shim and one launcher per kernel, built with g++ into a ctypes library."""
    launchers = "".join(
        LAUNCHER % {"name": name, "ctype": "float" if name.endswith("float32") else "double"}
        for name in _random_cupy.KERNEL_NAMES
    )
    path = directory / "kernels.cpp"
    path.write_text(SHIM + source + launchers, encoding="utf-8")
    library = directory / "kernels.so"
    command = [_compiler(), "-std=c++17", "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-o", library, path, "-lm"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the kernel source does not compile as C++:\n{done.stderr}"
    lib = ctypes.CDLL(str(library))
    u32, u64 = ctypes.c_uint32, ctypes.c_uint64
    for name in _random_cupy.KERNEL_NAMES:
        launch = getattr(lib, f"launch_{name}")
        launch.argtypes = [u32, u32, ctypes.c_void_p, u64, u32, u64, u32, u32, u32, u32, u32]
        launch.restype = None
    return lib


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("kernels"), _random_cupy.SOURCE)


def _kernel_draw(lib, kind, stream, directions, n, dtype, launch=None):
    """(D, n) draws from the compiled kernel, launched as `launch` = (grid, block) or as draw_cupy would.
    The output sits between two guard runs of sentinels, which must come back untouched."""
    lanes = _philox.lanes_per_block(kind, dtype)
    n_blocks = -(-n // lanes)
    total = len(directions) * n_blocks
    grid, block = launch or _random_cupy.launch_shape(total)
    buffer = np.full(len(directions) * n + 2 * GUARD, SENTINEL, dtype=dtype)
    out = buffer[GUARD:-GUARD]
    out[...] = np.nan  # an element the kernel never writes stays NaN and fails every comparison
    getattr(lib, f"launch_{_random_cupy.kernel_name(kind, dtype)}")(
        grid, block, out.ctypes.data, total, n_blocks, n, directions.start, stream.stream_id, stream.epoch, *stream.key
    )
    assert (buffer[:GUARD] == SENTINEL).all() and (buffer[-GUARD:] == SENTINEL).all(), "write outside the output"
    return out.reshape(len(directions), n)


def _portable(kind, stream, directions, n, dtype):
    xp = get_backend("numpy").xp
    return np.asarray(random.draw_portable(xp, kind, stream, directions, n, dtype=dtype, dev="cpu"))


def _assert_same_draws(kind, got, stream, directions, n, dtype):
    """Uniforms and signs: the portable path's bits. Normals: within NORMAL_ULP of the exact Box–Muller."""
    expected = _portable(kind, stream, directions, n, dtype)
    assert got.shape == expected.shape and got.dtype == expected.dtype == dtype
    if kind == "normal":
        assert np.isfinite(got).all()
        exact = exact_normals(stream, directions, n, dtype)
        assert ulp_distance(got.astype(np.float64), exact, dtype).max() <= NORMAL_ULP
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_kernel_source_gives_the_portable_draws_for_every_shape(kernels, kind, dtype):
    """Row lengths around every multiple of the lanes per block, the first and the last direction indices,
    and keys from small and large seeds and epochs."""
    streams = [random.derive_key(0, 0, 0), random.derive_key(2**64 - 1, 2**40 + 3, random.stream_id("layer.w"))]
    for stream in streams:
        for directions in (range(0, 1), range(3, 8), range(2**32 - 3, 2**32)):
            for n in (1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 1001):
                got = _kernel_draw(kernels, kind, stream, directions, n, dtype)
                _assert_same_draws(kind, got, stream, directions, n, dtype)


@given(
    kind=st.sampled_from(KINDS),
    use_float64=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 2**64 - 1),
    name=st.text(max_size=8),
    start=st.integers(0, 2**32 - 8),
    count=st.integers(1, 7),
    n=st.integers(1, 300),
)
def test_kernel_source_draws_equal_the_portable_draws_for_any_stream(
    kernels, kind, use_float64, seed, epoch, name, start, count, n
):
    dtype = np.float64 if use_float64 else np.float32
    stream = random.derive_key(seed, epoch, random.stream_id(name))
    directions = range(start, start + count)
    _assert_same_draws(kind, _kernel_draw(kernels, kind, stream, directions, n, dtype), stream, directions, n, dtype)


@pytest.mark.parametrize("launch", [(1, 1), (3, 7), (2, 256), (40, 32)])
def test_grid_stride_loop_covers_every_block_under_any_launch(kernels, launch):
    """Fewer threads than blocks (each thread loops) or more (the rest idle): the same draws."""
    stream = random.derive_key(11, 2, random.stream_id("w"))
    for kind in KINDS:
        for dtype in DTYPES:
            reference = _kernel_draw(kernels, kind, stream, range(5, 12), 257, dtype)
            got = _kernel_draw(kernels, kind, stream, range(5, 12), 257, dtype, launch)
            np.testing.assert_array_equal(got, reference)


def _stand_in_cupy(monkeypatch, lib) -> list[str]:
    """Run draw_cupy without a GPU: a stand-in `cupy` whose device memory is NumPy's and whose kernels are the
    CPU build of the source. Returns the list that each launch appends its kernel name to."""
    launches = []

    class Device:
        id = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    def kernel(name, device_id):
        def launch(grid, block, args):
            launches.append(name)
            out, *scalars = args
            getattr(lib, f"launch_{name}")(grid[0], block[0], out.ctypes.data, *map(int, scalars))

        return launch

    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(cuda=SimpleNamespace(Device=Device), empty=np.empty))
    monkeypatch.setattr(_random_cupy, "_kernel", kernel)
    return launches


@pytest.mark.parametrize("kind", KINDS)
def test_draw_cupy_gives_the_portable_draws_and_launches_nothing_for_an_empty_draw(kernels, monkeypatch, kind):
    """draw_cupy's own arguments (lanes, blocks, counter words) reach the kernel right; a draw with n = 0 or
    no directions is an empty (D, n) array without a launch."""
    launches = _stand_in_cupy(monkeypatch, kernels)
    stream = random.derive_key(6, 9, random.stream_id("w"))
    for dtype in DTYPES:
        got = _random_cupy.draw_cupy(kind, stream, range(5, 9), 37, dtype=dtype, dev=None)
        _assert_same_draws(kind, got, stream, range(5, 9), 37, dtype)
        for directions, n in ((range(0, 3), 0), (range(3, 3), 5), (range(3, 3), 0)):
            empty = _random_cupy.draw_cupy(kind, stream, directions, n, dtype=dtype, dev=None)
            assert empty.shape == (len(directions), n) and empty.dtype == dtype
    assert launches == [_random_cupy.kernel_name(kind, dtype) for dtype in DTYPES]


def test_launch_shape_has_256_threads_per_block_and_caps_the_grid():
    assert _random_cupy.launch_shape(1) == (1, 256)
    assert _random_cupy.launch_shape(257) == (2, 256)
    assert _random_cupy.launch_shape(10**12) == (_random_cupy.MAX_GRID, 256)


def test_every_draw_kind_and_dtype_has_its_kernel_in_the_source():
    for kind in KINDS:
        for dtype in DTYPES:
            name = _random_cupy.kernel_name(kind, dtype)
            assert name in _random_cupy.KERNEL_NAMES
            assert f"EGG_KERNEL({name}," in _random_cupy.SOURCE


def test_a_kernel_with_one_round_too_few_is_caught(tmp_path):
    """The comparison can fail: the same source with nine Philox rounds instead of ten gives other bits."""
    broken = _random_cupy.SOURCE.replace("round < 10", "round < 9")
    assert broken != _random_cupy.SOURCE
    lib = _build(tmp_path, broken)
    stream = random.derive_key(1, 0, 1)
    got = _kernel_draw(lib, "uniform", stream, range(0, 2), 40, np.float32)
    assert not np.array_equal(got, _portable("uniform", stream, range(0, 2), 40, np.float32))
