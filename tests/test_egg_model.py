"""The integer language model EGG: its layout and parameter count, integer log-probabilities close to the
exact ones, a population forward equal to each member's own integer forward, and equal results on every
backend."""

import math

import numpy as np
import pytest
from helpers import np_of

import eggroll_np as egg
from eggroll_np import integer
from eggroll_np.egg_model import EGG, LOGIT_UNIT, log2_probabilities


def test_the_layout_has_the_documented_parameter_count():
    for layers, width in [(1, 32), (2, 64), (6, 256)]:
        model = EGG(layers, width)
        assert model.parameter_count == 512 * width + layers * 12 * width**2
    assert EGG(6, 256).parameter_count == 4_856_064 - (256 + 6 * 4 * 256)  # the paper: less norm gains, biases


def test_init_is_round_16_normal_as_int8_and_the_same_on_every_backend(backend):
    params = EGG(1, 16).init(np, seed=3)
    assert all(v.dtype == np.int8 for v in params.values())
    embed = params["embed"].astype(np.float64)
    assert abs(embed.std() - 16) < 1.0 and np.abs(embed).max() <= 127
    other = EGG(1, 16).init(backend.xp, seed=3, device=backend.device)
    for name, value in params.items():
        np.testing.assert_array_equal(np_of(other[name]), value)


def test_integer_log_probabilities_are_within_their_rounding_of_the_exact_ones():
    rng = np.random.default_rng(0)
    logits = rng.integers(-127, 128, size=(4, 7, 256)).astype(np.int8)
    logits[0, 0] = 0  # uniform: exactly 8 bits
    targets = rng.integers(0, 256, size=(4, 7))
    got = log2_probabilities(np, logits, targets) / LOGIT_UNIT
    scaled = logits.astype(np.float64) / LOGIT_UNIT
    top = scaled.max(axis=-1, keepdims=True)
    exact = np.take_along_axis(scaled, targets[..., None], -1)[..., 0] - (
        top[..., 0] + np.log2(np.exp2(scaled - top).sum(axis=-1))
    )
    assert got[0, 0] == -8.0
    # LOG2 rounds to 1/32 bit, the 9-bit mantissa truncates < log2(1 + 1/256) = 0.0056 bit, EXP2 rounds ~2^-16
    assert np.max(np.abs(got - exact)) <= 1 / 32 + 0.0057 + 0.001


class MemberOps:
    """The integer ops of one materialized member i: clip(⌊x Wᵢᵀ / d(n)⌋) and ⌊Wᵢ[ids]⌋ in int64."""

    def __init__(self, pop, i):
        self.xp, self.scale = np, round(1 / pop.sigma)
        self.weights = {
            k: np.round(v.astype(np.float64) * self.scale).astype(np.int64) for k, v in pop.member(i).items()
        }

    def linear(self, name, x, bias=None, *, shared=True):
        w = self.weights[name]
        z = x.astype(np.int64) @ w.T
        return np.clip(np.floor_divide(z, self.scale * integer.divisor(w.shape[1])), -127, 127).astype(np.int8)

    def embedding(self, name, ids, *, shared=True):
        rows = np.floor_divide(self.weights[name][ids], self.scale)
        return np.clip(rows, -127, 127).astype(np.int8)


def test_the_population_forward_equals_each_members_own_integer_forward():
    model = EGG(1, 16)
    es = egg.EGGROLL(population_size=6, sigma=1 / 16, optimizer=egg.optim.integer_step(), shaping="sign", seed=2)
    pop = es.ask(es.init(model.init(np, seed=1)))
    tokens = np.random.default_rng(1).integers(0, 256, size=(6, 12))
    logits = model.apply(pop, tokens, shared=False)
    assert logits.shape == (6, 12, 256) and logits.dtype == np.int8
    for i in range(6):
        np.testing.assert_array_equal(model.apply(MemberOps(pop, i), tokens[i]), logits[i])
    assert not np.array_equal(logits[0], logits[1])  # antithetic partners differ


