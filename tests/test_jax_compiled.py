"""A whole generation, step(state) = tell(state, pop, fitness(pop)) with pop = ask(state), compiles once under
jax.jit and runs under jax.lax.scan with a traced generation: the noise of a traced generation has the bits
of the eager one, an int8 run ends bit-identical to the eager run, a float run within rounding, and what
needs a host read says so."""

import numpy as np
import pytest
from helpers import np_of

import eggroll_np as egg
from eggroll_np import random
from eggroll_np.egg_model import EGG
from eggroll_np.models import MLP

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")


@pytest.mark.parametrize("epoch", [0, 5, 2**31 - 1])
def test_a_traced_epoch_gives_the_noise_of_the_eager_one(epoch):
    stream = random.stream_id("layer.w")
    eager = random.draw(
        jnp, "normal", random.derive_key(7, epoch, stream), range(3, 6), 11, dtype=jnp.float32, dev=None
    )
    traced = jax.jit(
        lambda e: random.draw(
            jnp, "normal", random.derive_key(7, e, stream), range(3, 6), 11, dtype=jnp.float32, dev=None
        )
    )(jnp.asarray(epoch))
    np.testing.assert_array_equal(np_of(traced), np_of(eager))
    bits = jax.jit(lambda e: random.random_bits(jnp, random.derive_key(7, e, stream), range(2), 3, None))
    expected = random.random_bits(np, random.derive_key(7, epoch, stream), range(2), 3, None)
    for got, want in zip(bits(jnp.asarray(epoch)), expected, strict=True):
        np.testing.assert_array_equal(np_of(got), want)


def _scan_and_eager(es, params, fitness, generations):
    traces = []

    def step(state, _):
        traces.append(1)  # runs once per trace, not per generation
        pop = es.ask(state)
        new, info = es.tell(state, pop, fitness(pop))
        return new, info["fitness_mean"]

    state = es.init(params)
    compiled, means = jax.jit(lambda s: jax.lax.scan(step, s, None, length=generations))(state)
    assert len(traces) == 1 and means.shape == (generations,)
    assert int(compiled.generation) == generations
    for _ in range(generations):
        state, _ = step(state, None)
    return compiled, state


def test_an_int8_egg_run_under_lax_scan_ends_bit_identical_to_the_eager_run():
    model = EGG(1, 16)
    es = egg.EGGROLL(
        population_size=8,
        sigma=1 / 16,
        optimizer=egg.optim.integer_step(0.05),
        shaping="sign",
        nan_policy="worst",
        seed=5,
    )
    data = np.random.default_rng(2).integers(0, 256, size=(4, 17))
    sequences = jnp.asarray(np.repeat(data, 2, axis=0), dtype=jnp.int32)

    def fitness(pop):  # |Σ log₂ p| ≤ 398 · 16 units here, far below 2²⁴: float32 holds it exactly
        return jnp.astype(model.log_likelihood(pop, sequences, shared=False), jnp.float32)

    compiled, eager = _scan_and_eager(es, model.init(jnp, seed=4), fitness, 3)
    for name, value in eager.params.items():
        np.testing.assert_array_equal(np_of(compiled.params[name]), np_of(value))
    assert any(not np.array_equal(np_of(eager.params[k]), np_of(v)) for k, v in model.init(jnp, seed=4).items())


def test_a_state_out_of_jit_goes_on_eagerly_and_checkpoints(tmp_path):
    """jax.jit returns the generation (and an optimizer's count) as 0-d arrays: eager ask, tell and checkpoint
    take them, and the run goes on with the bits of an all-eager run."""
    model = EGG(1, 8)
    es = egg.EGGROLL(
        population_size=4,
        sigma=1 / 16,
        optimizer=egg.optim.integer_step(0.1),
        shaping="sign",
        nan_policy="worst",
        seed=3,
    )
    sequences = jnp.asarray(np.random.default_rng(1).integers(0, 256, size=(4, 9)), dtype=jnp.int32)

    def step(state):
        pop = es.ask(state)
        return es.tell(state, pop, jnp.astype(model.log_likelihood(pop, sequences, shared=False), jnp.float32))[0]

    eager = es.init(model.init(jnp, seed=2))
    for _ in range(3):
        eager = step(eager)
    compiled = jax.jit(step)(step(es.init(model.init(jnp, seed=2))))
    assert not isinstance(compiled.generation, int)
    resumed = egg.checkpoint.load(egg.checkpoint.save(tmp_path / "state.npz", compiled), xp=jnp)
    assert resumed.generation == 2
    for going_on in (step(compiled), step(resumed)):
        for name, value in going_on.params.items():
            np.testing.assert_array_equal(np_of(value), np_of(eager.params[name]))


