"""Distributed evaluation: local, process-pool and Ray evaluators agree bit for bit; Ray replicas survive a
killed worker, resync on a fingerprint mismatch and on foreign states, exchange O(N) bytes per generation
whatever the model size, and fitness errors reach the driver with the member and its traceback; per_member
adapts a function of one member's params, naming the exact member that failed."""

from __future__ import annotations

import importlib
import os
import pickle
import re
import sys
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

import eggroll_np as egg
from eggroll_np.distributed import (
    FitnessError,
    LocalEvaluator,
    ProcessPoolEvaluator,
    RayEvaluator,
    per_member,
    split_members,
)
from eggroll_np.distributed.evaluators import evaluate_members
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


def reference_params(fitness, **strategy):
    es, state = make_strategy(**strategy)
    return run(LocalEvaluator(es, fitness), state).params


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


FITNESSES = [pytest.param(per_member(quadratic), id="per_member"), pytest.param(quadratic_slice, id="slice")]


def test_per_member_and_slice_fitness_give_different_runs():
    """So that the comparisons below compare something: the two fitness functions lead to different params."""
    assert not np.array_equal(reference_params(per_member(quadratic))["w"], reference_params(quadratic_slice)["w"])


@pytest.mark.parametrize("fitness", FITNESSES)
def test_process_pool_matches_local(fitness):
    es, state = make_strategy()
    with ProcessPoolEvaluator(es, fitness, workers=2) as evaluator:
        assert_same_params(run(evaluator, state).params, reference_params(fitness))


@pytest.mark.parametrize("fitness", [lambda pop: np.zeros(len(pop)), per_member(lambda params: 0.0)])
def test_process_pool_refuses_a_fitness_it_cannot_send(fitness):
    es, _ = make_strategy()
    with pytest.raises(TypeError, match="cannot be sent to worker processes"):
        ProcessPoolEvaluator(es, fitness, workers=2)


def test_process_pool_accepts_numpy_integers():
    es, _ = make_strategy()
    with ProcessPoolEvaluator(es, quadratic_slice, workers=np.int64(1)) as evaluator:
        assert evaluator.workers == 1 and type(evaluator.workers) is int


BAD_SETTINGS = [
    (ProcessPoolEvaluator, {"workers": "2"}, TypeError, "workers='2' must be an integer ≥ 1, not a str"),
    (ProcessPoolEvaluator, {"workers": 0}, ValueError, "workers=0 must be an integer ≥ 1"),
    (ProcessPoolEvaluator, {"workers": 1.5}, TypeError, "workers=1.5 must be an integer ≥ 1, not a float"),
    (RayEvaluator, {"workers": "2"}, TypeError, "workers='2' must be an integer ≥ 1, not a str"),
    (RayEvaluator, {"workers": 0}, ValueError, "workers=0 must be an integer ≥ 1"),
    (RayEvaluator, {"check_every": 1.5}, TypeError, "check_every=1.5 must be an integer ≥ 1, not a float"),
    (RayEvaluator, {"check_every": 0}, ValueError, "check_every=0 must be an integer ≥ 1"),
    (RayEvaluator, {"max_restarts": -1}, ValueError, "max_restarts=-1 must be an integer ≥ 0"),
    (RayEvaluator, {"max_restarts": True}, TypeError, "max_restarts=True must be an integer ≥ 0, not a bool"),
    (RayEvaluator, {"cpus_per_worker": -1}, ValueError, "cpus_per_worker=-1.0 must be a finite number > 0"),
    (RayEvaluator, {"cpus_per_worker": 0}, ValueError, "cpus_per_worker=0.0 must be a finite number > 0"),
    (RayEvaluator, {"cpus_per_worker": "1"}, TypeError, "cpus_per_worker='1' must be a finite number > 0, not a str"),
    (RayEvaluator, {"start_timeout": float("nan")}, ValueError, "start_timeout=nan must be a finite number > 0"),
    (RayEvaluator, {"start_timeout": float("inf")}, ValueError, "start_timeout=inf must be a finite number > 0"),
    (LocalEvaluator, {"timeout": 0}, ValueError, "timeout=0.0 must be a finite number > 0"),
    (LocalEvaluator, {"timeout": "1"}, TypeError, "timeout='1' must be a finite number > 0, not a str"),
    (ProcessPoolEvaluator, {"timeout": -1}, ValueError, "timeout=-1.0 must be a finite number > 0"),
    (ProcessPoolEvaluator, {"timeout": True}, TypeError, "timeout=True must be a finite number > 0, not a bool"),
    (RayEvaluator, {"timeout": float("inf")}, ValueError, "timeout=inf must be a finite number > 0"),
    (LocalEvaluator, {"kind": "slice"}, TypeError, "unexpected keyword argument 'kind'"),
    (ProcessPoolEvaluator, {"kind": "member"}, TypeError, "unexpected keyword argument 'kind'"),
    (RayEvaluator, {"kind": "member"}, TypeError, "unexpected keyword argument 'kind'"),
]


