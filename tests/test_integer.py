"""Integer EGGROLL: the int8 forward pass equals an int64 reference built from each materialized member, the
thresholded update equals one built from the members, the noise is the same integers on every backend, and
a short int8 run ends at identical params everywhere and resumes bit-exactly."""

import math

import numpy as np
import pytest
from helpers import np_of
from hypothesis import given
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import integer
from eggroll_np.integer import divisor


def _weights(rng, shape, scale=16):
    return np.clip(np.round(scale * rng.standard_normal(shape)), -127, 127).astype(np.int8)


def _inputs(rng, shape):
    return rng.integers(-127, 128, size=shape).astype(np.int8)


def _strategy(n=8, shift=4, rank=1, antithetic=True, fraction=0.05, seed=7):
    return egg.EGGROLL(
        population_size=n,
        sigma=2.0**-shift,
        rank=rank,
        antithetic=antithetic,
        optimizer=egg.optim.integer_step(fraction),
        shaping="sign" if antithetic else "centered_rank",
        seed=seed,
    )


def _reference_linear(pop, name, x, per_member):
    """clip(⌊xᵢ Wᵢᵀ / d(n)⌋, ±127) in int64 from each member's exact Wᵢ (scaled by 2^σ̂ to integers)."""
    scale = round(1 / pop.sigma)
    rows = []
    for i in range(len(pop)):
        scaled = np.asarray(np_of(pop.member(i)[name]), dtype=np.float64) * scale
        assert np.array_equal(scaled, np.round(scaled))  # Wᵢ is a dyadic rational of denominator 2^σ̂
        xi = np_of(x)[i] if per_member else np_of(x)
        z = xi.astype(np.int64) @ scaled.astype(np.int64).T
        rows.append(np.clip(np.floor_divide(z, scale * divisor(scaled.shape[1])), -127, 127))
    return np.stack(rows)


