"""CuPy on a CUDA GPU: the fused noise kernel against the portable path and NumPy, no host waits inside
ask, the forward pass and tell, float32 by default, TF32 off, and the command line end to end.

The tests marked `gpu` skip themselves where CuPy or a CUDA device is missing (tests/conftest.py); the
backend-parametrized properties of the other test modules run on CuPy through their `cupy` parameter.
"""

import contextlib
import json
import os
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from helpers import exact_normals, get_backend, np_of, ulp_distance
from hypothesis import given

import eggroll_np as egg
from eggroll_np import forward, random

gpu = pytest.mark.gpu
ROOT = Path(__file__).resolve().parent.parent
KINDS = ("uniform", "normal", "rademacher")
DTYPES = ("float32", "float64")

# A normal z = √(−2 ln u₁)·cos 2πu₂ computed with ln and cos (or sin) within e_log and e_trig ulp, √ and ×
# correctly rounded, lies within e_log + 2·e_trig + 2 ulp of the exact value of the same uniforms (derivation:
# tests/test_random_cupy_source.py). CUDA documents logf within 1 ulp and sincosf within 2 (log and sincos
# likewise in float64): 7 ulp.
CUDA_NORMAL_ULP = 7
# NumPy's float32 log and cos measured within 3.67 and 1.42 ulp on this project's machine (8.5 ulp by the same
# bound), so NumPy's and CuPy's normals lie within 7 + 8.5 < 16 ulp of each other.
NUMPY_CUPY_NORMAL_ULP = 16

STREAMS = (
    random.derive_key(0, 0, 0),
    random.derive_key(2**64 - 1, 2**40 + 3, random.stream_id("layer.w")),
)
SHAPES = ((range(0, 1), 1), (range(3, 8), 5), (range(2**32 - 3, 2**32), 65), (range(0, 64), 4099))


def _cupy():
    """(cupy, xp, device) of the CuPy backend."""
    import cupy

    backend = get_backend("cupy")
    return cupy, backend.xp, backend.device


