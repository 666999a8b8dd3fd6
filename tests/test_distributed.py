"""Distributed evaluation: local, process-pool and Ray evaluators agree bit for bit; Ray replicas survive a
killed worker, resync on a fingerprint mismatch and on foreign states, exchange O(N) bytes per generation
whatever the model size, and fitness errors reach the driver with the member and its traceback."""

from __future__ import annotations

import importlib
import os
import pickle
import sys
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

import eggroll_np as egg
from eggroll_np.distributed import FitnessError, LocalEvaluator, ProcessPoolEvaluator, RayEvaluator, split_members
from eggroll_np.distributed.ray_cluster import init_ray

GENERATIONS = 5


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    # Workers import this module's fitness functions by name: give them the tests folder on their path.
    tests = str(Path(__file__).parent)
    init_ray(num_cpus=2, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": tests}})
    yield
    ray.shutdown()


def quadratic(params: dict) -> float:
    """Fitness of one member: −‖W − ½‖² − ‖b‖² (module level, so the process pool can import it)."""
    return -float(np.sum((params["w"] - 0.5) ** 2)) - float(np.sum(params["b"] ** 2))


def quadratic_slice(pop: egg.Population):
    """Fitness of a slice of members through the batched forward pass: −‖x Wᵢᵀ + bᵢ − 1‖² per member."""
    x = np.linspace(-1.0, 1.0, 3 * pop.params["w"].shape[1], dtype=np.float32).reshape(3, -1)
    y = pop.linear("w", x, bias="b")
    return -np.sum((y - 1.0) ** 2, axis=(1, 2))


def make_strategy(shape=(8, 6), population_size=16, optimizer=None, shaping="centered_rank"):
    es = egg.EGGROLL(
        population_size=population_size,
        sigma=0.1,
        rank=1,
        optimizer=optimizer or egg.optim.adam(0.05),
        shaping=shaping,
        seed=3,
    )
    rng = np.random.default_rng(0)
    params = {"w": rng.standard_normal(shape).astype(np.float32), "b": np.zeros(shape[0], np.float32)}
    return es, es.init(params)


def run(evaluator, state, generations=GENERATIONS):
    for _ in range(generations):
        state, _, _ = evaluator.step(state)
    return state


def reference_params(fitness, kind="member", **strategy):
    es, state = make_strategy(**strategy)
    return run(LocalEvaluator(es, fitness, kind), state).params


def assert_same_params(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


@given(
    population=st.integers(1, 64).map(lambda half: 2 * half),
    parts=st.integers(1, 12),
    antithetic=st.booleans(),
)
def test_split_members_covers_the_population_in_balanced_ranges(population, parts, antithetic):
    ranges = split_members(population, parts, antithetic)
    assert [m for r in ranges for m in r] == list(range(population))
    assert 1 <= len(ranges) <= parts
    sizes = [len(r) for r in ranges]
    assert max(sizes) - min(sizes) <= (2 if antithetic else 1)
    if antithetic:
        assert all(r.start % 2 == 0 and r.stop % 2 == 0 for r in ranges)


@pytest.mark.parametrize("kind, fitness", [("member", quadratic), ("slice", quadratic_slice)])
def test_process_pool_matches_local(kind, fitness):
    es, state = make_strategy()
    with ProcessPoolEvaluator(es, fitness, kind, workers=2) as evaluator:
        assert_same_params(run(evaluator, state).params, reference_params(fitness, kind))


def test_process_pool_refuses_a_fitness_it_cannot_send():
    es, _ = make_strategy()
    with pytest.raises(TypeError, match="cannot be sent to worker processes"):
        ProcessPoolEvaluator(es, lambda params: 0.0, workers=2)


@pytest.mark.parametrize(
    "bad, error", [(dict(kind="members"), ValueError), (dict(workers=0), ValueError), (dict(workers=1.5), TypeError)]
)
def test_evaluators_reject_bad_settings(bad, error):
    es, _ = make_strategy()
    with pytest.raises(error, match=r"kind=|workers="):
        ProcessPoolEvaluator(es, quadratic, **bad)


def test_evaluators_need_a_strategy_and_a_callable():
    es, _ = make_strategy()
    with pytest.raises(TypeError, match="EGGROLL strategy"):
        LocalEvaluator(object(), quadratic)
    with pytest.raises(TypeError, match="callable"):
        LocalEvaluator(es, 3.0)


def test_fitness_error_pickles_with_its_fields():
    error = pickle.loads(pickle.dumps(FitnessError(7, 3, "Traceback ...")))
    assert (error.member, error.generation, error.details) == (7, 3, "Traceback ...")


def first_time(marker: Path) -> bool:
    """True for exactly one caller across processes: the one that creates `marker`."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


class FailsOnceOnMember:
    """Member-wise fitness that raises, the first time only, on the member whose W equals `w`."""

    def __init__(self, w: np.ndarray, marker: Path):
        self.w, self.marker = w, marker

    def __call__(self, params: dict) -> float:
        if np.array_equal(params["w"], self.w) and first_time(self.marker):
            raise ValueError("the simulator diverged")
        return quadratic(params)


EVALUATORS = {"local": LocalEvaluator, "pool": ProcessPoolEvaluator, "ray": RayEvaluator}


@pytest.mark.parametrize("name", ["local", "pool", pytest.param("ray", marks=pytest.mark.ray)])
def test_fitness_errors_name_the_member_keep_the_traceback_and_the_run_goes_on(name, request, tmp_path):
    if name == "ray":
        request.getfixturevalue("ray_instance")
    es, state = make_strategy()
    state = run(LocalEvaluator(es, quadratic), state, 1)
    fitness = FailsOnceOnMember(es.ask(state).member(5)["w"], tmp_path / "failed")
    with EVALUATORS[name](es, fitness, **({} if name == "local" else {"workers": 2})) as evaluator:
        with pytest.raises(FitnessError) as caught:
            evaluator.step(state)
        error = caught.value
        assert (error.member, error.generation) == (5, 1)
        assert "ValueError: the simulator diverged" in error.details
        assert "in __call__" in error.details and 'raise ValueError("the simulator diverged")' in error.details
        assert "member 5 of generation 1" in str(error)
        final = run(evaluator, state, GENERATIONS - 1)  # the same state again: the failure changed nothing
    assert_same_params(final.params, reference_params(quadratic))


@pytest.mark.ray
@pytest.mark.parametrize("kind, fitness", [("member", quadratic), ("slice", quadratic_slice)])
def test_ray_matches_local(ray_instance, kind, fitness):
    es, state = make_strategy()
    with RayEvaluator(es, fitness, kind, workers=2) as evaluator:
        final = run(evaluator, state)
        traffic = evaluator.traffic
    assert_same_params(final.params, reference_params(fitness, kind))
    assert traffic.loads == 2 and traffic.restarts == 0 and traffic.mismatches == 0
    assert traffic.state_loads[1:] == [0] * (GENERATIONS - 1)
    with pytest.raises(RuntimeError, match="closed"):
        evaluator.step(final)


class DiesOnce:
    """Member-wise fitness whose process exits hard (a killed worker) at its `after`-th call, once across
    all processes."""

    def __init__(self, marker: Path, after: int):
        self.marker, self.after, self.calls = marker, after, 0

    def __call__(self, params: dict) -> float:
        self.calls += 1
        if self.calls == self.after and first_time(self.marker):
            os._exit(1)
        return quadratic(params)


@pytest.mark.ray
def test_ray_killed_worker_gives_the_same_result(ray_instance, tmp_path):
    es, state = make_strategy()
    # Each of the 2 replicas evaluates 8 members per generation: call 20 falls in the middle of generation 2.
    with RayEvaluator(es, DiesOnce(tmp_path / "died", after=20), workers=2) as evaluator:
        final = run(evaluator, state)
        traffic = evaluator.traffic
    assert (tmp_path / "died").exists()
    assert traffic.restarts == 1 and traffic.loads == 3
    assert_same_params(final.params, reference_params(quadratic))


def traffic_of_run(shape, population_size, generations=3):
    es, state = make_strategy(shape=shape, population_size=population_size)
    with RayEvaluator(es, quadratic, workers=2, check_every=1000) as evaluator:
        run(evaluator, state, generations)
        return evaluator.traffic


@pytest.mark.ray
def test_ray_bytes_per_generation_do_not_grow_with_the_model_and_are_o_of_n(ray_instance):
    small = traffic_of_run((40, 25), 16)  # 1 040 parameters
    large = traffic_of_run((1000, 1000), 16)  # 1 001 000 parameters
    larger_population = traffic_of_run((40, 25), 64)
    # The full state travels once, at the first call, to each of the 2 replicas: that grows with the model ...
    assert large.state_loads[0] > 1000 * small.state_loads[0] / 2 and large.state_loads[1:] == [0, 0]
    # ... the generations do not: the messages hold fitness, member ranges and flags only.
    assert large.per_generation == small.per_generation
    # From generation 1 on, each replica receives the N told fitness values and returns its N/2: (2 + 1)·8N
    # bytes of float64 grow with N (plus pickle's length fields, which widen past 255 bytes: ≤ 4 per array);
    # everything else is a fixed envelope of a few hundred bytes.
    growth = larger_population.per_generation[1] - small.per_generation[1]
    assert 3 * 8 * (64 - 16) <= growth <= 3 * 8 * (64 - 16) + 4 * 4
    envelope = small.per_generation[1] - 3 * 8 * 16
    assert 0 < envelope < 1000


def drifting_adam(driver_pid: int) -> egg.optim.Optimizer:
    """Adam whose steps are 1 + 2⁻²⁰ times larger in any process but the driver's: replicas drift from the
    driver by a rounding-sized amount, as a different BLAS or CPU would make them."""
    adam = egg.optim.adam(0.05)

    def update(grads, state, generation, params=None):
        step, state = adam.update(grads, state, generation, params)
        if os.getpid() != driver_pid:
            step = {name: value * np.float32(1 + 2**-20) for name, value in step.items()}
        return step, state

    return egg.optim.Optimizer(adam.init, update)


@pytest.mark.ray
def test_ray_replicas_that_drift_are_caught_by_the_fingerprint_and_resynced(ray_instance):
    optimizer = drifting_adam(os.getpid())
    es, state = make_strategy(optimizer=optimizer, shaping="zscore")
    with RayEvaluator(es, quadratic, workers=2, check_every=1) as evaluator:
        final = run(evaluator, state)
        traffic = evaluator.traffic
    # Every generation after the first, both replicas' tells drift and are reloaded: the result is exact.
    assert traffic.mismatches == 2 * (GENERATIONS - 1)
    assert_same_params(final.params, reference_params(quadratic, optimizer=optimizer, shaping="zscore"))


@pytest.mark.ray
def test_ray_drift_between_checks_goes_unseen(ray_instance):
    """The converse, so the test above can fail: without a check the drifted replicas' fitness reaches the
    driver, and the run differs from the local one (with z-scores: ranks would hide a drift this small)."""
    optimizer = drifting_adam(os.getpid())
    es, state = make_strategy(optimizer=optimizer, shaping="zscore")
    with RayEvaluator(es, quadratic, workers=2, check_every=1000) as evaluator:
        final = run(evaluator, state)
        assert evaluator.traffic.mismatches == 0
    expected = reference_params(quadratic, optimizer=optimizer, shaping="zscore")
    assert not np.array_equal(final.params["w"], expected["w"])


@pytest.mark.ray
def test_ray_resumes_from_a_checkpoint_to_the_same_result(ray_instance, tmp_path):
    es, state = make_strategy()
    with RayEvaluator(es, quadratic, workers=2) as evaluator:
        state = run(evaluator, state, 2)
        egg.save(tmp_path / "run.npz", state)
        resumed = egg.load(tmp_path / "run.npz")
        final = run(evaluator, resumed, GENERATIONS - 2)
        traffic = evaluator.traffic
    # A loaded state is not the one the replicas hold: it is sent in full once, then the run goes on.
    assert traffic.loads == 4 and traffic.state_loads[3:] == [0] * (GENERATIONS - 3)
    assert_same_params(final.params, reference_params(quadratic))


@pytest.mark.ray
def test_ray_says_when_workers_cannot_import_the_fitness(ray_instance, tmp_path, monkeypatch):
    (tmp_path / "private_fitness.py").write_text("def fitness(params):\n    return 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("private_fitness")
    es, _ = make_strategy()
    with pytest.raises(RuntimeError, match=r"(?s)could not start its replica.*No module named .private_fitness."):
        RayEvaluator(es, module.fitness, workers=2)
    sys.modules.pop("private_fitness")


@pytest.mark.ray
def test_ray_says_when_the_cluster_cannot_place_the_replicas(ray_instance):
    es, _ = make_strategy()
    with pytest.raises(RuntimeError, match=r"only 0 of 1 Ray replicas started within 2 s.*fewer workers"):
        RayEvaluator(es, quadratic, workers=1, cpus_per_worker=3, start_timeout=2)


def test_ray_evaluator_rejects_bad_settings():
    es, _ = make_strategy()
    for bad, message in [
        ({"check_every": 0}, "check_every"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"cpus_per_worker": 0}, "cpus_per_worker"),
        ({"start_timeout": float("nan")}, "start_timeout"),
        ({"workers": 0}, "workers"),
    ]:
        with pytest.raises(ValueError, match=message):
            RayEvaluator(es, quadratic, **bad)
