"""Nothing hangs forever: a fitness that runs past an evaluator's `timeout` raises TimeoutError naming the
members still outstanding, the hung workers are stopped (pool) or replaced (Ray) and the next call gives the
local result; close() of a pool with a hung worker returns at once; SIGINT to a driver waiting on a hung
fitness returns control within seconds and leaves no worker behind; a Ray replica restarted where it cannot
be placed is an error within start_timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_distributed import (  # noqa: F401 (ray_instance: a fixture, requested by name)
    assert_same_params,
    first_time,
    make_strategy,
    quadratic_slice,
    ray_instance,
    run,
)

from eggroll_np.distributed import FitnessError, LocalEvaluator, ProcessPoolEvaluator, RayEvaluator, per_member
from eggroll_np.distributed.evaluators import timeout_error

HANG = 60.0  # seconds a hung fitness sleeps: far past every timeout and wait below


class HangsOnce:
    """Slice fitness `quadratic_slice` that hangs (sleeps HANG s) the first time it evaluates generation
    `generation` on a slice starting at one of `starts`, after touching `folder/hung-<process id>`. Every call
    touches `folder/pid-<process id>`."""

    def __init__(self, folder: Path, generation: int, starts: tuple[int, ...]):
        self.folder, self.generation, self.starts = folder, generation, starts

    def __call__(self, pop):
        (self.folder / f"pid-{os.getpid()}").touch()
        if pop.generation == self.generation and pop.offset in self.starts:
            if first_time(self.folder / f"hanging-{pop.offset}"):
                (self.folder / f"hung-{os.getpid()}").touch()
                time.sleep(HANG)
        return quadratic_slice(pop)


def pids(folder: Path, kind: str) -> set[int]:
    return {int(path.name.removeprefix(f"{kind}-")) for path in folder.glob(f"{kind}-*")}


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie, exited but not yet reaped, has)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:  # gone meanwhile; where there is no /proc, os.kill's answer stands
        return not Path("/proc").is_dir()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def is_dead(ray, actor) -> bool:
    """Whether a call on the actor fails as on a dead one (a call sent before ray.kill lands still answers)."""
    try:
        ray.get(actor.ready.remote(), timeout=30)
    except ray.exceptions.RayActorError:
        return True
    return False


def reference(generations: int) -> dict:
    es, state = make_strategy()
    return run(LocalEvaluator(es, quadratic_slice), state, generations).params


def times_out(evaluator, state, seconds: float) -> TimeoutError:
    """The TimeoutError of evaluator.step(state), which must come within `seconds`."""
    began = time.monotonic()
    with pytest.raises(TimeoutError) as caught:
        evaluator.step(state)
    assert time.monotonic() - began < seconds
    return caught.value


def test_timeout_errors_merge_adjacent_ranges_in_member_order():
    error = timeout_error(4, [range(8, 12), range(0, 4), range(12, 16)], 1.5, "the workers were stopped")
    assert str(error) == (
        "generation 4: members [0, 4), [8, 16) were still being evaluated after timeout=1.5 s; the workers were "
        "stopped. Nothing was told: the state is unchanged"
    )


def test_local_evaluator_calls_the_fitness_in_the_callers_thread_unless_given_a_timeout():
    es, state = make_strategy()
    threads = []

    def fitness(pop):
        threads.append(threading.get_ident())
        return quadratic_slice(pop)

    LocalEvaluator(es, fitness)(state)
    LocalEvaluator(es, fitness, timeout=10)(state)
    assert threads[0] == threading.get_ident() != threads[1]


def test_local_evaluator_with_a_timeout_raises_the_fitness_error_in_the_callers_thread():
    es, state = make_strategy()

    def fails(params):
        raise ValueError("the simulator diverged")

    with pytest.raises(FitnessError, match="member 0 of generation 0") as caught:
        LocalEvaluator(es, per_member(fails), timeout=10)(state)
    assert "ValueError: the simulator diverged" in caught.value.details


def test_local_evaluator_times_out_and_the_next_call_gives_the_local_result(tmp_path):
    es, state = make_strategy()
    with LocalEvaluator(es, HangsOnce(tmp_path, 1, (0,)), timeout=1) as evaluator:
        state = run(evaluator, state, 1)
        error = times_out(evaluator, state, 10)
        assert str(error).startswith("generation 1: members [0, 16) were still being evaluated after timeout=1 s")
        assert "the call runs on in a background thread" in str(error) and "ProcessPoolEvaluator" in str(error)
        final = run(evaluator, state, 2)
    assert_same_params(final.params, reference(3))


@pytest.mark.slow
def test_process_pool_times_out_terminates_its_workers_and_the_next_pool_gives_the_local_result(tmp_path):
    es, state = make_strategy()
    # The timeout covers starting the 2 worker processes, which the call after a timeout does again.
    with ProcessPoolEvaluator(es, HangsOnce(tmp_path, 1, (0,)), workers=2, timeout=8) as evaluator:
        state = run(evaluator, state, 1)
        error = times_out(evaluator, state, 25)
        assert str(error).startswith("generation 1: members [0, 8) were still being evaluated after timeout=8 s")
        assert "the pool's 2 worker processes were terminated" in str(error)
        first_pool = pids(tmp_path, "pid")
        assert len(first_pool) == 2 and len(pids(tmp_path, "hung")) == 1
        assert not [pid for pid in first_pool if running(pid)]
        final = run(evaluator, state, 2)
        assert pids(tmp_path, "pid") - first_pool  # a new pool did the rest
    assert_same_params(final.params, reference(3))


class HangsOrFails:
    """Slice fitness that hangs (sleeps HANG s) on the slice starting at 0, after touching `folder/hung-<pid>`,
    and raises on every other slice."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __call__(self, pop):
        if pop.offset == 0:
            (self.folder / f"hung-{os.getpid()}").touch()
            time.sleep(HANG)
        raise ValueError("the simulator diverged")