def test_the_package_imports_cupy_only_when_cupy_arrays_arrive():
    """A NumPy run never imports CuPy (nor JAX): the CuPy kernel module is loaded on the first CuPy draw."""
    code = (
        "import sys, numpy as np, eggroll_np as egg\n"
        "es = egg.EGGROLL(population_size=4)\n"
        "state = es.init({'w': np.zeros((3, 2), np.float32)})\n"
        "es.tell(state, es.ask(state), np.arange(4.0))\n"
        "print(sorted(name for name in ('cupy', 'jax', 'eggroll_np._random_cupy') if name in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# ---- the fused forward correction -----------------------------------------------------------------------


@gpu
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("per_member", [True, False])
@given(
    m=st.integers(1, 70),
    n=st.integers(1, 70),
    rank=st.integers(1, 4),
    half=st.integers(1, 40),
    rows=st.integers(1, 5),
    antithetic=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_fused_forward_matches_the_portable_path(dtype_name, per_member, m, n, rank, half, rows, antithetic, seed):
    """forward.linear's CuPy kernels against linear_portable: the same sums, rounded in another order."""
    cupy, xp, dev = _cupy()
    dtype = getattr(xp, dtype_name)
    population_size = 2 * half
    rng = np.random.default_rng(seed)
    es = egg.EGGROLL(population_size=population_size, sigma=0.3, rank=rank, seed=seed, antithetic=antithetic)
    pop = es.ask(es.init({"w": xp.asarray(rng.standard_normal((m, n)), dtype=dtype, device=dev)}))
    x = xp.asarray(rng.standard_normal(((population_size,) if per_member else ()) + (rows, n)), dtype=dtype, device=dev)
    fused = forward.linear(pop, "w", x, shared=not per_member)
    portable = forward.linear_portable(pop, "w", x, shared=not per_member)
    assert isinstance(fused, cupy.ndarray) and fused.dtype == portable.dtype == dtype
    assert fused.shape == portable.shape == (population_size, rows, m)
    # Each side rounds at most n + r + 8 times on terms bounded by |x|·(|W| + σ|A||B|)·n.
    u = 2.0**-24 if dtype_name == "float32" else 2.0**-53
    a, b = (float(xp.max(xp.abs(f))) for f in pop.noise["w"])
    bound = float(xp.max(xp.abs(x))) * (float(xp.max(xp.abs(pop.params["w"]))) + pop.sigma * a * b * rank) * n
    np.testing.assert_allclose(np_of(fused), np_of(portable), rtol=0, atol=2 * (n + rank + 8) * u * bound)
    # The check can fail: one member without its correction is far outside the bound.
    broken = np_of(fused).copy()
    broken[0] = np_of(x[0] if per_member else x) @ np_of(pop.params["w"]).T
    assert np.abs(broken - np_of(portable)).max() > 2 * (n + rank + 8) * u * bound


# ---- the fused kernel ---------------------------------------------------------------------------------


@gpu
@pytest.mark.parametrize("dtype_name", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_fused_kernel_gives_the_portable_draws_on_the_gpu(kind, dtype_name):
    """Uniforms and signs bit for bit; normals of both paths within CUDA_NORMAL_ULP of the exact values."""
    cupy, xp, dev = _cupy()
    dtype = getattr(xp, dtype_name)
    for stream in STREAMS:
        for directions, n in SHAPES:
            fused = random.draw(xp, kind, stream, directions, n, dtype=dtype, dev=dev)
            portable = random.draw_portable(xp, kind, stream, directions, n, dtype=dtype, dev=dev)
            assert isinstance(fused, cupy.ndarray) and fused.flags.c_contiguous
            assert fused.shape == portable.shape == (len(directions), n)
            assert fused.dtype == portable.dtype == dtype and fused.device == dev
            if kind == "normal":
                exact = exact_normals(stream, directions, n, getattr(np, dtype_name))
                for got in (fused, portable):
                    assert ulp_distance(np_of(got), exact, getattr(np, dtype_name)).max() <= CUDA_NORMAL_ULP
            else:
                np.testing.assert_array_equal(np_of(fused), np_of(portable))


@gpu
def test_noise_bits_are_identical_on_numpy_and_cupy():
    """Raw Philox words (both multiply paths), uniforms and Rademacher signs equal NumPy's bit for bit;
    normals lie within NUMPY_CUPY_NORMAL_ULP of NumPy's."""
    _, xp, dev = _cupy()
    for stream in STREAMS:
        for wide in (True, False):
            got = random.random_bits(xp, stream, range(7, 20), 33, dev, wide=wide)
            expected = random.random_bits(np, stream, range(7, 20), 33, "cpu")
            for word, reference in zip(got, expected, strict=True):
                np.testing.assert_array_equal(np_of(word), reference)
        for directions, n in SHAPES:
            for dtype_name in DTYPES:
                for kind in KINDS:
                    got = np_of(random.draw(xp, kind, stream, directions, n, dtype=getattr(xp, dtype_name), dev=dev))
                    reference = np_of(
                        random.draw(np, kind, stream, directions, n, dtype=getattr(np, dtype_name), dev="cpu")
                    )
                    if kind == "normal":
                        assert ulp_distance(got, reference, getattr(np, dtype_name)).max() <= NUMPY_CUPY_NORMAL_ULP
                    else:
                        np.testing.assert_array_equal(got, reference)


@gpu
@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_ask_builds_numpys_factors_on_the_gpu(noise):
    """The public path: es.ask on CuPy params gives NumPy's factors (signs exactly, normals to
    NUMPY_CUPY_NORMAL_ULP), for low-rank, reshaped low-rank and full leaves, in float32 and float64."""
    cupy, xp, dev = _cupy()
    shapes = {"w": (33, 17), "k": (2, 3, 4), "b": (17,), "f": (3,)}
    es = egg.EGGROLL(population_size=64, rank=3, noise=noise, seed=9, policy={"k": "lowrank", "f": "frozen"})
    rng = np.random.default_rng(0)
    for dtype_name in DTYPES:
        host = {name: rng.standard_normal(shape).astype(dtype_name) for name, shape in shapes.items()}
        pops = {}
        for backend_xp, device in ((np, "cpu"), (xp, dev)):
            params = {name: backend_xp.asarray(value, device=device) for name, value in host.items()}
            pops[backend_xp] = es.ask(es.init(params)._replace(generation=5))
        for leaf, reference in pops[np].noise.items():
            for field, expected in zip(reference._fields, reference, strict=True):
                got = getattr(pops[xp].noise[leaf], field)
                assert isinstance(got, cupy.ndarray) and got.dtype == expected.dtype and got.shape == expected.shape
                if noise == "rademacher" and field in ("A", "B"):
                    np.testing.assert_array_equal(np_of(got), expected)
                else:
                    assert (
                        ulp_distance(np_of(got), np_of(expected), getattr(np, dtype_name)).max()
                        <= NUMPY_CUPY_NORMAL_ULP
                    )


# ---- no host waits inside ask, the forward pass and tell -------------------------------------------------

SPIN_SOURCE = r"""
extern "C" __global__ void eggroll_test_spin(unsigned long long nanoseconds) {
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while (now - start < nanoseconds);
}
"""
HOST_READS = (
    "__bool__",
    "__float__",
    "__int__",
    "__index__",
    "__complex__",
    "__array__",
    "__repr__",
    "__str__",
    "item",
    "tolist",
    "get",
)
SPIN_SECONDS = 1.0


@cache
def _spin_kernel():
    import cupy

    return cupy.RawKernel(SPIN_SOURCE, "eggroll_test_spin")


def _forbidden(name: str):
    def read(self, *args, **kwargs):
        raise AssertionError(f"host read of a CuPy array (ndarray.{name}) inside the guarded block")

    return read


@contextlib.contextmanager
def host_never_waits():
    """Fail if the host waits for the GPU anywhere inside the block.

    Two nets. Every ndarray method that reads values back (float(), int(), bool(), .item(), .get(), ...)
    raises at once, naming itself. And a spin kernel keeps the GPU busy for SPIN_SECONDS, queued before the
    block on the same stream, so any synchronization inside the block, including ones deep inside CuPy or a
    CUDA library that no patch sees, makes the host wait for the spin: if the spin has already finished when
    the block ends, someone waited. Warm up the guarded code first, so that compiling or loading kernels
    and growing the memory pools happen outside the block."""
    import cupy

    stream = cupy.cuda.get_current_stream()
    stream.synchronize()
    _spin_kernel()((1,), (1,), (np.uint64(int(SPIN_SECONDS * 1e9)),))
    spun = cupy.cuda.Event(disable_timing=True)
    spun.record(stream)
    start = time.perf_counter()
    saved = {name: cupy.ndarray.__dict__.get(name) for name in HOST_READS}
    for name in HOST_READS:
        setattr(cupy.ndarray, name, _forbidden(name))
    try:
        yield
    finally:
        for name, method in saved.items():
            if method is None:
                delattr(cupy.ndarray, name)
            else:
                setattr(cupy.ndarray, name, method)
    host_seconds = time.perf_counter() - start
    waited = spun.done
    stream.synchronize()
    # The spin ends SPIN_SECONDS after its launch: done by the end of the block means the host waited for it
    # (or the block itself ran that long, which the second check rules out for a passing block).
    assert not waited, (
        f"the host waited for the GPU inside the guarded block (a synchronization): the {SPIN_SECONDS} s spin "
        f"was over when the block ended, after {host_seconds:.2f} s"
    )
    assert host_seconds < SPIN_SECONDS / 2, (
        f"the block took {host_seconds:.2f} s of host time, too long for a {SPIN_SECONDS} s spin to tell"
    )


def _generation_parts(xp, dev, nan_policy="worst"):
    """A strategy, its state and the three phases of one generation on a model that uses every op: an MLP
    on a shared batch, a low-rank embedding with per-member ids and a full-rank vector leaf."""
    import cupy

    model = egg.models.MLP((16, 32, 8))
    params = model.init(xp, device=dev, seed=0)
    params["emb"] = xp.asarray(np.random.default_rng(1).standard_normal((20, 16)), dtype=xp.float32, device=dev)
    params["gain"] = xp.ones((8,), dtype=xp.float32, device=dev)
    es = egg.EGGROLL(
        population_size=64,
        sigma=0.05,
        rank=2,
        optimizer=egg.optim.adamw(1e-2),
        shaping="centered_rank",
        nan_policy=nan_policy,
        policy={"emb": "lowrank"},
    )
    x = xp.asarray(np.random.default_rng(2).standard_normal((8, 16)), dtype=xp.float32, device=dev)
    ids = xp.asarray(np.random.default_rng(3).integers(0, 20, (64, 5)), dtype=xp.int32, device=dev)

    def forward(pop):
        y = model.apply(pop, x, shared=True)
        rows = pop.embedding("emb", ids, shared=False)
        return -xp.mean(y * y, axis=(1, 2)) + xp.mean(rows, axis=(1, 2)) + xp.sum(pop.vector("gain"), axis=1)

    def mean_forward(state):
        return model.apply(egg.MeanOps(state.params), x), es.ask(state).member(0)

    state = es.init(params)
    for _ in range(2):  # warm-up: kernels compiled and loaded, memory pools grown
        pop = es.ask(state)
        state, _ = es.tell(state, pop, forward(pop))
        mean_forward(state)
    cupy.cuda.get_current_stream().synchronize()
    return es, state, forward, mean_forward


@gpu
def test_ask_forward_and_tell_never_wait_for_the_gpu():
    """With nan_policy='worst', ask, the population's forward pass (linear, embedding, vector), tell, the
    mean parameters' forward pass and a materialized member all run without one host wait."""
    _, xp, dev = _cupy()
    es, state, forward, mean_forward = _generation_parts(xp, dev)
    with host_never_waits():
        pop = es.ask(state)
    with host_never_waits():
        fitness = forward(pop)
    with host_never_waits():
        state, info = es.tell(state, pop, fitness)
    with host_never_waits():
        mean_forward(state)
    assert state.generation == 3
    assert all(np.isfinite(float(value)) for value in info.values())


@gpu
def test_the_guard_catches_a_read_and_a_hidden_synchronization():
    cupy, xp, dev = _cupy()
    x = xp.arange(3, dtype=xp.float32, device=dev)
    with pytest.raises(AssertionError, match="host read of a CuPy array"), host_never_waits():
        float(x[0])
    with pytest.raises(AssertionError, match="the host waited for the GPU"), host_never_waits():
        cupy.cuda.get_current_stream().synchronize()  # no array method involved: only the spin sees it


@gpu
def test_nan_policy_raise_reads_exactly_its_one_boolean_back():
    """The documented exception: the default nan_policy='raise' asks whether every fitness is finite."""
    cupy, xp, dev = _cupy()
    es, state, forward, _ = _generation_parts(xp, dev, nan_policy="raise")
    pop = es.ask(state)
    fitness = forward(pop)
    cupy.cuda.get_current_stream().synchronize()
    with pytest.raises(AssertionError, match=r"ndarray.__bool__"), host_never_waits():
        es.tell(state, pop, fitness)


# ---- dtypes, devices and TF32 ------------------------------------------------------------------------------


@gpu
def test_a_cupy_generation_keeps_everything_on_the_gpu_in_float32():
    cupy, xp, dev = _cupy()
    model = egg.models.MLP((8, 16, 4))
    params = model.init(xp, device=dev, seed=0)
    es = egg.EGGROLL(population_size=32, optimizer=egg.optim.adamw(1e-2), nan_policy="worst")
    state = es.init(params)
    pop = es.ask(state)
    x = xp.ones((5, 8), dtype=xp.float32, device=dev)
    y = model.apply(pop, x)
    state, info = es.tell(state, pop, -xp.mean(y * y, axis=(1, 2)))
    arrays = {
        **{f"params[{k}]": v for k, v in state.params.items()},
        **{f"mu[{k}]": v for k, v in state.opt_state.mu.items()},
        **{f"noise[{k}].{f}": a for k, n in pop.noise.items() for f, a in zip(n._fields, n, strict=True)},
        **{f"info[{k}]": v for k, v in info.items() if k != "best_index"},
        "y": y,
    }
    for where, value in arrays.items():
        assert isinstance(value, cupy.ndarray) and value.device == dev, where
        assert value.dtype == xp.float32, where
    assert all(value.ndim == 0 for value in info.values())
    index = info["best_index"]
    assert isinstance(index, cupy.ndarray) and index.device == dev and index.dtype == xp.int64


@gpu
def test_float32_products_keep_float32_precision_unless_tf32_is_asked_for():
    """(1 + 2⁻¹²)·1 summed 256 times is 256.0625 exactly in float32; TF32 keeps 10 mantissa bits of each
    input, rounds 1 + 2⁻¹² to 1 and gives 256. Checked for the GEMM shapes the package uses: a plain
    product, a transposed right operand, a batched product and tensordot."""
    if os.environ.get("CUPY_TF32", "0") not in ("", "0"):
        pytest.skip("CUPY_TF32 is set: TF32 was asked for")
    _, xp, dev = _cupy()
    a = xp.full((64, 256), 1.0 + 2.0**-12, dtype=xp.float32, device=dev)
    ones = xp.ones((256, 32), dtype=xp.float32, device=dev)
    products = {
        "a @ b": a @ ones,
        "a @ b.T": a @ xp.matrix_transpose(xp.ones((32, 256), dtype=xp.float32, device=dev)),
        "batched": xp.reshape(a, (4, 16, 256)) @ xp.ones((4, 256, 8), dtype=xp.float32, device=dev),
        "tensordot": xp.tensordot(a, ones, axes=1),
    }
    for what, product in products.items():
        assert np.all(np_of(product) == 256.0625), f"{what}: {np.unique(np_of(product))}"


# ---- end to end ---------------------------------------------------------------------------------------------


@gpu
def test_the_command_line_trains_digits_on_cupy(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from eggroll_np.cli import main

    run_dir = tmp_path / "run"
    flags = ["--population", "64", "--eval-every", "2", "--batch-size", "32", "--hidden", "8", "--quiet"]
    assert main(["train", "--backend", "cupy", "--generations", "4", "--out", str(run_dir), *flags]) == 0
    assert "digits: test_accuracy" in capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["generations"] == 4 and 0.0 <= summary["test_accuracy"] <= 1.0
    state = egg.load(run_dir / "checkpoint.npz")
    assert state.generation == 4 and all(value.dtype == np.float32 for value in state.params.values())
