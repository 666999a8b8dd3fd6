"""The same run on every backend ends at the same params."""

import numpy as np
import pytest
from helpers import BACKEND_NAMES, CUPY, get_backend, np_of

import eggroll_np as egg

GENERATIONS = 10


def _run(backend, dtype_name):
    """10 generations on a quadratic, fitness computed in the backend from the materialized members."""
    xp = backend.xp
    dtype = getattr(xp, dtype_name)
    rng = np.random.default_rng(42)
    target = {"w": rng.standard_normal((6, 5)), "b": rng.standard_normal(5), "k": rng.standard_normal((2, 3, 2))}
    target = {k: backend.asarray(v, dtype=dtype) for k, v in target.items()}
    params = {k: xp.zeros(v.shape, dtype=dtype, device=backend.device) for k, v in target.items()}
    es = egg.EGGROLL(
        population_size=16,
        sigma=0.1,
        rank=2,
        seed=3,
        shaping="zscore",
        policy={"k": "lowrank"},
        optimizer=egg.optim.sgd(0.02),
    )
    state = es.init(params)
    for _ in range(GENERATIONS):
        pop = es.ask(state)
        fitness = xp.stack(
            [
                -sum(xp.sum((member[k] - target[k]) ** 2) for k in target)
                for member in (pop.member(i) for i in range(len(pop)))
            ]
        )
        state, _ = es.tell(state, pop, fitness)
    return {k: np_of(v) for k, v in state.params.items()}


# How far a backend's normals may lie from NumPy's: 4 ulp for the CPU backends (docs/design.md, Noise), 16 for CuPy
# (CUDA's normals within 7 ulp of the exact Box–Muller values, NumPy's within 8.5; see tests/test_cupy.py).
NOISE_ULP = {"cupy": 16}


@pytest.mark.parametrize("name", [*(n for n in BACKEND_NAMES if n != "numpy"), CUPY])
def test_a_ten_generation_float32_run_ends_at_the_same_params_on_every_backend(name):
    """Backends may differ in the last bits of log/sin/cos (normals agree to E ulp, `NOISE_ULP`) and in
    summation order. Per generation that is a relative error of at most (N + r + E + 8)·u in the gradient
    (N = 16 members summed, rank-r products, E ulp of noise, a few roundings in shaping and the step),
    u = 2⁻²⁴. With SGD on a quadratic these errors add up over the generations instead of being amplified,
    so after T = 10 generations two backends agree to T·(N + r + E + 8)·u of the largest parameter (1.8e-5
    with E = 4)."""
    reference = _run(get_backend("numpy"), "float32")
    got = _run(get_backend(name), "float32")
    tolerance = GENERATIONS * (16 + 2 + NOISE_ULP.get(name, 4) + 8) * 2.0**-24
    for leaf, value in reference.items():
        assert np.abs(got[leaf] - value).max() <= tolerance * np.abs(value).max(), leaf


def test_float64_runs_agree_between_numpy_and_array_api_strict_to_float64_rounding():
    a, b = _run(get_backend("numpy"), "float64"), _run(get_backend("strict"), "float64")
    for leaf in a:
        np.testing.assert_allclose(b[leaf], a[leaf], rtol=0, atol=1e-12 * np.abs(a[leaf]).max())