@given(
    m=st.integers(1, 9),
    n=st.sampled_from([1, 3, 16, 64, 1040, 1041]),
    rank=st.integers(1, 3),
    shift=st.integers(0, 6),
    antithetic=st.booleans(),
    per_member=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_int8_forward_equals_an_int64_reference_of_every_member(m, n, rank, shift, antithetic, per_member, seed):
    rng = np.random.default_rng(seed)
    es = _strategy(n=4, shift=shift, rank=rank, antithetic=antithetic, seed=seed)
    pop = es.ask(es.init({"w": _weights(rng, (m, n))}))
    x = _inputs(rng, (4, 2, n) if per_member else (2, n))
    y = pop.linear("w", x, shared=not per_member)
    assert y.dtype == np.int8 and y.shape == (4, 2, m)
    np.testing.assert_array_equal(y, _reference_linear(pop, "w", x, per_member))


def test_the_forward_saturates_at_127_and_the_mean_takes_the_same_formula():
    es = _strategy()
    state = es.init({"w": np.full((3, 16), 127, np.int8)})
    x = np.full((1, 16), 127, np.int8)
    assert np.all(egg.MeanOps(state.params).linear("w", x) == 127)  # 16·127² / 64 = 4032 → 127
    assert np.all(egg.MeanOps(state.params).linear("w", -x) == -127)
    reference = np.clip(np.floor_divide(x.astype(np.int64) @ state.params["w"].astype(np.int64).T, 64), -127, 127)
    np.testing.assert_array_equal(egg.MeanOps(state.params).linear("w", x), reference)


def test_a_fan_in_past_float32_exactness_takes_the_int32_product_and_overflow_is_refused():
    rng = np.random.default_rng(1)
    es = _strategy(n=2)
    pop = es.ask(es.init({"w": np.full((2, 1041), 127, np.int8)}))
    x = np.full((1, 1041), 127, np.int8)
    np.testing.assert_array_equal(pop.linear("w", x), _reference_linear(pop, "w", x, False))
    big = _strategy(n=2, shift=16)
    pop = big.ask(big.init({"w": _weights(rng, (2, 1041))}))
    with pytest.raises(ValueError, match="could overflow int32"):
        pop.linear("w", x)


def test_the_int8_embedding_rows_are_the_floor_of_each_members_rows():
    rng = np.random.default_rng(2)
    es = _strategy(n=6)
    pop = es.ask(es.init({"table": _weights(rng, (10, 5))}))
    ids = np.array([[0, 3, 9], [3, 3, 1]])
    for shared, given_ids in [(True, ids), (False, rng.integers(0, 10, size=(6, 2, 3)))]:
        rows = pop.embedding("table", given_ids, shared=shared)
        assert rows.dtype == np.int8
        for i in range(6):
            table = np.clip(np.floor(pop.member(i)["table"].astype(np.float64)), -127, 127)
            np.testing.assert_array_equal(rows[i], table[given_ids if shared else given_ids[i]])


def _reference_step(pop, f, fraction):
    """The thresholded step from the members: E = 2^σ̂ Σᵢ fᵢ (Wᵢ − W) in int64, then the largest fraction moved."""
    w = pop.params["w"].astype(np.int64)
    scale = round(1 / pop.sigma)
    estimate = sum(int(f[i]) * (pop.member(i)["w"].astype(np.float64) * scale - w * scale) for i in range(len(pop)))
    estimate = estimate.astype(np.int64)
    keep = math.ceil(fraction * estimate.size)
    threshold = np.sort(np.abs(estimate).ravel())[estimate.size - keep]
    moved = (np.abs(estimate) >= threshold) & (estimate != 0)
    return np.clip(w + np.sign(estimate) * moved, -127, 127), moved


@given(
    shape=st.sampled_from([(4, 6), (16, 16), (33, 7)]),
    fraction=st.sampled_from([0.01, 0.1, 0.5, 1.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_thresholded_update_equals_a_reference_from_the_members(shape, fraction, seed):
    rng = np.random.default_rng(seed)
    es = _strategy(n=16, fraction=fraction, seed=seed)
    weights = _weights(rng, shape, scale=60)  # many saturated weights
    state = es.init({"w": weights})
    pop = es.ask(state)
    fitness = rng.standard_normal(16)
    f = np_of(es.shaping(np.asarray(fitness)))
    expected, moved = _reference_step(pop, f, fraction)
    new, _ = es.tell(state, pop, fitness)
    assert new.params["w"].dtype == np.int8
    np.testing.assert_array_equal(new.params["w"], expected)
    assert moved.sum() >= min(math.ceil(fraction * weights.size), np.count_nonzero(moved))


def test_the_fraction_of_weights_moved_follows_alpha():
    rng = np.random.default_rng(3)
    for fraction in (0.01, 0.05, 0.2):
        es = _strategy(n=64, fraction=fraction)
        state = es.init({"w": _weights(rng, (64, 64), scale=8)})
        new, _ = es.tell(state, es.ask(state), rng.standard_normal(64))
        moved = np.count_nonzero(new.params["w"] != state.params["w"])
        # ⌈α·4096⌉ moved, plus ties at the threshold, minus weights already saturated in their direction
        assert math.ceil(fraction * 4096) * 0.9 <= moved <= math.ceil(fraction * 4096) * 1.25, (fraction, moved)


def test_the_integer_factors_are_a_centred_binomial_and_the_same_on_every_backend(backend):
    stream = egg.random.derive_key(5, 0, egg.random.stream_id("w"))
    host = np_of(integer.integer_factors(np, stream, range(3, 203), 400, None))
    assert host.dtype == np.int8 and host.min() >= -16 and host.max() <= 16
    # 80 000 draws of variance 8: the sample mean has sd 0.01, the sample variance sd ≈ 0.04
    assert abs(host.mean()) < 0.05 and abs(host.var() - 8.0) < 0.2
    drawn = integer.integer_factors(backend.xp, stream, range(3, 203), 400, backend.device)
    np.testing.assert_array_equal(np_of(drawn), host)


def _generation(es, state, xp, device):
    """One generation of a tiny int8 model: an embedding, two int8 layers, fitness −Σ|y − target|."""
    ids = xp.asarray(np.arange(12) % 32, dtype=xp.int32, device=device)
    target = xp.asarray(np.arange(8) - 4, dtype=xp.int32, device=device)
    pop = es.ask(state)
    h = pop.linear("w1", pop.embedding("embed", ids), shared=False)
    y = xp.astype(pop.linear("w2", h, shared=False), xp.int32)
    return es.tell(state, pop, -xp.sum(xp.abs(y - target), axis=(1, 2), dtype=xp.int32))[0]


def _short_run(xp, device, generations=5):
    rng = np.random.default_rng(11)
    params = {"embed": _weights(rng, (32, 16)), "w1": _weights(rng, (16, 16)), "w2": _weights(rng, (8, 16))}
    es = _strategy(n=16, fraction=0.05)
    states = [es.init({k: xp.asarray(v, device=device) for k, v in params.items()})]
    for _ in range(generations):
        states.append(_generation(es, states[-1], xp, device))
    return es, states


def test_a_short_int8_run_ends_at_identical_params_on_every_backend(backend):
    _, reference = _short_run(np, None)
    _, states = _short_run(backend.xp, backend.device)
    for name, value in reference[-1].params.items():
        np.testing.assert_array_equal(np_of(states[-1].params[name]), value)
    assert any(np.any(reference[-1].params[k] != reference[0].params[k]) for k in reference[0].params)


def test_an_int8_run_resumes_from_a_checkpoint_bit_exactly(tmp_path):
    es, states = _short_run(np, None, generations=5)
    egg.save(tmp_path / "int8.npz", states[2])
    state = egg.load(tmp_path / "int8.npz")
    assert state.params["w1"].dtype == np.int8 and state.opt_state == egg.optim.IntegerStepState()
    for _ in range(3):
        state = _generation(es, state, np, None)
    assert state.generation == 5
    for name in states[-1].params:
        np.testing.assert_array_equal(state.params[name], states[-1].params[name])


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: _strategy().init({"b": np.zeros(4, np.int8)}), ValueError, "int8 needs at least 2 dimensions"),
        (
            lambda: egg.EGGROLL(population_size=4).init({"w": np.zeros((2, 2), np.int8)}),
            TypeError,
            "adam updates float leaves; leaf 'w' is int8",
        ),
        (
            lambda: _strategy().init({"w": np.zeros((2, 2), np.float32)}),
            TypeError,
            "integer_step updates int8 leaves",
        ),
        (
            lambda: egg.EGGROLL(population_size=4, policy={"w": "lowrank"}).init({"w": np.zeros((2, 2), np.int8)}),
            ValueError,
            "can be 'int8' or 'frozen'",
        ),
        (
            lambda: egg.EGGROLL(population_size=4, sigma=0.1, optimizer=egg.optim.integer_step()).ask(
                egg.EGGROLL(population_size=4, optimizer=egg.optim.integer_step()).init(
                    {"w": np.zeros((2, 2), np.int8)}
                )
            ),
            ValueError,
            "int8 leaves need σ = 2",
        ),
        (lambda: egg.optim.integer_step(0.0), ValueError, "fraction=0.0 must be"),
        (
            lambda: _strategy().ask(_strategy().init({"w": np.zeros((2, 3), np.int8)})).linear("w", np.zeros(3)),
            TypeError,
            "needs int8 inputs",
        ),
        (
            lambda: egg.MeanOps({"w": np.zeros((2, 3), np.int8)}).linear("w", np.zeros(3, np.int8), bias="w"),
            ValueError,
            "takes no bias",
        ),
    ],
)
def test_bad_integer_input_is_refused_with_a_clear_message(build, error, message):
    with pytest.raises(error, match=message):
        build()