def _generations(xp, device, generations=3):
    model = EGG(1, 16)
    es = egg.EGGROLL(population_size=8, sigma=1 / 16, optimizer=egg.optim.integer_step(0.02), shaping="sign", seed=5)
    state = es.init(model.init(xp, seed=4, device=device))
    data = np.random.default_rng(2).integers(0, 256, size=(4, 17))
    sequences = xp.asarray(np.repeat(data, 2, axis=0), dtype=xp.int32, device=device)
    for _ in range(generations):
        pop = es.ask(state)
        state, _ = es.tell(state, pop, model.log_likelihood(pop, sequences, shared=False))
    return state


def test_a_short_egg_run_is_bit_identical_on_every_backend(backend):
    reference = _generations(np, None)
    state = _generations(backend.xp, backend.device)
    for name, value in reference.params.items():
        np.testing.assert_array_equal(np_of(state.params[name]), value)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="layers=0 must be an integer ≥ 1"):
        EGG(0, 8)
    with pytest.raises(TypeError, match="width"):
        EGG(1, 8.5)
    assert math.isclose(EGG(1, 8).parameter_count, 512 * 8 + 12 * 64)


@pytest.mark.parametrize(
    ("sequences", "error", "message"),
    [
        (np.array([[1, 2, 256]]), ValueError, r"must be bytes in \[0, 256\); some are outside"),
        (np.array([[1, -1, 3]]), ValueError, r"must be bytes in \[0, 256\); some are outside"),
        (np.zeros((2, 1), np.int32), ValueError, r"need at least 2 bytes along the last axis; got shape \(2, 1\)"),
        (np.array([[1.0, 2.0]]), TypeError, "must be integer bytes"),
    ],
)
def test_sequences_that_are_not_bytes_are_refused(sequences, error, message):
    model = EGG(1, 8)
    with pytest.raises(error, match=message):  # a target of 256 would read the next row's logit
        model.log_likelihood(egg.MeanOps(model.init(np)), sequences)


def test_generate_is_a_pure_function_of_its_arguments_and_equal_on_every_backend(backend):
    model = EGG(1, 16)
    params = model.init(np, seed=6)
    sample = model.generate(params, b"The ", 24, seed=1)
    assert isinstance(sample, bytes) and len(sample) == 24
    assert model.generate(params, b"The ", 24, seed=1) == sample
    assert model.generate(params, b"The ", 24, seed=2) != sample
    assert model.generate(model.init(backend.xp, seed=6, device=backend.device), b"The ", 24, seed=1) == sample
    assert model.generate(params, b"x", 0) == b""


def test_generate_follows_the_integer_softmax():
    model = EGG(1, 8)
    params = model.init(np, seed=0)
    logits = model.apply(egg.MeanOps(params), np.asarray([[ord("a")]], np.int32))[0, -1].astype(np.float64)
    q = 2.0 ** ((logits - logits.max()) / LOGIT_UNIT)
    q /= q.sum()
    draws = 2000
    drawn = [model.generate(params, b"a", 1, seed=s)[0] for s in range(draws)]
    empirical = np.bincount(drawn, minlength=256) / draws
    # each byte's frequency within 4.5 binomial standard deviations (256 bytes: a union bound of 0.2 %)
    bound = 4.5 * np.sqrt(q * (1 - q) / draws) + 1 / draws
    assert np.all(np.abs(empirical - q) <= bound)
    assert q.max() > 0.1  # a peaked distribution, so a uniform sampler would fail the bound


def test_generate_refuses_an_empty_prompt():
    with pytest.raises(ValueError, match="must be non-empty bytes"):
        EGG(1, 8).generate(EGG(1, 8).init(np), b"", 4)


def test_the_float_twin_draws_the_normals_egg_rounds():
    ints, floats = EGG(1, 16).init(np, seed=3), EGG(1, 16, dtype="float32").init(np, seed=3)
    for name, value in ints.items():
        assert floats[name].dtype == np.float32 and floats[name].shape == value.shape
        np.testing.assert_array_equal(np.clip(np.round(16.0 * floats[name]), -127, 127), value)


