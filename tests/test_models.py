"""The shipped models: one model function on a population equals each member on MeanOps, init, bad input, and
an MLP that learns a teacher's classes with EGGROLL."""

import math
import re

import numpy as np
import pytest
from helpers import (
    ALL_BACKENDS,
    BACKEND_NAMES,
    CUPY,
    get_backend,
    make_population,
    member_magnitudes,
    np_of,
    ulp_distance,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np._array_api import array_namespace, device, to_numpy
from eggroll_np.models import ACTIVATIONS, GRU, MLP, activation, log_softmax

U = 2.0**-24  # unit roundoff of float32


def _inputs(backend, shape, seed=0):
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape), dtype=backend.xp.float32)


def _population(params, *, size=6, rank=1, seed=0):
    return make_population(get_backend("numpy"), params, population_size=size, sigma=0.1, rank=rank, seed=seed)


def _mlp_bound(model, mags, x, rank):
    """|population − member| ≤ 2e, e the float32 rounding error of either path. Layer l sums nₗ products, a
    rank-r correction (2r more roundings), the bias, the member's materialized θᵢ and the activation, so it
    adds at most (nₗ + 2r + 4)u of its terms' magnitude a = m Mₗᵀ + M_b (m bounds |hₗ|, since |tanh a| ≤ |a|
    and |relu a| ≤ |a|); the error from below grows by at most Mₗ (both activations are 1-Lipschitz)."""
    m, e = np.abs(x), np.zeros_like(x)
    for l, n in enumerate(model.sizes[:-1]):
        w, b = mags[f"{model.name}.{l}.w"], mags[f"{model.name}.{l}.b"]
        a = m @ w.T + b
        e = e @ w.T + (n + 2 * rank + 4) * U * a
        m = a
    return 2 * e


def _sigmoid_gate(p, M, g, x, h, delta, gx, gh):
    """A GRU gate σ(x W_gᵀ + b_g + h U_gᵀ) of the exact trajectory and its error bound (see `_gru_bound`)."""
    gate = 1 / (1 + np.exp(-(x @ p[f"w_{g}"].T + p[f"b_{g}"] + h @ p[f"u_{g}"].T)))
    error = gx * (np.abs(x) @ M[f"w_{g}"].T + M[f"b_{g}"]) + (gh * np.abs(h) + delta) @ M[f"u_{g}"].T
    return gate, gate * (1 - gate) * error + 8 * U


def _gru_bound(model, theta, mags, xs, rank):
    """|population − member| per step, ≤ 2δₜ with δₜ the float32 rounding error of hₜ in either path, to
    first order along the exact trajectory of member θᵢ (computed here in float64). A gate's sum adds
    γₓ(|x| M_Wᵀ + M_b) + γₕ |h| M_Uᵀ, γₓ = (n + 2r + 4)u and γₕ = (H + 2r + 4)u as in `_mlp_bound`, plus
    δ M_Uᵀ carried in from h; the gate scales it by σ' = r(1 − r), z(1 − z) or tanh' = 1 − n², and adds a
    few roundings of its own (8u). With q = h U_nᵀ + b_hn: δ' = (1 − z) e_n + |h − n| e_z + z δ + 8u."""
    p = {key.rsplit(".", 1)[1]: value for key, value in theta.items()}
    M = {key.rsplit(".", 1)[1]: value for key, value in mags.items()}
    gx, gh = (model.input_size + 2 * rank + 4) * U, (model.hidden_size + 2 * rank + 4) * U
    h = np.zeros((*xs.shape[:-2], model.hidden_size))
    delta = np.zeros_like(h)
    bounds = []
    for t in range(xs.shape[-2]):
        x = xs[..., t, :]
        r, e_r = _sigmoid_gate(p, M, "r", x, h, delta, gx, gh)
        z, e_z = _sigmoid_gate(p, M, "z", x, h, delta, gx, gh)
        q = h @ p["u_n"].T + p["b_hn"]
        e_q = (gh * np.abs(h) + delta) @ M["u_n"].T + gh * M["b_hn"]
        n = np.tanh(x @ p["w_n"].T + p["b_n"] + r * q)
        e_an = gx * (np.abs(x) @ M["w_n"].T + M["b_n"]) + r * e_q + np.abs(q) * e_r + U * np.abs(r * q)
        e_n = (1 - n * n) * e_an + 8 * U
        delta = (1 - z) * e_n + np.abs(h - n) * e_z + z * delta + 8 * U
        h = (1 - z) * n + z * h
        bounds.append(2 * delta)
    return np.stack(bounds, axis=-2)


