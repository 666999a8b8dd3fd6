"""Ray replicas on their own backend and device, on a Ray instance that declares two GPUs which do not exist
(`num_gpus=2`): the replicas run NumPy or JAX on the CPU and exercise every path but CUDA's.

- One process = Ray with 1, 2 and 3 replicas, bit for bit after 5 generations, float and int8, with NumPy
  replicas (the driver's params are the reference) and JAX replicas (the replicas' are, for float; int8
  is exact everywhere, so a NumPy driver checks JAX replicas against its own params).
- A replica killed mid-run is replaced from a live replica's copy, and the result is unchanged. These tests,
  like the drift and checkpoint ones, put the driver on JAX and the replicas on NumPy: the replicas are then
  the reference, as GPU replicas are for a CPU driver.
- A replica that drifts is outvoted by the others and reloaded from them.
- Bytes per generation are flat in the model size; sign fitness travels five values to a byte.
- A checkpoint moves between a Ray run and one process, both ways.
- Replicas that cannot be placed (no free GPU) or cannot compute (no CuPy) fail clearly.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import array_api_compat
import numpy as np
import pytest
from test_distributed import DiesOnce, first_time, make_strategy, quadratic

import eggroll_np as egg
from eggroll_np.distributed import LocalEvaluator, RayEvaluator, per_member, split_members
from eggroll_np.distributed.evaluators import evaluate_members
from eggroll_np.distributed.ray_cluster import init_ray

pytestmark = pytest.mark.ray
jnp = pytest.importorskip("jax.numpy")

GENERATIONS = 5


@pytest.fixture(scope="module", autouse=True)
def ray_with_two_gpus():
    import ray

    tests = str(Path(__file__).parent)
    init_ray(num_cpus=4, num_gpus=2, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": tests}})
    yield
    ray.shutdown()


def batched_fitness(pop: egg.Population):
    """−‖x Wᵢᵀ + bᵢ − 1‖² per member through the batched forward pass, in the population's own library."""
    xp = array_api_compat.array_namespace(pop.params["w"])
    rows = np.linspace(-1.0, 1.0, 3 * pop.params["w"].shape[1], dtype=np.float32).reshape(3, -1)
    y = pop.linear("w", xp.asarray(rows), bias="b")
    return -xp.sum((y - 1.0) ** 2, axis=(1, 2))


def int8_fitness(pop: egg.Population):
    """−Σ (yᵢ − 20)² over an int8 layer's outputs for a fixed int8 input, in int32, per member."""
    xp = array_api_compat.array_namespace(pop.params["w"])
    x = xp.asarray((np.arange(3 * pop.params["w"].shape[1]) % 15 - 7).astype(np.int8).reshape(3, -1))
    y = xp.astype(pop.linear("w", x), xp.int32)
    return -xp.sum((y - 20) ** 2, axis=(1, 2))


def float_run(xp=np, shape=(8, 6), population_size=16, shaping="centered_rank", optimizer=None):
    """test_distributed's strategy and initial state, the state's arrays in `xp`."""
    es, state = make_strategy(shape, population_size, optimizer, shaping)
    return es, es.init({name: xp.asarray(value) for name, value in state.params.items()})


def int8_run(xp=np):
    es = egg.EGGROLL(population_size=16, sigma=2.0**-4, optimizer=egg.optim.integer_step(0.25), shaping="sign", seed=5)
    w = np.random.default_rng(1).integers(-20, 21, size=(8, 6)).astype(np.int8)
    return es, es.init({"w": xp.asarray(w)})


RUNS = {"float": (float_run, batched_fitness), "int8": (int8_run, int8_fitness)}


def advance(evaluator, state, generations=GENERATIONS):
    for _ in range(generations):
        state, _, _ = evaluator.step(state)
    return state


