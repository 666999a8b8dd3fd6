"""The best member: tell's fitness_best and best_index (every backend, traced too), and BestSoFar over a run."""

import math
import re

import array_api_compat.numpy as compat_numpy
import numpy as np
import pytest
from helpers import ALL_BACKENDS, BACKEND_NAMES, get_backend, np_of
from hypothesis import given
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import best as best_module
from eggroll_np import random
from eggroll_np.best import _best_portable, generation_best

backends = pytest.mark.parametrize("name", ALL_BACKENDS)

#       member:  0       1    2    3        4    5     6       7
MIXED = [math.nan, 2.0, 5.0, -math.inf, 5.0, -1.0, math.inf, -1.0]


def _generation(backend, fitness, *, maximize, population_size=8, d=3, **settings):
    es = egg.EGGROLL(population_size=population_size, sigma=0.1, maximize=maximize, nan_policy="worst", **settings)
    state = es.init({"x": backend.asarray(np.zeros(d), dtype=backend.xp.float32)})
    pop = es.ask(state)
    return es, pop, es.tell(state, pop, backend.asarray(fitness))[1]


@backends
@pytest.mark.parametrize(("maximize", "value", "index"), [(True, 5.0, 2), (False, -1.0, 5)])
def test_tell_reports_the_first_member_with_the_best_finite_fitness(name, maximize, value, index):
    backend = get_backend(name)
    _, _, info = _generation(backend, MIXED, maximize=maximize)
    assert info["fitness_best"].shape == () and info["best_index"].shape == ()
    assert backend.xp.isdtype(info["best_index"].dtype, "integral")
    assert float(info["fitness_best"]) == value and int(info["best_index"]) == index


@backends
def test_with_no_finite_fitness_the_best_is_nan_at_member_0(name):
    fitness = [math.nan, math.inf, -math.inf, math.nan] * 2
    _, _, info = _generation(get_backend(name), fitness, maximize=True)
    assert math.isnan(float(info["fitness_best"])) and int(info["best_index"]) == 0


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@given(st.lists(finite_or_not, min_size=1, max_size=12), st.booleans())
def test_both_paths_give_the_first_extreme_among_the_finite_values(values, maximize):
    F = np.asarray(values, dtype=np.float32)
    finite = np.flatnonzero(np.isfinite(F))
    paths = {"numpy": generation_best(F, maximize), "portable": _best_portable(compat_numpy, "cpu", F, maximize)}
    for path, (value, index) in paths.items():
        assert value.shape == index.shape == () and value.dtype == np.float32, path
        if not finite.size:
            assert np.isnan(value) and index == 0, path
            continue
        extreme = F[finite].max() if maximize else F[finite].min()
        assert value == extreme and index == finite[F[finite] == extreme][0], path


def test_a_traced_generation_reports_the_best_of_the_eager_one():
    jax = pytest.importorskip("jax")
    backend = get_backend("jax")
    es = egg.EGGROLL(population_size=8, sigma=0.1, maximize=False, nan_policy="worst")
    state = es.init({"x": backend.asarray(np.linspace(-1.0, 1.0, 5), dtype=backend.xp.float32)})

    def step(state):
        pop = es.ask(state)
        fitness = backend.xp.sum(pop.vector("x") ** 2, axis=1)
        return es.tell(state, pop, backend.xp.where(fitness > 2.0, backend.xp.nan, fitness))[1]

    compiled, eager = jax.jit(step)(state), step(state)
    assert int(compiled["best_index"]) == int(eager["best_index"])
    assert float(compiled["fitness_best"]) == float(eager["fitness_best"])


# ---- BestSoFar --------------------------------------------------------------------------------------------