def _check_mlp_members(model, pop, x, *, shared, per_member, rank):
    """Row i of model.apply(pop, x) equals model.apply(MeanOps(θᵢ), xᵢ) within the float32 bound."""
    y = np_of(model.apply(pop, x, shared=shared))
    x_host = np_of(x)
    for i in range(len(pop)):
        x_i = x[i, ...] if per_member else x
        expected = np_of(model.apply(egg.MeanOps(pop.member(i)), x_i))
        bound = _mlp_bound(model, member_magnitudes(pop, i), x_host[i] if per_member else x_host, rank)
        assert np.all(np.abs(y[i] - expected) <= bound), (i, np.max(np.abs(y[i] - expected) / bound))


def _check_gru_members(model, pop, xs, *, shared, per_member, rank):
    """Row i of model.apply(pop, xs) (outputs and last state) equals the member's run on MeanOps."""
    outputs, h_last = (np_of(a) for a in model.apply(pop, xs, shared=shared))
    xs_host = np_of(xs)
    for i in range(len(pop)):
        expected, expected_last = model.apply(egg.MeanOps(pop.member(i)), xs[i, ...] if per_member else xs)
        theta = {k: np_of(v) for k, v in pop.member(i).items()}
        bound = _gru_bound(model, theta, member_magnitudes(pop, i), xs_host[i] if per_member else xs_host, rank)
        assert np.all(np.abs(outputs[i] - np_of(expected)) <= bound), i
        np.testing.assert_array_equal(outputs[i][..., -1, :], h_last[i])
        np.testing.assert_array_equal(np_of(expected)[..., -1, :], np_of(expected_last))


# The documented formulas, against float64 references on the host.


def _with_random_biases(params, seed):
    """Init leaves with nonzero biases, so the formula tests see every bias in its place."""
    rng = np.random.default_rng(seed)
    return {k: (v + rng.standard_normal(v.shape).astype(v.dtype)) if ".b" in k else v for k, v in params.items()}