def test_process_pool_close_returns_within_seconds_while_a_worker_hangs(tmp_path):
    es, state = make_strategy()
    evaluator = ProcessPoolEvaluator(es, HangsOrFails(tmp_path), workers=2)
    with pytest.raises(FitnessError, match="member 8 of generation 0"):
        evaluator(state)  # members [0, 8) go on hanging in the other worker
    assert wait_until(lambda: pids(tmp_path, "hung"), 30)
    began = time.monotonic()
    evaluator.close()
    assert time.monotonic() - began < 10
    assert not [pid for pid in pids(tmp_path, "hung") if running(pid)]
    with pytest.raises(RuntimeError, match="this ProcessPoolEvaluator is closed"):
        evaluator(state)


DRIVER = '''
import os
import sys
import time
from pathlib import Path

import numpy as np

import eggroll_np as egg
from eggroll_np.distributed import LocalEvaluator, ProcessPoolEvaluator, RayEvaluator

FOLDER = Path(__file__).resolve().parent


def fitness(pop):
    """Hangs on the slice that starts at member 0; records each process's id, and each slice it finished."""
    (FOLDER / f"pid-{os.getpid()}").touch()
    if pop.offset == 0:
        (FOLDER / "hanging").touch()
        time.sleep(60)
    (FOLDER / f"done-{pop.offset}").touch()
    return np.zeros(len(pop))


def zeros(pop):
    return np.zeros(len(pop))


if __name__ == "__main__":
    es = egg.EGGROLL(population_size=8, sigma=0.1, optimizer=egg.optim.adam(0.05), seed=0)
    state = es.init({"w": np.zeros((2, 3), np.float32)})
    if sys.argv[1] == "pool_busy_driver":  # Ctrl-C while the driver is busy elsewhere: the pool lives on
        with ProcessPoolEvaluator(es, zeros, workers=2) as evaluator:
            evaluator(state)
            try:
                (FOLDER / "hanging").touch()
                time.sleep(60)
            except KeyboardInterrupt:
                pass
            evaluator(state)
        print("the pool still works")
        sys.exit()
    evaluators = {
        "local": (LocalEvaluator, {}),
        "local_timeout": (LocalEvaluator, {"timeout": 600}),
        "pool": (ProcessPoolEvaluator, {"workers": 2}),
        "ray": (RayEvaluator, {"workers": 2, "init_options": {"num_cpus": 2, "log_to_driver": False}}),
    }
    evaluator_class, options = evaluators[sys.argv[1]]
    with evaluator_class(es, fitness, **options) as evaluator:
        evaluator(state)
'''