def _rebuilt_member(seed: int, sigma: float, params, generation: int, index: int):
    """θᵢ = θ + σ sᵢ ε_{k(i)} of leaf x with antithetic pairs and fresh noise every generation, from the
    generator alone (not through a Population)."""
    stream = random.derive_key(seed, generation, random.stream_id("x"))
    k, s = index // 2, -1.0 if index % 2 else 1.0
    eps = random.draw(np, "normal", stream, range(k, k + 1), params.shape[0], dtype=params.dtype, dev="cpu")[0]
    return params + sigma * s * eps


@pytest.mark.parametrize("name", [name for name in BACKEND_NAMES if name != "strict"])
@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("source", ["info", "fitness"])
def test_best_so_far_is_the_best_fitness_of_the_run_and_its_member(name, maximize, source):
    backend = get_backend(name)
    es = egg.EGGROLL(population_size=8, sigma=0.3, maximize=maximize, optimizer=0.05, seed=3)
    state = es.init({"x": backend.asarray(np.linspace(-2.0, 2.0, 4), dtype=backend.xp.float32)})
    best, seen, means = egg.BestSoFar(es), [], []
    for _ in range(12):
        pop = es.ask(state)
        fitness = backend.xp.sum((pop.vector("x") - 0.5) ** 2, axis=1)  # a shifted sphere
        means.append(np_of(state.params["x"]))
        state, info = es.tell(state, pop, fitness)
        best.update(pop, info if source == "info" else fitness)
        seen.append(np_of(fitness))
    seen = np.stack(seen)  # (generation, member)
    target = seen.max() if maximize else seen.min()
    generation, index = np.argwhere(seen == target)[0]  # the first in (generation, member) order
    assert isinstance(best.fitness, float) and best.fitness == target
    assert (best.generation, best.index) == (generation, index)
    member = _rebuilt_member(3, 0.3, means[generation].astype(np.float32), int(generation), int(index))
    np.testing.assert_allclose(np_of(best.params["x"]), member, rtol=1e-6, atol=1e-6)  # normals: a few ulp apart


def _strategy_and_populations(count: int):
    es = egg.EGGROLL(population_size=4, sigma=0.1, optimizer=0.0)
    state = es.init({"x": np.zeros(2)})
    pops = []
    for _ in range(count):
        pops.append(es.ask(state))
        state, _ = es.tell(state, pops[-1], np.zeros(4))
    return es, pops


def test_of_equal_fitness_the_earlier_member_stays():
    es, (first, second) = _strategy_and_populations(2)
    best = egg.BestSoFar(es)
    assert best.update(first, [1.0, 3.0, 3.0, 0.0]) is True
    assert (best.fitness, best.generation, best.index) == (3.0, 0, 1)
    assert best.update(second, [3.0, 3.0, 2.0, 3.0]) is False
    assert (best.fitness, best.generation, best.index) == (3.0, 0, 1)
    np.testing.assert_array_equal(best.params["x"], first.member(1)["x"])


def test_nan_and_infinite_fitness_never_count_as_best():
    _, (first, second, third) = _strategy_and_populations(3)
    best = egg.BestSoFar(maximize=False)
    assert best.update(first, [math.nan, math.inf, -math.inf, math.nan]) is False
    assert (best.fitness, best.params, best.generation, best.index) == (None, None, None, None)
    assert best.update(second, [math.nan, 4.0, -math.inf, 2.0]) is True
    assert (best.fitness, best.generation, best.index) == (2.0, 1, 3)
    assert best.update(third, [math.nan] * 4) is False and best.fitness == 2.0


@pytest.mark.parametrize(("maximize", "expected"), [(True, (5.0, 1, 0)), (False, (-2.0, 0, 2))])
def test_the_direction_decides_which_member_is_best(maximize, expected):
    _, pops = _strategy_and_populations(2)
    best = egg.BestSoFar(maximize=maximize)
    for pop, fitness in zip(pops, ([1.0, 4.0, -2.0, 0.0], [5.0, 0.0, 1.0, -1.0]), strict=True):
        best.update(pop, fitness)
    assert (best.fitness, best.generation, best.index) == expected