@pytest.mark.parametrize(("act", "reference"), [("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0))])
def test_mlp_computes_the_documented_layers(act, reference):
    """hₗ₊₁ = act(hₗ Wₗᵀ + bₗ), the last layer without activation; error bound as for the population."""
    model = MLP((5, 7, 6, 3), activation=act)
    params = _with_random_biases(model.init(np, seed=3), seed=3)
    x = np.random.default_rng(4).standard_normal((2, 4, 5)).astype(np.float32)
    h = x.astype(np.float64)
    for l in range(3):
        h = h @ np_of(params[f"layers.{l}.w"]).T + np_of(params[f"layers.{l}.b"])
        h = reference(h) if l < 2 else h
    mags = {k: np.abs(np_of(v)) for k, v in params.items()}
    got = np_of(model.apply(egg.MeanOps(params), x))
    assert np.all(np.abs(got - h) <= _mlp_bound(model, mags, np_of(x), rank=0))


def test_gru_computes_the_documented_step():
    """r, z = σ(x W_{r,z}ᵀ + b_{r,z} + h U_{r,z}ᵀ), n = tanh(x W_nᵀ + b_n + r ⊙ (h U_nᵀ + b_hn)),
    h' = (1 − z) ⊙ n + z ⊙ h; error bound as for the population."""
    model = GRU(3, 5)
    params = _with_random_biases(model.init(np, seed=5), seed=5)
    p = {k.split(".")[1]: np_of(v) for k, v in params.items()}
    xs = np.random.default_rng(6).standard_normal((2, 4, 3)).astype(np.float32)

    def sigmoid(a):
        return 1 / (1 + np.exp(-a))

    h = np.zeros((2, 5))
    expected = []
    for t in range(4):
        x = xs[:, t, :].astype(np.float64)
        r = sigmoid(x @ p["w_r"].T + p["b_r"] + h @ p["u_r"].T)
        z = sigmoid(x @ p["w_z"].T + p["b_z"] + h @ p["u_z"].T)
        n = np.tanh(x @ p["w_n"].T + p["b_n"] + r * (h @ p["u_n"].T + p["b_hn"]))
        h = (1 - z) * n + z * h
        expected.append(h)
    outputs, _ = model.apply(egg.MeanOps(params), xs)
    mags = {k: np.abs(np_of(v)) for k, v in params.items()}
    theta = {k: np_of(v) for k, v in params.items()}
    bound = _gru_bound(model, theta, mags, xs.astype(np.float64), rank=0)
    assert np.all(np.abs(np_of(outputs) - np.stack(expected, axis=-2)) <= bound)


# Population = members, on every backend. The backend tests share these two models: JAX compiles per shape.
# Their fan-ins are powers of 4, so every initial std is a power of 2.


def _mlp():
    return MLP((4, 16, 3))


def _gru():
    return GRU(4, 16)


@pytest.mark.parametrize("name", ALL_BACKENDS)
@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("per_member", [False, True])
def test_mlp_on_the_population_equals_each_member_on_mean_ops(name, rank, per_member):
    backend = get_backend(name)
    model = _mlp()
    params = model.init(backend.xp, device=backend.device, seed=1)
    pop = _population(params, rank=rank)
    x = _inputs(backend, (6, 5, 4) if per_member else (5, 4))
    y = model.apply(pop, x, shared=not per_member)
    assert y.shape == (6, 5, 3)
    assert y.dtype == backend.xp.float32
    _check_mlp_members(model, pop, x, shared=not per_member, per_member=per_member, rank=rank)


@pytest.mark.parametrize("name", ALL_BACKENDS)
@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("per_member", [False, True])
def test_gru_over_a_sequence_on_the_population_equals_each_member_on_mean_ops(name, rank, per_member):
    backend = get_backend(name)
    model = _gru()
    params = model.init(backend.xp, device=backend.device, seed=2)
    pop = _population(params, rank=rank)
    xs = _inputs(backend, (6, 2, 4, 4) if per_member else (2, 4, 4))
    outputs, h_last = model.apply(pop, xs, shared=not per_member)
    assert outputs.shape == (6, 2, 4, 16)
    assert h_last.shape == (6, 2, 16)
    assert outputs.dtype == h_last.dtype == backend.xp.float32
    _check_gru_members(model, pop, xs, shared=not per_member, per_member=per_member, rank=rank)


# The same property over random shapes, on NumPy and CuPy (JAX would compile every shape).


@pytest.mark.parametrize("name", ["numpy", CUPY])
@settings(max_examples=15)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=4),
    batch=st.lists(st.integers(1, 4), max_size=2),
    size=st.sampled_from([2, 4, 8]),
    rank=st.integers(1, 3),
    act=st.sampled_from(["tanh", "relu"]),
    per_member=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_mlp_population_equals_members_for_any_shapes(name, sizes, batch, size, rank, act, per_member, seed):
    backend = get_backend(name)
    model = MLP(tuple(sizes), activation=act, output_activation=act)
    pop = _population(model.init(backend.xp, device=backend.device, seed=seed), size=size, rank=rank, seed=seed)
    leading = (size,) if per_member else ()
    x = _inputs(backend, (*leading, *batch, sizes[0]), seed=seed)
    shared = not per_member
    assert model.apply(pop, x, shared=shared).shape == (size, *batch, sizes[-1])
    _check_mlp_members(model, pop, x, shared=shared, per_member=per_member, rank=rank)


@pytest.mark.parametrize("name", ["numpy", CUPY])
@settings(max_examples=10)
@given(
    input_size=st.integers(1, 6),
    hidden_size=st.integers(1, 8),
    steps=st.integers(1, 5),
    batch=st.lists(st.integers(1, 3), max_size=2),
    rank=st.integers(1, 2),
    per_member=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_gru_population_equals_members_for_any_shapes(
    name, input_size, hidden_size, steps, batch, rank, per_member, seed
):
    backend = get_backend(name)
    model = GRU(input_size, hidden_size)
    pop = _population(model.init(backend.xp, device=backend.device, seed=seed), size=4, rank=rank, seed=seed)
    leading = (4,) if per_member else ()
    xs = _inputs(backend, (*leading, *batch, steps, input_size), seed=seed)
    _check_gru_members(model, pop, xs, shared=not per_member, per_member=per_member, rank=rank)


# `shared`: the first layer's, and everything after it per member; an unmarked input is shared at any size.


@pytest.mark.parametrize("name", ["numpy", "strict_no_x64"])
@pytest.mark.parametrize("rows", [1, 4, 6, 8])
def test_an_unmarked_batch_is_shared_whatever_its_size_even_n_rows(name, rows):
    backend = get_backend(name)
    model = MLP((4, 8, 3))
    pop = _population(model.init(backend.xp, device=backend.device))
    x = _inputs(backend, (rows, 4))
    assert model.apply(pop, x).shape == (6, rows, 3)
    _check_mlp_members(model, pop, x, shared=True, per_member=False, rank=1)


@pytest.mark.parametrize("steps", [1, 6])
def test_an_unmarked_sequence_is_shared_whatever_its_length(steps):
    backend = get_backend("numpy")
    model = GRU(4, 8)
    pop = _population(model.init(backend.xp))
    for shape in ((steps, 4), (6, steps, 4)):
        xs = _inputs(backend, shape)
        assert model.apply(pop, xs)[0].shape == (6, *shape[:-1], 8)
        _check_gru_members(model, pop, xs, shared=True, per_member=False, rank=1)
    _check_gru_members(model, pop, _inputs(backend, (6, steps, 4)), shared=False, per_member=True, rank=1)


def test_models_with_distinct_names_compose_in_one_params_dict():
    """A GRU encoder and an MLP head on its last state: the head's input is per member."""
    backend = get_backend("numpy")
    encoder, head = GRU(3, 8), MLP((8, 5, 2), name="head")
    params = encoder.init(backend.xp) | head.init(backend.xp)
    assert len(params) == 10 + 4

    def model(ops, xs):
        return head.apply(ops, encoder.apply(ops, xs)[1], shared=False)

    pop = _population(params)
    xs = _inputs(backend, (5, 4, 3))
    y = np_of(model(pop, xs))
    assert y.shape == (6, 5, 2)
    for i in range(len(pop)):
        # Two float32 models in a row; each path is a few hundred roundings of O(1) terms.
        np.testing.assert_allclose(y[i], np_of(model(egg.MeanOps(pop.member(i)), xs)), rtol=0, atol=1e-5)


# The recurrent state.


@pytest.mark.parametrize("name", ["numpy", "strict_no_x64"])
def test_initial_state_has_the_member_axis_only_on_a_population(name):
    backend = get_backend(name)
    model = GRU(4, 8)
    params = model.init(backend.xp, device=backend.device)
    pop = _population(params)
    for ops, lead in ((egg.MeanOps(params), ()), (pop, (6,))):
        h0 = model.initial_state(ops, (2, 3))
        assert h0.shape == (*lead, 2, 3, 8)
        assert h0.dtype == backend.xp.float32
        assert device(h0) == backend.device
        assert np.all(np_of(h0) == 0)
    assert model.initial_state(pop).shape == (6, 8)


def test_stepping_from_the_initial_state_reproduces_apply():
    """apply computes the input terms of all steps in one product; step one at a time: equal up to the
    summation order of n = 4 products per input term (a few ulp of O(1) values)."""
    backend = get_backend("numpy")
    model = GRU(4, 8)
    pop = _population(model.init(backend.xp, seed=3))
    xs = _inputs(backend, (2, 5, 4))
    outputs, h_last = model.apply(pop, xs)
    h = model.initial_state(pop, (2,))
    for t in range(5):
        h = model.step(pop, xs[:, t, :], h)
        np.testing.assert_allclose(np_of(h), np_of(outputs)[:, :, t, :], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np_of(h), np_of(h_last), rtol=0, atol=1e-6)


def test_a_given_initial_state_is_used():
    backend = get_backend("numpy")
    model = GRU(2, 3)
    params = model.init(backend.xp, seed=4)
    xs = _inputs(backend, (1, 2))
    h0 = backend.asarray(np.full((3,), 0.5), dtype=backend.xp.float32)
    _, h = model.apply(egg.MeanOps(params), xs, h0)
    np.testing.assert_allclose(np_of(h), np_of(model.step(egg.MeanOps(params), xs[0, :], h0)), rtol=1e-6)
    assert not np.allclose(np_of(h), np_of(model.apply(egg.MeanOps(params), xs)[1]))


# dtype and backend follow the params.


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_outputs_follow_the_params_dtype(name):
    backend = get_backend(name)
    for dtype in backend.float_dtypes:
        mlp, gru = _mlp(), _gru()
        params = mlp.init(backend.xp, dtype=dtype, device=backend.device) | gru.init(
            backend.xp, dtype=dtype, device=backend.device
        )
        x, xs = backend.asarray(np.ones((5, 4)), dtype=dtype), backend.asarray(np.ones((2, 4, 4)), dtype=dtype)
        for ops in (egg.MeanOps(params), _population(params)):
            y = mlp.apply(ops, x)
            outputs, h = gru.apply(ops, xs)
            assert y.dtype == outputs.dtype == h.dtype == dtype
            assert device(y) == device(h) == backend.device


# Init.


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_init_gives_the_documented_leaves_in_the_backend_dtype_and_device(name):
    backend = get_backend(name)
    expected = {
        "layers.0.w": (16, 4),
        "layers.0.b": (16,),
        "layers.1.w": (3, 16),
        "layers.1.b": (3,),
        **{f"gru.{m}_{g}": (16, 4 if m == "w" else 16) for m in "wu" for g in "rzn"},
        **{f"gru.b_{g}": (16,) for g in ("r", "z", "n", "hn")},
    }
    namespace = array_namespace(backend.asarray([0.0]))
    for dtype in (None, *backend.float_dtypes):
        params = _mlp().init(backend.xp, dtype=dtype, device=backend.device) | _gru().init(
            backend.xp, dtype=dtype, device=backend.device
        )
        assert {k: tuple(v.shape) for k, v in params.items()} == expected
        for leaf_name, leaf in params.items():
            assert leaf.dtype == (backend.xp.float32 if dtype is None else dtype)
            assert array_namespace(leaf) is namespace
            assert device(leaf) == backend.device
            assert np.all(np_of(leaf) == 0) == (".b" in leaf_name), leaf_name


@pytest.mark.parametrize("name", [n for n in BACKEND_NAMES if n != "numpy"])
def test_init_agrees_with_numpy_to_the_generators_4_ulp(name):
    """Uniform bits are identical on every backend and Box–Muller normals agree to 4 ulp (docs/design.md, Noise); the
    fan-ins are powers of 4, so each std is a power of 2 and scaling by it is exact."""
    backend = get_backend(name)
    models = (_mlp(), _gru())
    reference = {}
    got = {}
    for model in models:
        reference |= model.init(np, seed=7)
        got |= model.init(backend.xp, device=backend.device, seed=7)
    for leaf_name, value in reference.items():
        assert ulp_distance(np_of(got[leaf_name]), np_of(value), np.float32).max() <= 4, leaf_name


def test_init_takes_raw_and_wrapped_numpy_namespaces_alike():
    import array_api_compat.numpy as compat_numpy

    model = GRU(3, 4)
    raw, wrapped = model.init(np, seed=5), model.init(compat_numpy, seed=5)
    for leaf_name, value in raw.items():
        assert type(value) is np.ndarray
        np.testing.assert_array_equal(value, wrapped[leaf_name])


def test_init_is_a_function_of_seed_and_leaf_name():
    model = GRU(4, 4)
    a, b, c = model.init(np, seed=1), model.init(np, seed=1), model.init(np, seed=2)
    for leaf_name in a:
        np.testing.assert_array_equal(a[leaf_name], b[leaf_name])
    weights = [k for k in a if ".b" not in k]
    for leaf_name in weights:
        assert not np.array_equal(a[leaf_name], c[leaf_name])
    assert len({a[k].tobytes() for k in weights}) == len(weights), "leaves of one shape must differ"


def test_initial_weights_are_not_the_noise_of_generation_0():
    """The initializer draws from its own noise epoch, so member 0's first factor is not θ's first entries."""
    model = MLP((8, 8))
    params = model.init(np, seed=0)
    pop = _population(params, size=2, rank=1, seed=0)
    a = np_of(pop.noise["layers.0.w"].A)[0, :, 0]
    z = params["layers.0.w"].reshape(-1)[:8] * math.sqrt(8)
    assert np.abs(a - z).min() > 1e-3


def test_initial_weights_have_the_documented_std():
    """Entries are N(0, s²), s = 1/√fan_in. For n iid normals the sample std has relative standard error
    1/√(2n) and the mean standard error s/√n; allow 5 of each."""
    mlp = MLP((1024, 512))
    gru = GRU(256, 64)
    params = mlp.init(np, seed=0) | gru.init(np, seed=0)
    groups = {
        1 / math.sqrt(1024): [params["layers.0.w"]],
        1 / math.sqrt(256): [params[f"gru.w_{g}"] for g in "rzn"],
        1 / math.sqrt(64): [params[f"gru.u_{g}"] for g in "rzn"],
    }
    for std, leaves in groups.items():
        values = np.concatenate([np_of(leaf).ravel() for leaf in leaves])
        n = values.size
        assert abs(values.std() / std - 1) < 5 / math.sqrt(2 * n), (std, values.std())
        assert abs(values.mean()) < 5 * std / math.sqrt(n), (std, values.mean())


# Activations.


def test_activations_match_their_formulas_and_sigmoid_does_not_overflow():
    x = np.linspace(-100, 100, 2001, dtype=np.float32)
    x64 = x.astype(np.float64)
    expected = {
        "identity": x64,
        "tanh": np.tanh(x64),
        "relu": np.maximum(x64, 0),
        "sigmoid": 1 / (1 + np.exp(-x64)),
        "gelu": 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64**3))),
    }
    assert set(expected) == set(ACTIVATIONS)
    for act_name, reference in expected.items():
        got = activation(act_name)(x)  # pytest turns an overflow warning into an error
        assert got.dtype == np.float32
        # A few float32 roundings of values of magnitude ≤ max(|x|, 1).
        np.testing.assert_allclose(got, reference, rtol=1e-6, atol=1e-6, err_msg=act_name)
    assert activation(None) is ACTIVATIONS["identity"]


