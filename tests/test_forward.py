"""The batched perturbed forward pass equals the materialized members, and allocates no O(N·m·n)."""

import math
import tracemalloc

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, make_population, np_of
from hypothesis import given
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import forward

backends = pytest.mark.parametrize("name", ALL_BACKENDS)


@backends
@given(
    m=st.integers(1, 24),
    n=st.integers(1, 24),
    rank=st.integers(1, 5),
    half=st.integers(1, 6),
    middle=st.sampled_from([(), (1,), (3,), (2, 2)]),
    per_member=st.booleans(),
    antithetic=st.booleans(),
    kind=st.sampled_from(["lowrank", "full", "frozen"]),
    with_bias=st.booleans(),
    use_float64=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_population_linear_equals_each_materialized_member(
    name, m, n, rank, half, middle, per_member, antithetic, kind, with_bias, use_float64, seed
):
    backend = get_backend(name)
    dtype = backend.float_dtypes[-1] if use_float64 else backend.xp.float32
    population_size = 2 * half
    pop = make_population(
        backend,
        {"w": (m, n), "b": (m,)},
        population_size=population_size,
        rank=rank,
        seed=seed,
        antithetic=antithetic,
        policy={"w": kind},
        dtype=dtype,
    )
    rng = np.random.default_rng(seed + 1)
    x_host = rng.standard_normal(((population_size,) if per_member else ()) + middle + (n,))
    x = backend.asarray(x_host, dtype=dtype)
    y = np_of(pop.linear("w", x, bias="b" if with_bias else None, shared=not per_member))
    assert y.shape == (population_size, *middle, m)
    u = 2.0**-53 if dtype != backend.xp.float32 else 2.0**-24
    x_used = np_of(x)
    for i in range(population_size):
        member = {k: np_of(v) for k, v in pop.member(i).items()}
        x_i = x_used[i] if per_member else x_used
        expected = x_i @ member["w"].T + (member["b"] if with_bias else 0.0)
        # Entrywise magnitude of the terms of both computations; each side rounds ≤ (n + r + 8) times.
        magnitude = np.abs(x_i) @ (np.abs(np_of(pop.params["w"])) + np.abs(member["w"] - np_of(pop.params["w"]))).T
        magnitude = magnitude + (np.abs(member["b"]) if with_bias else 0.0)
        assert np.all(np.abs(y[i] - expected) <= 2 * (n + rank + 8) * u * (magnitude + 1e-30)), i


@pytest.mark.parametrize("per_member", [True, False])
@given(
    m=st.integers(1, 40),
    n=st.integers(1, 96),  # both sides of the fast path's vecdot/matmul switch at n = 64
    rank=st.integers(1, 4),
    half=st.integers(1, 40),
    rows=st.integers(1, 5),
    antithetic=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_numpy_fast_path_matches_the_portable_path(per_member, m, n, rank, half, rows, antithetic, seed):
    numpy = get_backend("numpy")
    population_size = 2 * half
    pop = make_population(
        numpy, {"w": (m, n)}, population_size=population_size, rank=rank, seed=seed, antithetic=antithetic
    )
    x = np.random.default_rng(seed).standard_normal(((population_size,) if per_member else ()) + (rows, n))
    x = x.astype(np.float32)
    fast = forward.linear(pop, "w", x, shared=not per_member)
    portable = forward.linear_portable(pop, "w", x, shared=not per_member)
    assert fast.shape == portable.shape and fast.dtype == portable.dtype == np.float32
    scale = np.abs(x).max() * (np.abs(pop.params["w"]).max() + pop.sigma * 16) * n
    np.testing.assert_allclose(fast, portable, rtol=0, atol=(n + rank + 8) * 2.0**-24 * scale)


@backends
@given(
    vocabulary=st.integers(1, 30),
    width=st.integers(1, 12),
    rank=st.integers(1, 4),
    half=st.integers(1, 5),
    ids_shape=st.sampled_from([(), (1,), (4,), (2, 3)]),
    per_member=st.booleans(),
    kind=st.sampled_from(["lowrank", "full", "frozen"]),
    seed=st.integers(0, 2**32),
)
def test_population_embedding_equals_the_rows_of_each_materialized_table(
    name, vocabulary, width, rank, half, ids_shape, per_member, kind, seed
):
    backend = get_backend(name)
    population_size = 2 * half
    pop = make_population(
        backend,
        {"table": (vocabulary, width), "other": (2,)},
        population_size=population_size,
        rank=rank,
        seed=seed,
        policy={"table": kind},
    )
    shape = ((population_size,) if per_member else ()) + ids_shape
    ids_host = np.random.default_rng(seed).integers(0, vocabulary, shape)
    ids = backend.xp.asarray(ids_host, dtype=backend.xp.int32, device=backend.device)
    rows = np_of(pop.embedding("table", ids, shared=not per_member))
    assert rows.shape == (population_size, *ids_shape, width)
    for i in range(population_size):
        table = np_of(pop.member(i)["table"])
        expected = table[ids_host[i] if per_member else ids_host]
        np.testing.assert_allclose(rows[i], expected, rtol=0, atol=(rank + 4) * 2.0**-24 * (np.abs(table).max() + 1))


@backends
def test_population_vector_stacks_every_members_leaf(name):
    backend = get_backend(name)
    pop = make_population(
        backend, {"b": (3, 2), "s": (), "f": (4,)}, population_size=6, rank=1, policy={"f": "frozen", "b": "full"}
    )
    for leaf in ("b", "s", "f"):
        stacked = np_of(pop.vector(leaf))
        assert stacked.shape == (6, *pop.plans[leaf].shape)
        for i in range(6):
            np.testing.assert_allclose(stacked[i], np_of(pop.member(i)[leaf]), rtol=1e-6, atol=1e-7)


def test_mean_ops_apply_the_mean_parameters():
    rng = np.random.default_rng(0)
    params = {
        "w": rng.standard_normal((4, 3)),
        "b": rng.standard_normal(4),
        "k": rng.standard_normal((4, 3, 2)),
        "e": rng.standard_normal((10, 4)),
    }
    ops = egg.MeanOps(params)
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(ops.linear("w", x, bias="b"), x @ params["w"].T + params["b"])
    np.testing.assert_allclose(ops.linear("w", x, bias=np.ones(4)), x @ params["w"].T + 1.0)
    np.testing.assert_allclose(ops.linear("k", np.ones((2, 6))), np.ones((2, 6)) @ params["k"].reshape(4, 6).T)
    ids = np.array([[1, 9], [0, 0]])
    np.testing.assert_array_equal(ops.embedding("e", ids), params["e"][ids])
    assert ops.vector("b") is params["b"]


def test_a_model_written_once_runs_on_the_mean_and_on_the_population():
    def model(ops, x):
        return ops.linear("out", np.tanh(ops.linear("hidden", x, bias="hb")), bias="ob", shared=False)

    rng = np.random.default_rng(1)
    params = {
        "hidden": rng.standard_normal((8, 5)),
        "hb": np.zeros(8),
        "out": rng.standard_normal((3, 8)),
        "ob": np.zeros(3),
    }
    es = egg.EGGROLL(population_size=4, sigma=0.1, rank=2)
    pop = es.ask(es.init(params))
    x = rng.standard_normal((4, 5))  # a shared batch with exactly N rows is shared like any other
    y = model(pop, x)
    assert y.shape == (4, 4, 3)
    for i in range(4):
        np.testing.assert_allclose(y[i], model(egg.MeanOps(pop.member(i)), x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model(egg.MeanOps(params), x), np.tanh(x @ params["hidden"].T) @ params["out"].T)


def test_forward_errors_name_the_problem():
    pop = make_population(get_backend("numpy"), {"w": (3, 4), "b": (3,), "t": (5, 2)}, population_size=4, rank=1)
    with pytest.raises(ValueError, match=r"linear\('w'\) multiplies inputs of last axis 4; got shape \(2, 3\)"):
        pop.linear("w", np.ones((2, 3)))
    with pytest.raises(ValueError, match="with shared=False its leading axis must be the population"):
        pop.linear("w", np.ones((3, 4)), shared=False)
    with pytest.raises(ValueError, match="linear needs a leaf with at least 2 dimensions"):
        pop.linear("b", np.ones(3))
    with pytest.raises(ValueError, match="the members of low-rank leaf 'w' would be N dense matrices"):
        pop.vector("w")
    with pytest.raises(TypeError, match="needs integer ids, got dtype float64"):
        pop.embedding("t", np.ones(3))
    with pytest.raises(KeyError, match="no leaf named 'v'"):
        pop.linear("v", np.ones(4))
    with pytest.raises(KeyError, match="no leaf named 'v'"):
        egg.MeanOps({"w": np.ones((2, 2))}).linear("v", np.ones(2))


def test_shared_must_be_a_bool_and_per_member_inputs_need_the_population_axis():
    pop = make_population(get_backend("numpy"), {"w": (3, 4), "t": (5, 2)}, population_size=4, rank=1)
    for shared in (None, "False", 0):
        with pytest.raises(TypeError, match=f"shared={shared!r} must be True or False"):
            pop.linear("w", np.ones((4, 4)), shared=shared)
        with pytest.raises(TypeError, match=f"shared={shared!r} must be True or False"):
            pop.embedding("t", np.zeros(4, np.int64), shared=shared)
        with pytest.raises(TypeError, match=f"shared={shared!r} must be True or False"):
            egg.MeanOps(pop.params).linear("w", np.ones((4, 4)), shared=shared)
    with pytest.raises(ValueError, match=r"the ids of embedding\('t'\) has shape \(3,\); with shared=False"):
        pop.embedding("t", np.zeros(3, np.int64), shared=False)
    with pytest.raises(ValueError, match=r"the input of linear\('w'\) has shape \(4,\); with shared=False"):
        pop.linear("w", np.ones(4), shared=False)


def test_population_forward_allocates_less_than_three_times_inputs_outputs_and_weight():
    """N = 4096 members, one input each, through a 1024×1024 low-rank leaf: never O(N·m·n)."""
    population_size, d = 4096, 1024
    rng = np.random.default_rng(0)
    es = egg.EGGROLL(population_size=population_size, sigma=0.05, rank=1)
    pop = es.ask(es.init({"w": rng.standard_normal((d, d), dtype=np.float32)}))
    x = rng.standard_normal((population_size, d), dtype=np.float32)
    budget = 3 * (x.nbytes + population_size * d * 4 + pop.params["w"].nbytes)
    tracemalloc.start()
    try:
        y = pop.linear("w", x, shared=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert y.shape == (population_size, d)
    assert peak < budget, (peak, budget)
    assert peak < population_size * d * d * 4 / 100  # and far from one dense matrix per member


def test_scale_of_low_rank_correction_is_sigma_over_root_rank():
    pop = make_population(get_backend("numpy"), {"w": (3, 2)}, population_size=2, rank=4, sigma=0.5)
    x = np.array([[1.0, 0.0]], np.float32)
    a, b = pop.noise["w"].A[0], pop.noise["w"].B[0]
    expected = x @ pop.params["w"].T + 0.5 / math.sqrt(4) * (x @ b) @ a.T
    np.testing.assert_allclose(pop.linear("w", x, shared=True)[0], expected, rtol=1e-6)