@pytest.mark.parametrize(
    "evaluator, bad, error, message", BAD_SETTINGS, ids=[f"{e.__name__}-{b}" for e, b, *_ in BAD_SETTINGS]
)
def test_evaluators_reject_bad_settings_with_the_argument_named(evaluator, bad, error, message):
    """Checked before any worker starts: none of these reaches Ray or a process pool."""
    es, _ = make_strategy()
    with pytest.raises(error, match=re.escape(message)):
        evaluator(es, quadratic_slice, **bad)


def test_evaluators_need_a_strategy_and_a_callable():
    es, _ = make_strategy()
    with pytest.raises(TypeError, match=r"es=<object object at .*> must be an EGGROLL strategy, not a object"):
        LocalEvaluator(object(), quadratic_slice)
    with pytest.raises(TypeError, match=re.escape("fitness=3.0 must be callable, not a float")):
        LocalEvaluator(es, 3.0)
    with pytest.raises(TypeError, match=re.escape("fn=3.0 must be callable, not a float")):
        per_member(3.0)


def test_per_member_pickles_and_evaluates_as_before():
    es, state = make_strategy()
    pop = es.ask(state, members=range(4, 8))
    adapter = per_member(quadratic)
    copy = pickle.loads(pickle.dumps(adapter))
    assert type(copy) is per_member and copy.fn is quadratic and repr(copy) == f"per_member({quadratic!r})"
    expected = [quadratic(es.ask(state).member(i)) for i in range(4, 8)]
    np.testing.assert_array_equal(copy(pop), np.array(expected, dtype=np.float64))


def test_slice_fitness_may_return_a_sequence_of_the_slice_length_only():
    es, state = make_strategy()
    np.testing.assert_array_equal(LocalEvaluator(es, lambda pop: [0.5] * len(pop))(state), np.full(16, 0.5))
    with pytest.raises(ValueError, match=re.escape("must return 4 values for members [4, 8), got shape (3,)")):
        evaluate_members(es, state, range(4, 8), lambda pop: [0.5] * 3)


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


class FailsOnMember:
    """Member-wise fitness that raises on the member whose W equals `w`."""

    def __init__(self, w: np.ndarray):
        self.w = w

    def __call__(self, params: dict) -> float:
        if np.array_equal(params["w"], self.w):
            raise ValueError("the simulator diverged")
        return quadratic(params)


def test_per_member_names_the_exact_member_of_a_slice_that_does_not_start_at_0():
    es, state = make_strategy()
    state = run(LocalEvaluator(es, per_member(quadratic)), state, 1)
    fails = FailsOnMember(es.ask(state).member(5)["w"])
    with pytest.raises(FitnessError) as caught:
        evaluate_members(es, state, range(4, 8), per_member(fails))
    assert (caught.value.member, caught.value.generation) == (5, 1)
    assert "ValueError: the simulator diverged" in caught.value.details

    def slice_fitness(pop):  # the same failure, raised by a slice function: reported for the slice's start
        return [fails(pop.member(i)) for i in range(len(pop))]

    with pytest.raises(FitnessError) as caught:
        evaluate_members(es, state, range(4, 8), slice_fitness)
    assert (caught.value.member, caught.value.generation) == (4, 1)
    assert "ValueError: the simulator diverged" in caught.value.details


def test_a_fitness_error_raised_by_a_slice_function_passes_through_as_is():
    es, state = make_strategy()

    def slice_fitness(pop):
        raise FitnessError(pop.offset + 2, pop.generation, "the simulator's own report")

    with pytest.raises(FitnessError) as caught:
        evaluate_members(es, state, range(4, 8), slice_fitness)
    assert (caught.value.member, caught.value.generation, caught.value.details) == (6, 0, "the simulator's own report")


class FailsOnceOnMember:
    """Member-wise fitness that raises, the first time only, on the member whose W equals `w`."""

    def __init__(self, w: np.ndarray, marker: Path):
        self.w, self.marker = w, marker

    def __call__(self, params: dict) -> float:
        if np.array_equal(params["w"], self.w) and first_time(self.marker):
            raise ValueError("the simulator diverged")
        return quadratic(params)


EVALUATORS = {"local": LocalEvaluator, "pool": ProcessPoolEvaluator, "ray": RayEvaluator}


@pytest.mark.parametrize("member", [5, 13])  # with 2 workers: in the slice [0, 8), or in [8, 16)
@pytest.mark.parametrize("name", ["local", "pool", pytest.param("ray", marks=pytest.mark.ray)])
def test_fitness_errors_name_the_member_keep_the_traceback_and_the_run_goes_on(name, member, request, tmp_path):
    if name == "ray":
        request.getfixturevalue("ray_instance")
    es, state = make_strategy()
    state = run(LocalEvaluator(es, per_member(quadratic)), state, 1)
    fitness = per_member(FailsOnceOnMember(es.ask(state).member(member)["w"], tmp_path / "failed"))
    with EVALUATORS[name](es, fitness, **({} if name == "local" else {"workers": 2})) as evaluator:
        with pytest.raises(FitnessError) as caught:
            evaluator.step(state)
        error = caught.value
        assert (error.member, error.generation) == (member, 1)
        assert "ValueError: the simulator diverged" in error.details
        origin = r'test_distributed\.py", line \d+, in __call__\n +raise ValueError\("the simulator diverged"\)'
        assert re.search(origin, error.details)
        assert f"member {member} of generation 1" in str(error)
        final = run(evaluator, state, GENERATIONS - 1)  # the same state again: the failure changed nothing
    assert_same_params(final.params, reference_params(per_member(quadratic)))