@pytest.mark.parametrize("shape", [(6, 3, 10), (50, 2), (4, 1), (3, 40), (2, 2, 33)])
def test_log_softmax_matches_its_formula_in_float64_on_every_backend(backend, shape):
    """Short last axes take NumPy's classes-first path, long ones (> 32) the row-wise one: both are within a
    few float32 roundings (of values of magnitude ≤ 40) of the float64 formula, keep shape and dtype, and
    exponentiate to rows that sum to 1. Logits up to ±20 would overflow exp without the max shift."""
    logits = 20 * np.random.default_rng(len(shape)).uniform(-1, 1, shape).astype(np.float32)
    got = log_softmax(backend.asarray(logits))
    assert got.shape == shape and got.dtype == backend.xp.float32
    x64 = logits.astype(np.float64)
    reference = x64 - x64.max(-1, keepdims=True)
    reference -= np.log(np.exp(reference).sum(-1, keepdims=True))
    np.testing.assert_allclose(to_numpy(got), reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.exp(to_numpy(got).astype(np.float64)).sum(-1), 1, rtol=1e-5)


# Bad input.


def test_an_unknown_activation_is_rejected_with_the_known_names():
    with pytest.raises(ValueError, match=r"activation='swish' must be one of .*'tanh'"):
        MLP((2, 3), activation="swish")
    with pytest.raises(ValueError, match="output_activation='softmax' must be one of"):
        MLP((2, 3), output_activation="softmax")
    with pytest.raises(ValueError, match="activation='Tanh' must be one of"):
        activation("Tanh")
    with pytest.raises(TypeError, match=r"activation=<built-in function abs> must be one of .*, not a builtin"):
        MLP((2, 3), activation=abs)
    with pytest.raises(TypeError, match="name=3 must be a string"):
        GRU(2, 3, name=3)
    with pytest.raises(ValueError, match="name='' must be a non-empty string"):
        MLP((2, 3), name="")