class SlicedLocalEvaluator(LocalEvaluator):
    """The one-process reference for a run whose fitness depends on more than the members' order: XLA's
    batched forward of a member can round at the last bit differently in slices of other sizes (NumPy's
    does not), so this evaluates the same member ranges that `parts` replicas do, one after another."""

    def __init__(self, es, fitness, parts: int):
        super().__init__(es, fitness)
        self.parts = split_members(es.population_size, parts, es.antithetic)

    def __call__(self, state):
        return np.concatenate([evaluate_members(self.es, state, part, self.fitness) for part in self.parts])


def local_params(kind: str, xp, parts: int = 1) -> dict:
    """The params after GENERATIONS of the one-process run on `xp`, evaluated in `parts` member ranges."""
    make, fitness = RUNS[kind]
    es, state = make(xp)
    return advance(SlicedLocalEvaluator(es, fitness, parts), state).params


def assert_same_params(actual: dict, expected: dict, differ: bool = False) -> None:
    """Every leaf equal bit for bit (with `differ`: some leaf not equal)."""
    assert list(actual) == list(expected)
    equal = [np.array_equal(np.asarray(actual[name]), np.asarray(expected[name])) for name in expected]
    assert not all(equal) if differ else all(equal), dict(zip(expected, equal, strict=True))


# Every replica count with NumPy replicas; JAX replicas (each imports JAX and compiles its operations, about
# 15 s a test here) where they split the population.
CASES = [(kind, "numpy", workers) for kind in ("float", "int8") for workers in (1, 2, 3)]
CASES += [("float", "jax", 2), ("float", "jax", 3), ("int8", "jax", 3)]


@pytest.mark.parametrize(("kind", "backend", "workers"), CASES)
def test_ray_replicas_on_their_devices_give_the_one_process_result(kind, backend, workers):
    make, fitness = RUNS[kind]
    es, state = make()  # the driver computes in NumPy whatever the replicas use
    with RayEvaluator(es, fitness, workers=workers, backend=backend, gpus_per_replica=0.5) as evaluator:
        final = advance(evaluator, state)
        exact = evaluator.authoritative(final)
        driver_decides = evaluator.driver_is_authoritative(final)
        traffic = evaluator.traffic
    # Float JAX rounds a member's forward pass by the size of its slice (see SlicedLocalEvaluator): its
    # reference evaluates the replicas' member ranges. NumPy's and int8's do not depend on the slices.
    parts = workers if (backend, kind) == ("jax", "float") else 1
    reference = local_params(kind, jnp if backend == "jax" else np, parts)
    assert_same_params(exact.params, reference)
    # NumPy replicas round as the driver does, and int8 is exact everywhere: the driver's params are the
    # reference and need no fetching. Float JAX replicas hold the reference; the driver fetched it once.
    assert driver_decides == (backend == "numpy" or kind == "int8")
    assert (exact is final) == driver_decides
    assert traffic.pulls == (0 if driver_decides else 1) and traffic.mismatches == 0
    assert traffic.loads == workers and traffic.state_loads[1:] == [0] * (GENERATIONS - 1)
    if driver_decides:
        assert_same_params(final.params, reference)


# The tests below put the driver on JAX and the replicas on NumPy: the replicas are then the reference (they
# round unlike the driver) as with GPU replicas of a CPU driver, and NumPy replicas start in a fraction of
# JAX's time. The reference run is NumPy in one process, whose forward pass does not depend on the slices.


def int8_fitness_near_2_to_the_25(pop: egg.Population):
    """2²⁵ + (int8_fitness mod 3): values 0 to 2 apart, which float64 keeps apart and float32 (spacing 4
    there) merges, so a pair's sign depends on which of the two the fitness is rounded to."""
    return int8_fitness(pop) % 3 + 2**25


