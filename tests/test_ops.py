"""Model ops: one rule for inputs at every batch size, and one model written once giving equal members through
MeanOps, `member(i)` and the Population."""

import numpy as np
import pytest
from helpers import BACKEND_NAMES, get_backend, make_population, member_magnitudes, np_of
from hypothesis import given
from hypothesis import strategies as st

import eggroll_np as egg

WIDTH = 5
POPULATION = 6


def _model(ops, x, steps: int):
    """A gain vector, a bias vector and a recurrent step, written once against ops:
    h = (x W_inᵀ + b_in) ⊙ gain, then `steps` times h ← tanh(h W_recᵀ + b_rec + shift)."""
    xp = ops.xp
    h = ops.linear("in.w", x, bias="in.b")
    h = h * ops.vector("gain", like=h)
    for _ in range(steps):
        h = xp.tanh(ops.linear("rec.w", h, bias="rec.b", shared=False) + ops.vector("shift", like=h))
    return h


def _params(backend, dtype, seed):
    rng = np.random.default_rng(seed)
    shapes = {"in.w": (WIDTH, 3), "in.b": (WIDTH,), "gain": (WIDTH,), "rec.w": (WIDTH, WIDTH)}
    shapes |= {"rec.b": (WIDTH,), "shift": (WIDTH,)}
    return {name: backend.asarray(rng.standard_normal(shape) * 0.5, dtype=dtype) for name, shape in shapes.items()}


def _bound(mags, x, steps: int, u: float, rank: int):
    """|population − member| ≤ 2e, e the rounding error of either path along magnitudes a ≥ |h|: a sum of n
    products with a rank-r correction rounds ≤ (n + 2r + 4) times, the gain once, tanh is 1-Lipschitz and
    |tanh a| ≤ min(|a|, 1)."""
    a = np.abs(x) @ mags["in.w"].T + mags["in.b"]
    e = (x.shape[-1] + 2 * rank + 4) * u * a
    a, e = a * mags["gain"], e * mags["gain"] + u * a * mags["gain"]
    for _ in range(steps):
        pre = a @ mags["rec.w"].T + mags["rec.b"] + mags["shift"]
        e = e @ mags["rec.w"].T + (WIDTH + 2 * rank + 6) * u * pre + 4 * u
        a = np.minimum(pre, 1.0)
    return 2 * e


@pytest.mark.parametrize("name", BACKEND_NAMES)
@given(
    batch=st.sampled_from([1, POPULATION - 2, POPULATION, POPULATION + 2]),
    steps=st.integers(0, 3),
    rank=st.integers(1, 3),
    use_float64=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_model_gives_equal_members_through_mean_ops_members_and_the_population(
    name, batch, steps, rank, use_float64, seed
):
    """An unmarked input is shared at every batch size, N included: row i of the population's output is
    member i's model on the whole batch, and so is MeanOps on θᵢ."""
    backend = get_backend(name)
    dtype = backend.xp.float64 if use_float64 and backend.has_float64 else backend.xp.float32
    u = 2.0**-53 if dtype == getattr(backend.xp, "float64", None) else 2.0**-24
    params = _params(backend, dtype, seed)
    pop = make_population(backend, params, population_size=POPULATION, rank=rank, sigma=0.2, seed=seed)
    x = backend.asarray(np.random.default_rng(seed + 1).standard_normal((batch, 3)), dtype=dtype)
    y = np_of(_model(pop, x, steps))
    assert y.shape == (POPULATION, batch, WIDTH)
    mean = np_of(_model(egg.MeanOps(pop.params), x, steps))
    assert mean.shape == (batch, WIDTH)
    for i in range(POPULATION):
        member = np_of(_model(egg.MeanOps(pop.member(i)), x, steps))
        bound = _bound(member_magnitudes(pop, i), np_of(x), steps, u, rank)
        assert np.all(np.abs(y[i] - member) <= bound), (i, np.max(np.abs(y[i] - member) / bound))
    # The check can fail: the mean parameters are not member 0.
    assert np.abs(y[0] - mean).max() > np.max(_bound(member_magnitudes(pop, 0), np_of(x), steps, u, rank))


def test_vector_like_shapes_the_leaf_to_broadcast_against_an_activation():
    backend = get_backend("numpy")
    pop = make_population(backend, {"gain": (4,), "table": (2, 4)}, population_size=6, policy={"table": "full"})
    h = np.ones((6, 3, 2, 4), np.float32)
    assert pop.vector("gain", like=h).shape == (6, 1, 1, 4)
    assert pop.vector("gain").shape == (6, 4)
    assert pop.vector("table", like=np.ones((6, 2, 4))).shape == (6, 2, 4)
    mean = egg.MeanOps(pop.params)
    assert mean.vector("gain", like=h[0]) is pop.params["gain"]
    np.testing.assert_array_equal((h * pop.vector("gain", like=h))[2, 1, 0], np_of(pop.member(2)["gain"]))


@pytest.mark.parametrize(
    ("like", "message"),
    [
        (
            np.ones((5, 4)),
            r"vector\('gain', like=...\) needs an activation \(N, ..., \*shape\) with N = 6 .* got shape \(5, 4\)",
        ),
        (np.ones(4), r"needs an activation \(N, ..., \*shape\) with N = 6 .* got shape \(4,\)"),
        (3.0, r"got float"),
    ],
)
def test_vector_like_refuses_what_is_not_a_per_member_activation(like, message):
    pop = make_population(get_backend("numpy"), {"gain": (4,)}, population_size=6)
    with pytest.raises(ValueError, match=message):
        pop.vector("gain", like=like)


def test_mean_ops_refuse_what_is_not_params():
    with pytest.raises(TypeError, match=r"MeanOps needs a mapping name -> array, for example state\.params; got list"):
        egg.MeanOps([np.ones(2)])
    with pytest.raises(ValueError, match="MeanOps needs a non-empty mapping"):
        egg.MeanOps({})
    with pytest.raises(ValueError, match=r"vector\('b', like=...\) needs an activation \(..., \*shape\)"):
        egg.MeanOps({"b": np.ones((2, 3))}).vector("b", like=np.ones(3))


def test_a_leaf_bias_is_each_members_own_and_an_array_bias_is_shared():
    backend = get_backend("numpy")
    pop = make_population(backend, {"w": (3, 2), "b": (3,)}, population_size=4)
    x = np.ones((5, 2), np.float32)
    plain = pop.linear("w", x)
    with_leaf = pop.linear("w", x, bias="b")
    with_array = pop.linear("w", x, bias=np.full(3, 2.0, np.float32))
    for i in range(4):
        np.testing.assert_allclose(with_leaf[i] - plain[i], np.broadcast_to(pop.member(i)["b"], (5, 3)), rtol=1e-6)
    np.testing.assert_allclose(with_array - plain, 2.0, rtol=1e-6)