@pytest.mark.parametrize(
    ("sizes", "error", "message"),
    [
        ((), ValueError, "sizes=() must hold at least two widths"),
        ((3,), ValueError, "sizes=(3,) must hold at least two widths"),
        ((3, 0), ValueError, "sizes[1]=0 must be an integer ≥ 1"),
        ((3, -1, 2), ValueError, "sizes[1]=-1 must be an integer ≥ 1"),
        ((3, 2.0), TypeError, "sizes[1]=2.0 must be an integer ≥ 1, not a float"),
        ((3, True), TypeError, "sizes[1]=True must be an integer ≥ 1, not a bool"),
        (5, TypeError, "sizes=5 must be a sequence of layer widths, not a int"),
    ],
)
def test_mlp_sizes_must_be_at_least_two_positive_integers(sizes, error, message):
    with pytest.raises(error, match=re.escape(message)):
        MLP(sizes)
    assert MLP((np.int64(3), 2)).sizes == (3, 2) and type(MLP((np.int64(3), 2)).sizes[0]) is int


@pytest.mark.parametrize(
    ("input_size", "hidden_size", "error", "message"),
    [
        (0, 3, ValueError, "input_size=0 must be an integer ≥ 1"),
        (3, 0, ValueError, "hidden_size=0 must be an integer ≥ 1"),
        (2.5, 3, TypeError, "input_size=2.5 must be an integer ≥ 1, not a float"),
        (3, None, TypeError, "hidden_size=None must be an integer ≥ 1, not a NoneType"),
    ],
)
def test_gru_sizes_must_be_positive_integers(input_size, hidden_size, error, message):
    with pytest.raises(error, match=re.escape(message)):
        GRU(input_size, hidden_size)