def test_int8_pair_signs_are_rounded_as_the_reference_driver_rounds_them():
    """A NumPy driver is the reference for JAX replicas of an int8 run (exact everywhere), and it tells the
    float64 fitness: the signs it sends are float64's, not the float32 ones the replicas' own tell would take,
    so the run is the NumPy one's."""
    es, state = int8_run()
    with RayEvaluator(es, int8_fitness_near_2_to_the_25, workers=2, backend="jax") as evaluator:
        final = advance(evaluator, state)
        assert evaluator.driver_is_authoritative(final)
    es_local, state_local = int8_run()
    expected = advance(LocalEvaluator(es_local, int8_fitness_near_2_to_the_25), state_local).params
    assert_same_params(final.params, expected)
    # So that this can fail: JAX in one process rounds the fitness to float32, and its run differs.
    es_jax, state_jax = int8_run(jnp)
    float32_told = advance(LocalEvaluator(es_jax, int8_fitness_near_2_to_the_25), state_jax).params
    assert_same_params(float32_told, expected, differ=True)


def test_a_jax_driver_is_a_mirror_of_numpy_replicas_close_to_their_params():
    """The converse of the test above, so it can fail: the driver's own tell rounds in JAX, and its params
    are close to, but need not be, the replicas'. It is the fetched state that equals the one-process run,
    and the replicas go on from it without a load."""
    es, state = float_run(jnp)
    with RayEvaluator(es, batched_fitness, workers=2) as evaluator:
        final = advance(evaluator, state)
        assert not evaluator.driver_is_authoritative(final)
        exact = evaluator.authoritative(final)
        advance(evaluator, exact, 1)
        assert evaluator.traffic.loads == 2 and evaluator.traffic.pulls == 1
    assert_same_params(exact.params, local_params("float", np))
    for name in final.params:  # float32 rounding of 5 Adam steps of size 0.05 on values of order 1
        np.testing.assert_allclose(np.asarray(final.params[name]), np.asarray(exact.params[name]), atol=1e-5)


def test_a_killed_replica_is_replaced_from_a_live_ones_copy_and_the_result_is_unchanged(tmp_path):
    es, state = float_run(jnp)
    fitness = per_member(DiesOnce(tmp_path / "died", after=20))  # 8 members per replica: generation 2
    with RayEvaluator(es, fitness, workers=2, gpus_per_replica=0.5) as evaluator:
        final = evaluator.authoritative(advance(evaluator, state))
        traffic = evaluator.traffic
    assert (tmp_path / "died").exists()
    assert traffic.restarts == 1 and traffic.loads == 3 and traffic.pulls == 2  # the new replica's, then ours
    es_local, state_local = float_run()
    assert_same_params(final.params, advance(LocalEvaluator(es_local, per_member(quadratic)), state_local).params)


def test_a_lone_replica_lost_is_rebuilt_by_replaying_the_told_fitness_and_the_result_is_unchanged(tmp_path):
    """No live replica holds the state after the only one died: the new one receives the last exact state
    (here the initial one) and the told fitness since, and tells them again."""
    es, state = float_run(jnp)
    fitness = per_member(DiesOnce(tmp_path / "died", after=40))  # 16 members per generation: generation 2
    with RayEvaluator(es, fitness, workers=1) as evaluator:
        final = evaluator.authoritative(advance(evaluator, state))
        traffic = evaluator.traffic
    assert traffic.restarts == 1 and traffic.loads == 2 and traffic.pulls == 1
    assert traffic.state_loads[2] > traffic.state_loads[0]  # the state and 2 generations of fitness
    es_local, state_local = float_run()
    assert_same_params(final.params, advance(LocalEvaluator(es_local, per_member(quadratic)), state_local).params)


def test_without_the_replay_a_lost_lone_replica_goes_on_from_the_drivers_copy_with_a_warning(tmp_path):
    es, state = float_run(jnp)
    fitness = per_member(DiesOnce(tmp_path / "died", after=40))
    with RayEvaluator(es, fitness, workers=1) as evaluator:
        evaluator.replay_bytes = 0
        with pytest.warns(RuntimeWarning, match=r"no live replica holds the state any more.*replay_bytes=0"):
            advance(evaluator, state)
        assert evaluator.traffic.restarts == 1