def interrupt_driver(folder: Path, name: str, whole_group: bool = False) -> tuple[int, str, str]:
    """Run DRIVER with `name`; once its fitness hangs (and, with two workers, the other slice is done), send
    SIGINT to the driver alone or to its whole process group (a terminal's Ctrl-C). Asserts it exits within
    15 s; returns its exit status, stdout and stderr."""
    (folder / "driver.py").write_text(DRIVER)
    environment = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    with open(folder / "stdout", "w") as stdout, open(folder / "stderr", "w") as stderr:
        # Files, not pipes: a lingering grandchild holding a pipe would hold up reading it.
        driver = subprocess.Popen(
            [sys.executable, str(folder / "driver.py"), name],
            stdout=stdout,
            stderr=stderr,
            env=environment,
            start_new_session=whole_group,
        )
    try:
        other_slice = [folder / "done-4"] if name in ("pool", "ray") else []
        hung = wait_until(lambda: all(p.exists() for p in [folder / "hanging", *other_slice]), 120)
        assert hung and driver.poll() is None, (folder / "stderr").read_text()[-3000:]
        time.sleep(0.5)  # well inside the wait
        (os.killpg if whole_group else os.kill)(driver.pid, signal.SIGINT)
        began = time.monotonic()
        driver.wait(timeout=15)
        assert time.monotonic() - began < 15
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    return driver.returncode, (folder / "stdout").read_text(), (folder / "stderr").read_text()


@pytest.mark.parametrize(
    "name", ["local", "local_timeout", "pool", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])]
)
def test_sigint_to_the_driver_alone_returns_within_seconds_and_leaves_no_worker(tmp_path, name):
    status, _, errors = interrupt_driver(tmp_path, name)
    assert status == -signal.SIGINT and "KeyboardInterrupt" in errors, errors[-3000:]
    workers = pids(tmp_path, "pid")
    assert len(workers) == (1 if name.startswith("local") else 2)
    assert wait_until(lambda: not [pid for pid in workers if running(pid)], 20)


def test_a_terminal_ctrl_c_reaches_the_pool_driver_alone(tmp_path):
    """The whole process group gets SIGINT while the driver is busy elsewhere and catches it: the workers
    ignore it, so the pool goes on working (workers that died of it would break the pool)."""
    status, output, errors = interrupt_driver(tmp_path, "pool_busy_driver", whole_group=True)
    assert status == 0 and "the pool still works" in output and "Traceback" not in errors, errors[-3000:]


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("ray_instance")
def test_ray_replica_restarted_where_it_cannot_be_placed_is_an_error_within_start_timeout():
    es, state = make_strategy()
    # timeout=30: without the start check the call would time out waiting for the unplaced replica
    with RayEvaluator(es, quadratic_slice, workers=2, cpus_per_worker=0.5, timeout=30) as evaluator:
        state = run(evaluator, state, 1)
        # From now on a new replica asks for a resource the cluster lacks, and may take 2 s to start (the
        # first start of Ray's worker processes takes longer on a busy machine); then one replica dies.
        evaluator._start_timeout = 2.0
        unplaceable = evaluator._actor_class.options(resources={"absent": 1})
        evaluator._new_actor = lambda: unplaceable.remote(evaluator.es, evaluator.fitness, "numpy")
        ray, dead = evaluator._ray, evaluator._actors[0]
        ray.kill(dead)
        assert wait_until(lambda: is_dead(ray, dead), 30)  # ray.kill is asynchronous: be sure it has landed
        began = time.monotonic()
        with pytest.raises(RuntimeError, match=r"only 0 of 1 Ray replicas started within 2 s; each asks for"):
            evaluator.step(state)
        assert time.monotonic() - began < 10
        assert evaluator.traffic.restarts == 1


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.usefixtures("ray_instance")
def test_ray_times_out_replaces_the_hung_replicas_and_the_next_call_gives_the_local_result(tmp_path):
    es, state = make_strategy()
    fitness = HangsOnce(tmp_path, 1, (0, 8))
    with RayEvaluator(es, fitness, workers=4, cpus_per_worker=0.5, timeout=6) as evaluator:
        state = run(evaluator, state, 1)
        error = times_out(evaluator, state, 20)
        assert str(error).startswith("generation 1: members [0, 4), [8, 12) were still being evaluated after timeout=6")
        assert "their 2 Ray replicas were killed and replaced" in str(error)
        hung = pids(tmp_path, "hung")
        assert len(hung) == 2 and wait_until(lambda: not [pid for pid in hung if running(pid)], 20)
        final = run(evaluator, state, 2)
        traffic = evaluator.traffic
    assert traffic.loads == 4 + 2 and traffic.restarts == 0  # the 2 new replicas received the state once
    assert_same_params(final.params, reference(3))