@pytest.mark.ray
@pytest.mark.parametrize("fitness", FITNESSES)
def test_ray_matches_local(ray_instance, fitness):
    es, state = make_strategy()
    with RayEvaluator(es, fitness, workers=np.int64(2)) as evaluator:
        final = run(evaluator, state)
        traffic = evaluator.traffic
    assert_same_params(final.params, reference_params(fitness))
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


def test_a_pool_whose_worker_died_says_so_and_the_next_call_starts_a_new_pool(tmp_path):
    es, state = make_strategy()
    fitness = per_member(DiesOnce(tmp_path / "died", after=3))
    with ProcessPoolEvaluator(es, fitness, workers=2) as evaluator:
        with pytest.raises(RuntimeError, match=r"worker process of the pool died.*the next call starts a new pool"):
            evaluator(state)
        np.testing.assert_array_equal(evaluator(state), LocalEvaluator(es, per_member(quadratic))(state))
    assert (tmp_path / "died").exists()


@pytest.mark.ray
def test_ray_killed_worker_gives_the_same_result(ray_instance, tmp_path):
    es, state = make_strategy()
    # Each of the 2 replicas evaluates 8 members per generation: call 20 falls in the middle of generation 2.
    with RayEvaluator(es, per_member(DiesOnce(tmp_path / "died", after=20)), workers=2) as evaluator:
        final = run(evaluator, state)
        traffic = evaluator.traffic
    assert (tmp_path / "died").exists()
    assert traffic.restarts == 1 and traffic.loads == 3
    assert_same_params(final.params, reference_params(per_member(quadratic)))


def traffic_of_run(shape, population_size, generations=3):
    es, state = make_strategy(shape=shape, population_size=population_size)
    with RayEvaluator(es, per_member(quadratic), workers=2, check_every=1000) as evaluator:
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
    with RayEvaluator(es, per_member(quadratic), workers=2, check_every=1) as evaluator:
        final = run(evaluator, state)
        traffic = evaluator.traffic
    # Every generation after the first, both replicas' tells drift and are reloaded: the result is exact.
    assert traffic.mismatches == 2 * (GENERATIONS - 1)
    expected = reference_params(per_member(quadratic), optimizer=optimizer, shaping="zscore")
    assert_same_params(final.params, expected)


@pytest.mark.ray
def test_ray_drift_between_checks_goes_unseen(ray_instance):
    """The converse, so the test above can fail: without a check the drifted replicas' fitness reaches the
    driver, and the run differs from the local one (with z-scores: ranks would hide a drift this small)."""
    optimizer = drifting_adam(os.getpid())
    es, state = make_strategy(optimizer=optimizer, shaping="zscore")
    with RayEvaluator(es, per_member(quadratic), workers=2, check_every=1000) as evaluator:
        final = run(evaluator, state)
        assert evaluator.traffic.mismatches == 0
    expected = reference_params(per_member(quadratic), optimizer=optimizer, shaping="zscore")
    assert not np.array_equal(final.params["w"], expected["w"])


@pytest.mark.ray
def test_ray_resumes_from_a_checkpoint_to_the_same_result(ray_instance, tmp_path):
    es, state = make_strategy()
    with RayEvaluator(es, per_member(quadratic), workers=2) as evaluator:
        state = run(evaluator, state, 2)
        egg.save(tmp_path / "run.npz", state)
        resumed = egg.load(tmp_path / "run.npz")
        final = run(evaluator, resumed, GENERATIONS - 2)
        traffic = evaluator.traffic
    # A loaded state is not the one the replicas hold: it is sent in full once, then the run goes on.
    assert traffic.loads == 4 and traffic.state_loads[3:] == [0] * (GENERATIONS - 3)
    assert_same_params(final.params, reference_params(per_member(quadratic)))


@pytest.mark.ray
def test_ray_says_when_workers_cannot_import_the_fitness(ray_instance, tmp_path, monkeypatch):
    (tmp_path / "private_fitness.py").write_text("def fitness(params):\n    return 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("private_fitness")
    es, _ = make_strategy()
    with pytest.raises(RuntimeError, match=r"(?s)could not start its replica.*No module named .private_fitness."):
        RayEvaluator(es, per_member(module.fitness), workers=2)
    sys.modules.pop("private_fitness")


@pytest.mark.ray
def test_ray_says_when_the_cluster_cannot_place_the_replicas(ray_instance):
    es, _ = make_strategy()
    with pytest.raises(RuntimeError, match=r"only 0 of 1 Ray replicas started within 2 s.*fewer workers"):
        RayEvaluator(es, quadratic_slice, workers=1, cpus_per_worker=np.float64(3), start_timeout=np.int64(2))