def test_a_wrong_input_width_surfaces_the_linear_error():
    model, gru = MLP((4, 8, 3)), GRU(4, 8)
    params = model.init(np) | gru.init(np)
    x = np.ones((5, 3), np.float32)
    for ops in (egg.MeanOps(params), _population(params)):
        with pytest.raises(ValueError, match=r"linear\('layers.0.w'\) multiplies inputs of last axis 4"):
            model.apply(ops, x)
        with pytest.raises(ValueError, match=r"linear\('gru.w_r'\) multiplies inputs of last axis 4"):
            gru.apply(ops, x)


def test_gru_apply_needs_a_time_axis_with_at_least_one_step():
    gru = GRU(4, 8)
    ops = egg.MeanOps(gru.init(np))
    for shape in ((4,), (2, 0, 4)):
        with pytest.raises(ValueError, match="T ≥ 1"):
            gru.apply(ops, np.ones(shape, np.float32))


def test_a_population_needs_an_initial_state_per_member():
    gru = GRU(4, 8)
    pop = _population(gru.init(np))
    with pytest.raises(ValueError, match=r"linear\('gru.u_r'\).*leading axis must be the population \(6\)"):
        gru.apply(pop, np.ones((2, 3, 4), np.float32), np.zeros((2, 8), np.float32))