def test_the_direction_follows_the_strategy():
    assert egg.BestSoFar(egg.EGGROLL(maximize=False)).maximize is False
    assert egg.BestSoFar(egg.EGGROLL(), maximize=True).maximize is True


def test_a_slice_keeps_the_member_index_in_the_whole_population():
    es = egg.EGGROLL(population_size=8, sigma=0.1)
    state = es.init({"x": np.zeros(3)})
    part = es.ask(state, members=range(4, 8))
    best = egg.BestSoFar(es)
    best.update(part, [0.0, 1.0, 3.0, 2.0])
    assert best.index == 6
    np.testing.assert_array_equal(best.params["x"], es.ask(state).member(6)["x"])


def test_a_best_index_past_the_split_comes_back_exactly_in_float32():
    fitness = np.zeros(10_000, dtype=np.float32)
    fitness[8_193] = 1.0  # 8193 = 2·4096 + 1: both halves of the index travel
    es, pop, info = _generation(get_backend("numpy"), fitness, maximize=True, population_size=10_000, d=1)
    best = egg.BestSoFar(es)
    best.update(pop, info)
    assert best.index == 8_193 and info["fitness_best"].dtype == np.float32


def test_an_update_reads_back_once_and_materializes_a_member_only_when_it_improves(monkeypatch):
    backend = get_backend("strict")
    es = egg.EGGROLL(population_size=4, sigma=0.1, optimizer=0.0, nan_policy="worst")  # tell reads nothing
    state = es.init({"x": backend.asarray(np.zeros(2))})
    reads, members = [], []
    to_numpy, member = best_module.to_numpy, egg.Population.member
    monkeypatch.setattr(best_module, "to_numpy", lambda x: reads.append(x) or to_numpy(x))
    monkeypatch.setattr(egg.Population, "member", lambda pop, i: members.append(i) or member(pop, i))
    for name in ("__bool__", "__float__", "__int__", "__index__", "__array__"):  # every other way to read
        monkeypatch.setattr(type(state.params["x"]), name, lambda *a, **k: pytest.fail("another host read"))
    best = egg.BestSoFar(es)
    for fitness in ([1.0, 3.0, 2.0, 0.0], [0.0, 1.0, 3.0, 2.0], [4.0, 0.0, 0.0, 0.0]):
        pop = es.ask(state)
        state, info = es.tell(state, pop, backend.asarray(fitness))
        best.update(pop, info)
    assert len(reads) == 3 and members == [1, 0]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((), {}, TypeError, "BestSoFar needs the direction: pass the strategy, BestSoFar(es), or maximize="),
        (("max",), {}, TypeError, "strategy must be the EGGROLL whose direction to follow, not a str"),
        ((), {"maximize": 1}, TypeError, "maximize=1 must be True or False, not a int"),
        ((egg.EGGROLL(),), {"maximize": False}, ValueError, "maximize=False contradicts the strategy's maximize=True"),
    ],
)
def test_a_best_so_far_without_a_clear_direction_is_refused(args, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        egg.BestSoFar(*args, **kwargs)


def test_update_refuses_what_is_not_a_population_or_its_fitness_and_keeps_the_best():
    es, (pop,) = _strategy_and_populations(1)
    best = egg.BestSoFar(es)
    best.update(pop, [1.0, 0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="update needs the Population the fitness belongs to, got dict"):
        best.update({"x": np.zeros(2)}, [0.0] * 4)
    with pytest.raises(ValueError, match="the info dict lacks best_index; pass the info that tell returned"):
        best.update(pop, {"fitness_best": np.asarray(2.0)})
    with pytest.raises(ValueError, match=re.escape("fitness has shape (3,); it must have shape (4,)")):
        best.update(pop, [5.0, 5.0, 5.0])
    assert (best.fitness, best.generation, best.index) == (1.0, 0, 0)