def test_authoritative_rebuilds_a_replica_where_every_one_holding_the_state_was_replaced():
    es, state = float_run(jnp)
    with RayEvaluator(es, batched_fitness, workers=2) as evaluator:
        last = advance(evaluator, state)
        evaluator._replace([0, 1])  # as a timeout or an interrupt does
        final = evaluator.authoritative(last)
        assert evaluator.traffic.pulls == 1
        evaluator.replay_bytes = 0
        again = advance(evaluator, final, 2)
        evaluator._replace([0, 1])
        with pytest.raises(RuntimeError, match=r"no live replica holds the state any more.*replay_bytes=0"):
            evaluator.authoritative(again)
    assert_same_params(final.params, local_params("float", np))


class DriftsInOneProcess:
    """Adam whose steps are 1 + 2⁻²⁰ times larger in the first replica process that updates, and nowhere
    else (not in the driver, not in the other replicas): one replica drifts from its peers by a
    rounding-sized amount, as a GPU of another model might."""

    def __init__(self, marker: Path, driver_pid: int):
        self.marker, self.driver_pid, self.adam = marker, driver_pid, egg.optim.adam(0.05)

    def init(self, params):
        return self.adam.init(params)

    def update(self, grads, state, generation, params=None):
        step, state = self.adam.update(grads, state, generation, params)
        if os.getpid() == self.driver_pid:
            return step, state
        claimed = self.marker.with_suffix(".pid")
        if first_time(self.marker):
            (self.marker.with_suffix(".tmp")).write_text(str(os.getpid()))
            os.replace(self.marker.with_suffix(".tmp"), claimed)
        while not claimed.exists():
            time.sleep(0.01)
        if claimed.read_text() == str(os.getpid()):
            step = {name: value * (1 + 2**-20) for name, value in step.items()}
        return step, state


def test_a_drifting_replica_is_outvoted_by_its_peers_and_reloaded_from_them(tmp_path):
    drifting = DriftsInOneProcess(tmp_path / "drift", os.getpid())
    es, state = float_run(jnp, shaping="zscore", optimizer=egg.optim.Optimizer(drifting.init, drifting.update))
    with RayEvaluator(es, batched_fitness, workers=3, check_every=1) as evaluator:
        final = evaluator.authoritative(advance(evaluator, state))
        traffic = evaluator.traffic
    # The drifting replica's every tell drifts: at the checks of generations 1 … 4 and in `authoritative`
    # it is outvoted 2 to 1 and reloaded from a peer, and the result is the one-process run's.
    assert traffic.mismatches == GENERATIONS
    es_local, state_local = float_run(shaping="zscore")
    assert_same_params(final.params, advance(LocalEvaluator(es_local, batched_fitness), state_local).params)


def test_without_checks_the_drifting_replica_changes_the_result(tmp_path):
    """The converse, so the test above can fail: unchecked, the drifted replica's fitness reaches the driver
    and every replica's next tell (z-scores pass on a drift this small; ranks would hide it)."""
    drifting = DriftsInOneProcess(tmp_path / "drift", os.getpid())
    es, state = float_run(jnp, shaping="zscore", optimizer=egg.optim.Optimizer(drifting.init, drifting.update))
    with RayEvaluator(es, batched_fitness, workers=3, check_every=1000) as evaluator:
        final = evaluator.authoritative(advance(evaluator, state))
        assert evaluator.traffic.mismatches == 1  # the last tell, checked by `authoritative` alone
    es_local, state_local = float_run(shaping="zscore")
    expected = advance(LocalEvaluator(es_local, batched_fitness), state_local).params
    assert not np.array_equal(np.asarray(final.params["w"]), np.asarray(expected["w"]))


def traffic_of(shape=(8, 6), population_size=16, shaping="centered_rank"):
    es, state = float_run(shape=shape, population_size=population_size, shaping=shaping)
    with RayEvaluator(es, batched_fitness, workers=2, gpus_per_replica=0.5, check_every=1000) as evaluator:
        advance(evaluator, state, 3)
        return evaluator.traffic