@pytest.mark.parametrize(("layers", "width"), [(1, 32), (2, 64)])
def test_the_float_twin_computes_egg_without_the_rounding(layers, width):
    """Twin weights Wᵢ/16 give logits l with 32 l ≈ EGG's: a mistaken unit (a factor 2 anywhere) would put the
    slope at 0.5 or 2, while EGG's floors (≤ 1 unit each, a few per layer, on logits ~30 units) keep it within
    3 % and the log-likelihood per byte within 0.15 bit."""
    model, twin = EGG(layers, width), EGG(layers, width, dtype="float32")
    params = model.init(np, seed=1)
    tokens = np.random.default_rng(0).integers(0, 256, size=(4, 40))
    exact = model.apply(egg.MeanOps(params), tokens).astype(np.float64)
    scaled = {name: value.astype(np.float32) / 16 for name, value in params.items()}
    unrounded = 32 * twin.apply(egg.MeanOps(scaled), tokens).astype(np.float64)
    assert abs((exact * unrounded).sum() / (unrounded**2).sum() - 1) < 0.03
    assert np.corrcoef(exact.ravel(), unrounded.ravel())[0, 1] > 0.98
    bits = model.log_likelihood(egg.MeanOps(params), tokens) * model.bits_per_unit
    twin_bits = twin.log_likelihood(egg.MeanOps(scaled), tokens) * twin.bits_per_unit
    np.testing.assert_allclose(twin_bits / 39, bits / 39, atol=0.15)


def test_the_float_twins_log_probabilities_are_the_exact_log_softmax():
    rng = np.random.default_rng(4)
    logits = rng.uniform(-127 / 32, 127 / 32, size=(3, 5, 256)).astype(np.float32)
    targets = rng.integers(0, 256, size=(3, 5))
    from eggroll_np.egg_model import _FloatArithmetic

    bits = 2 * logits.astype(np.float64)
    exact = np.take_along_axis(bits, targets[..., None], -1)[..., 0] - np.log2(np.exp2(bits).sum(axis=-1))
    # float32: exp and log2 of terms ≤ 2^16 each carry ~1e-7 relative error; 1e-5 bit covers their sum
    np.testing.assert_allclose(_FloatArithmetic(np).log2_probabilities(logits, targets), exact, atol=1e-5)


def test_the_float_twins_population_forward_equals_each_members_own_forward():
    twin = EGG(1, 16, dtype="float32")
    es = egg.EGGROLL(population_size=6, sigma=0.03, seed=2)
    pop = es.ask(es.init(twin.init(np, seed=1)))
    tokens = np.random.default_rng(1).integers(0, 256, size=(6, 12))
    logits = twin.apply(pop, tokens, shared=False)
    assert logits.shape == (6, 12, 256) and logits.dtype == np.float32
    for i in range(6):
        # one member's weights formed in float32 vs the low-rank correction: a few ulp of values ≤ 127/32
        np.testing.assert_allclose(twin.apply(egg.MeanOps(pop.member(i)), tokens[i]), logits[i], atol=2e-5)
    assert not np.allclose(logits[0], logits[1])


def test_generate_samples_the_float_twin_on_every_backend(backend):
    twin = EGG(1, 16, dtype="float32")
    params = twin.init(np, seed=6)
    sample = twin.generate(params, b"The ", 16, seed=1)
    assert len(sample) == 16 and twin.generate(params, b"The ", 16, seed=2) != sample
    assert twin.generate(twin.init(backend.xp, seed=6, device=backend.device), b"The ", 16, seed=1) == sample


def test_the_float_twin_runs_on_every_backend(backend):
    twin = EGG(1, 16, dtype="float32")
    tokens = np.random.default_rng(3).integers(0, 256, size=(2, 10))
    reference = twin.log_likelihood(egg.MeanOps(twin.init(np, seed=2)), tokens)
    params = twin.init(backend.xp, seed=2, device=backend.device)
    sequences = backend.xp.asarray(tokens, dtype=backend.xp.int32, device=backend.device)
    got = twin.log_likelihood(egg.MeanOps(params), sequences)
    np.testing.assert_allclose(np_of(got), reference, rtol=1e-5)  # float32 sums in another order