def test_a_float_run_under_lax_scan_matches_the_eager_run_and_learns():
    model = MLP((8, 32, 4))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((16, 8)), dtype=jnp.float32)
    target = jnp.asarray(rng.standard_normal((16, 4)), dtype=jnp.float32)
    es = egg.EGGROLL(population_size=64, sigma=0.1, optimizer=egg.optim.adam(0.05), nan_policy="worst", seed=1)

    def fitness(pop):
        return -jnp.mean((model.apply(pop, x) - target) ** 2, axis=(1, 2))

    compiled, eager = _scan_and_eager(es, model.init(jnp), fitness, 10)
    for name, value in eager.params.items():  # XLA reassociates float32 sums: steps of lr 0.05 agree to ~1e-6
        np.testing.assert_allclose(np_of(compiled.params[name]), np_of(value), atol=1e-4)
    loss = lambda params: float(jnp.mean((model.apply(egg.MeanOps(params), x) - target) ** 2))  # noqa: E731
    assert loss(compiled.params) < 0.8 * loss(model.init(jnp))


@pytest.mark.parametrize(
    "schedule",
    [
        egg.schedules.constant(0.3),
        egg.schedules.linear(0.5, 0.1, 7),
        egg.schedules.cosine(0.5, 7, 0.1),
        egg.schedules.exponential(0.5, 0.5, 3, floor=0.2),
    ],
)
def test_the_schedules_take_a_traced_generation(schedule):
    traced = jax.jit(schedule)
    for t in (0, 3, 7, 12):  # before, inside and past the schedule's steps (and the exponential's floor)
        assert float(traced(jnp.asarray(t))) == pytest.approx(schedule(t), rel=1e-6)


def test_a_run_with_sigma_and_learning_rate_schedules_compiles_and_matches_the_eager_run():
    model = MLP((4, 8, 2))
    x = jnp.asarray(np.random.default_rng(3).standard_normal((8, 4)), dtype=jnp.float32)
    es = egg.EGGROLL(
        population_size=16,
        sigma=egg.schedules.cosine(0.2, 6, 0.25),
        optimizer=egg.optim.adam(egg.schedules.linear(0.05, 0.01, 6)),
        nan_policy="worst",
        seed=4,
    )

    def fitness(pop):
        return -jnp.mean(model.apply(pop, x) ** 2, axis=(1, 2))

    compiled, eager = _scan_and_eager(es, model.init(jnp), fitness, 6)

    def one_more(state):  # eagerly; from the compiled state, a 0-d array generation the schedules read as an int
        pop = es.ask(state)
        return es.tell(state, pop, fitness(pop))[0]

    compiled, eager = one_more(compiled), one_more(eager)
    for name, value in eager.params.items():
        np.testing.assert_allclose(np_of(compiled.params[name]), np_of(value), atol=1e-5)
    integer = egg.EGGROLL(
        population_size=4,
        sigma=egg.schedules.cosine(1 / 16, 10),
        shaping="sign",
        optimizer=egg.optim.integer_step(0.1),
        nan_policy="worst",
    )
    state = integer.init(EGG(1, 8).init(jnp))
    with pytest.raises(ValueError, match=r"int8 leaves need σ = 2\^-k known .* pass a constant sigma"):
        jax.jit(lambda s: EGG(1, 8).apply(integer.ask(s), jnp.zeros((4, 3), dtype=jnp.int32), shared=False))(state)
    scheduled = egg.EGGROLL(
        population_size=4,
        sigma=1 / 16,
        shaping="sign",
        optimizer=egg.optim.integer_step(egg.schedules.linear(0.2, 0.05, 9)),
        nan_policy="worst",
    )
    state = scheduled.init(EGG(1, 8).init(jnp))
    with pytest.raises(ValueError, match=r"integer_step's fraction α must be a number under jax.jit .* bit-identical"):
        jax.jit(lambda s: scheduled.tell(s, scheduled.ask(s), jnp.arange(4.0))[0])(state)


def test_what_needs_a_host_read_says_so_under_tracing():
    es = egg.EGGROLL(population_size=4, sigma=0.1)  # nan_policy="raise" by default
    state = es.init({"w": jnp.ones((2, 3), dtype=jnp.float32)})

    def step(state, fitness):
        return es.tell(state, es.ask(state), fitness)[0]

    with pytest.raises(ValueError, match=r"nan_policy='raise' reads the fitness back .* pass nan_policy='worst'"):
        jax.jit(step)(state, jnp.arange(4.0))
    worst = egg.EGGROLL(population_size=4, sigma=0.1, nan_policy="worst")
    with pytest.raises(
        TypeError, match=r"int32 fitness widened to float32 could merge .* jnp.astype\(F, jnp.float32\)"
    ):
        jax.jit(lambda s, f: worst.tell(s, worst.ask(s), f)[0])(state, jnp.arange(4, dtype=jnp.int32))