def test_bytes_per_generation_are_flat_in_the_model_and_sign_fitness_travels_five_to_a_byte():
    small, large = traffic_of((40, 25)), traffic_of((400, 250))  # 1 040 and 100 250 parameters
    assert large.state_loads[0] > 50 * small.state_loads[0] and large.state_loads[1:] == [0, 0]
    assert large.per_generation == small.per_generation
    n = 640
    ranked, signed = traffic_of(population_size=n), traffic_of(population_size=n, shaping="sign")
    # Down, each of the 2 replicas receives the told fitness: 8N bytes of float64, or ⌈(N/2)/5⌉ bytes of pair
    # signs; up, they return their N/2 raw values each (8N bytes in all) either way. Pickle's framing of each
    # message is a few hundred bytes at most.
    saved = ranked.per_generation[1] - signed.per_generation[1]
    assert 2 * (8 * n - n // 10) - 2 * 200 <= saved <= 2 * 8 * n
    assert signed.per_generation[1] <= 8 * n + 2 * (n // 10) + 2 * 600


def test_a_checkpoint_moves_between_ray_replicas_and_one_process_both_ways(tmp_path):
    """A JAX driver with NumPy replicas (the replicas' params are the reference) saves what `authoritative`
    fetched; one NumPy process goes on from it. And a NumPy process's checkpoint goes on over Ray."""
    es, state = float_run(jnp)
    reference = local_params("float", np)
    with RayEvaluator(es, batched_fitness, workers=2, gpus_per_replica=0.5) as evaluator:
        egg.save(tmp_path / "ray.npz", evaluator.authoritative(advance(evaluator, state, 3)))
    resumed = egg.load(tmp_path / "ray.npz")
    assert_same_params(advance(LocalEvaluator(es, batched_fitness), resumed, 2).params, reference)

    egg.save(tmp_path / "local.npz", advance(LocalEvaluator(es, batched_fitness), float_run()[1], 3))
    with RayEvaluator(es, batched_fitness, workers=2, gpus_per_replica=0.5) as evaluator:
        final = evaluator.authoritative(advance(evaluator, egg.load(tmp_path / "local.npz", xp=jnp), 2))
    assert_same_params(final.params, reference)


def test_workers_default_to_the_gpus_over_gpus_per_replica():
    es, _ = float_run()
    with RayEvaluator(es, batched_fitness, gpus_per_replica=0.5) as evaluator:
        assert evaluator.workers == 4


def test_replicas_without_a_free_gpu_are_an_error_within_the_start_timeout():
    es, _ = float_run()
    began = time.monotonic()
    with pytest.raises(
        RuntimeError, match=r"only [0-2] of 3 Ray replicas started within 5 s; each asks for .*'num_gpus': 1"
    ) as error:
        RayEvaluator(es, batched_fitness, workers=3, gpus_per_replica=1, start_timeout=5)
    assert time.monotonic() - began < 30
    # The two declared GPUs are taken (by the replicas that started or are starting): none is free.
    assert "'GPU'" not in str(error.value).split("free")[0].split("the cluster has")[1]


def test_cupy_replicas_need_a_gpu_and_say_so():
    es, _ = float_run()
    with pytest.raises(ValueError, match=r"backend='cupy' computes on a GPU: give each replica one with gpus_per"):
        RayEvaluator(es, batched_fitness, workers=1, backend="cupy")
    with pytest.raises(ValueError, match=r"gpus_per_replica=1.5 must be a finite number in \[0, 1\]"):
        RayEvaluator(es, batched_fitness, workers=1, backend="jax", gpus_per_replica=1.5)
    with pytest.raises(ValueError, match=r"backend='mlx' must be one of 'numpy', 'cupy', 'jax', 'torch'"):
        RayEvaluator(es, batched_fitness, workers=1, backend="mlx")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed: its replicas can start")
def test_cupy_replicas_where_cupy_is_missing_say_what_to_install():
    es, _ = float_run()
    with pytest.raises(RuntimeError, match=r"(?s)backend='cupy' is not usable there.*needs CuPy: pip install"):
        RayEvaluator(es, batched_fitness, workers=1, backend="cupy", gpus_per_replica=0.5)