def test_init_rejects_a_non_floating_dtype():
    with pytest.raises(TypeError, match="real floating dtype"):
        MLP((2, 3)).init(np, dtype=np.int32)


def test_a_missing_leaf_is_named():
    with pytest.raises(KeyError, match=r"layers\.1\.w"):
        MLP((4, 8, 3)).apply(egg.MeanOps(MLP((4, 8)).init(np)), np.ones((1, 4), np.float32))


# Learning.


def _log_softmax(xp, z):
    """log softmax over the last axis, stable: (z − max z) − log Σ exp(z − max z)."""
    z = z - xp.max(z, axis=-1, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


def test_an_mlp_evolved_with_eggroll_learns_a_teacher_networks_classes():
    """A fixed random teacher MLP (8 → 16 → 4, weights ×2 so its boundaries bend) labels Gaussian inputs. The
    student (same shape) maximizes the mean log-likelihood of a fresh batch of 256 each generation, for all
    64 members in one `model.apply(pop, x)`. From chance (≈ 0.25; the largest class holds 30% of the test
    set) its held-out accuracy reaches ≈ 0.79 after 60 generations (0.75–0.85 over other teacher seeds)."""
    backend = get_backend("numpy")
    xp = backend.xp
    rng = np.random.default_rng(1)
    teacher, student = MLP((8, 16, 4), name="teacher"), MLP((8, 16, 4))
    teacher_ops = egg.MeanOps({k: 2 * v for k, v in teacher.init(xp, seed=1).items()})

    def labelled(n):
        x = backend.asarray(rng.standard_normal((n, 8)), dtype=xp.float32)
        return x, xp.argmax(teacher.apply(teacher_ops, x), axis=-1)

    x_test, y_test = labelled(1000)

    def accuracy(params):
        predicted = xp.argmax(student.apply(egg.MeanOps(params), x_test), axis=-1)
        return float(xp.mean(xp.astype(predicted == y_test, xp.float32)))

    es = egg.EGGROLL(population_size=64, sigma=0.1, rank=1, optimizer=egg.optim.adam(0.05), seed=0)
    state = es.init(student.init(xp, seed=0))
    initial = accuracy(state.params)
    for _ in range(60):
        x, y = labelled(256)
        one_hot = xp.astype(y[:, None] == xp.arange(4, device=backend.device)[None, :], xp.float32)
        pop = es.ask(state)
        log_likelihood = xp.sum(_log_softmax(xp, student.apply(pop, x, shared=True)) * one_hot, axis=-1)
        state, _ = es.tell(state, pop, xp.mean(log_likelihood, axis=-1))
    final = accuracy(state.params)
    assert initial < 0.4, initial
    assert final >= 0.7, final


class CachingOps:
    """A user's ops that hands out the same cached array for every call: nothing may write into it."""

    xp = np

    def __init__(self, value):
        self.value = value

    def linear(self, name, x, bias=None, *, shared=True):
        return self.value


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_in_place_activations_never_write_into_arrays_others_hold(act):
    model = MLP((3, 4, 2), activation=act)
    params = model.init(np, seed=1)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    expected = ACTIVATIONS[act](x @ params["layers.0.w"].T + params["layers.0.b"]) @ params["layers.1.w"].T
    np.testing.assert_allclose(model.apply(egg.MeanOps(params), x), expected + params["layers.1.b"], rtol=1e-6)
    cached = np.full((5, 4), -2.0, np.float32)
    model.apply(CachingOps(cached), x)
    assert np.all(cached == -2.0)  # a user's ops' array is untouched
    frozen = egg.EGGROLL(population_size=4, sigma=0.1, policy={"layers.0.w": "frozen", "layers.0.b": "frozen"})
    pop = frozen.ask(frozen.init(params))
    before = {name: value.copy() for name, value in params.items()}
    out = model.apply(pop, x, shared=True)  # the frozen first layer's output is a read-only broadcast
    assert out.shape == (4, 5, 2) and all(np.array_equal(params[k], v) for k, v in before.items())
    np.testing.assert_allclose(out[0], model.apply(egg.MeanOps(pop.member(0)), x), rtol=1e-5)
