"""The ES gradient: the stacked GEMM equals the per-member sum, its rank, and its zeros."""

import math

import numpy as np
import pytest
from helpers import ALL_BACKENDS, CUPY, get_backend, make_population, np_of
from hypothesis import given
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np.gradient import direction_weights, es_gradient

backends = pytest.mark.parametrize("name", ALL_BACKENDS)


def _ask(backend, shapes, *, dtype=None, **settings):
    """The generation-0 population at θ = 0 (so member i is σ sᵢ εᵢ)."""
    dtype = dtype or backend.xp.float32
    zeros = {name: backend.xp.zeros(shape, dtype=dtype, device=backend.device) for name, shape in shapes.items()}
    return make_population(backend, zeros, shaping="raw", optimizer=1.0, **settings)


def _member_sum_reference(pop, f, name):
    """1/(Nσ) Σᵢ fᵢ sᵢ εᵢ in float64 from the materialized members (θ = 0, so θᵢ / σ = sᵢ εᵢ), and the
    matching sum of |terms| for the rounding bound."""
    n = len(pop)
    members = [np_of(pop.member(i)[name]) for i in range(n)]
    terms = [f[i] * members[i] / pop.sigma for i in range(n)]
    return sum(terms) / (n * pop.sigma), sum(np.abs(t) for t in terms) / (n * pop.sigma)


def _factor_abs_bound(pop, f, name, antithetic):
    """1/(Nσ√r) Σₖ |wₖ| |Aₖ| |Bₖ|ᵀ: the entrywise scale of the exact sum, for the rounding bound."""
    noise = pop.noise[name]
    a, b = np.abs(np_of(noise.A)), np.abs(np_of(noise.B))
    w = np.abs(f[0::2] - f[1::2]) if antithetic else np.abs(f)
    return np.einsum("k,kmr,knr->mn", w, a, b) / (len(pop) * pop.sigma * math.sqrt(pop.rank))


@backends
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    rank=st.integers(1, 6),
    half_population=st.integers(1, 32),
    sigma=st.floats(1e-2, 2.0),
    seed=st.integers(0, 2**64 - 1),
    antithetic=st.booleans(),
    data=st.data(),
)
def test_stacked_gemm_gradient_equals_the_per_member_sum(
    name, m, n, rank, half_population, sigma, seed, antithetic, data
):
    backend = get_backend(name)
    population_size = 2 * half_population
    dtype = backend.float_dtypes[-1]
    pop = _ask(
        backend,
        {"w": (m, n), "b": (n,)},
        population_size=population_size,
        rank=rank,
        sigma=sigma,
        seed=seed,
        antithetic=antithetic,
        dtype=dtype,
    )
    drawn = data.draw(st.lists(st.floats(-3, 3), min_size=population_size, max_size=population_size))
    f_device = backend.asarray(np.asarray(drawn), dtype=dtype)
    f = np_of(f_device)  # the reference takes the fitness as the device holds it (tiny values flush to 0)
    grads = es_gradient(pop, f_device)
    finfo = np.finfo(np.float64 if dtype == getattr(backend.xp, "float64", None) else np.float32)
    u = finfo.eps
    # Standard bound for a sum of K products each rounded a few times: |error| ≤ (K + c)·u·Σ|terms|.
    # Both sides carry it: the GEMM sums D·r products, each member's ε sums r products and is scaled twice.
    for leaf, terms in (("w", population_size * rank + rank + 8), ("b", population_size + 8)):
        reference, abs_terms = _member_sum_reference(pop, f, leaf)
        if leaf == "w":
            abs_terms = np.maximum(abs_terms, _factor_abs_bound(pop, f, leaf, antithetic))
        got = np_of(grads[leaf])
        assert got.shape == reference.shape
        # Results in the subnormal range lose relative precision: each rounding errs by ≤ one subnormal step.
        assert (np.abs(got - reference) <= 2 * terms * (u * abs_terms + finfo.smallest_subnormal)).all()


@pytest.mark.parametrize("name", ["numpy", "strict", CUPY])
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 40),
    rank=st.integers(1, 6),
    half_population=st.integers(1, 32),
    seed=st.integers(0, 2**32),
)
def test_low_rank_update_has_rank_min_of_directions_times_rank_and_the_shape(name, m, n, rank, half_population, seed):
    """rank g = min(D·r, m, n), which the product of sums (Σ wₖAₖ)(Σ wₖBₖ)ᵀ (rank ≤ r) cannot reach."""
    backend = get_backend(name)
    population_size = 2 * half_population
    pop = _ask(
        backend,
        {"w": (m, n)},
        population_size=population_size,
        rank=rank,
        sigma=0.5,
        seed=seed,
        dtype=backend.xp.float64,
    )
    f = np.random.default_rng(seed).standard_normal(population_size)
    g = np_of(es_gradient(pop, backend.asarray(f))["w"])
    expected_rank = min(half_population * rank, m, n)
    assert np.linalg.matrix_rank(g) == expected_rank
    w = f[0::2] - f[1::2]
    a, b = np_of(pop.noise["w"].A), np_of(pop.noise["w"].B)
    product_of_sums = np.einsum("k,kmr->mr", w, a) @ np.einsum("k,knr->nr", w, b).T
    assert np.linalg.matrix_rank(product_of_sums) <= rank
    if expected_rank > rank:
        assert not np.allclose(product_of_sums / (len(pop) * 0.5 * math.sqrt(rank)), g)


@backends
@pytest.mark.parametrize("shaping", ["centered_rank", "zscore", "sign", "group_zscore", "group_center"])
def test_constant_fitness_gives_an_exactly_zero_gradient(name, shaping):
    backend = get_backend(name)
    es = egg.EGGROLL(
        population_size=8, sigma=0.1, shaping=shaping, group_size=4 if "group" in shaping else 0, optimizer=1.0
    )
    params = {
        "w": backend.asarray(np.ones((5, 3)), dtype=backend.xp.float32),
        "b": backend.asarray(np.ones(3), dtype=backend.xp.float32),
    }
    state = es.init(params)
    new_state, info = es.tell(state, es.ask(state), backend.asarray(np.full(8, 2.5)))
    assert float(info["grad_norm"]) == 0.0
    for leaf in params:
        np.testing.assert_array_equal(np_of(new_state.params[leaf]), np_of(params[leaf]))


def test_raw_constant_fitness_cancels_exactly_within_antithetic_pairs():
    pop = _ask(get_backend("numpy"), {"w": (6, 4)}, population_size=16, rank=2, sigma=0.3, seed=1)
    grads = es_gradient(pop, np.full(16, 7.0, np.float32))
    np.testing.assert_array_equal(grads["w"], np.zeros((6, 4), np.float32))


def test_direction_weights_merge_antithetic_pairs():
    f = np.array([3.0, 1.0, -2.0, 5.0])
    np.testing.assert_array_equal(direction_weights(np, f, 2), [2.0, -7.0])
    assert direction_weights(np, f, 1) is f


@backends
def test_gradient_keeps_each_leafs_dtype_with_float64_fitness_weights(name):
    backend = get_backend(name)
    pop = _ask(backend, {"w": (4, 3), "b": (3,)}, population_size=6, rank=1, sigma=0.1, seed=0)
    f_dtype = backend.float_dtypes[-1]
    grads = es_gradient(pop, backend.asarray(np.arange(6.0), dtype=f_dtype))
    assert all(g.dtype == backend.xp.float32 for g in grads.values())
