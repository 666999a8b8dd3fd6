"""The Ray evaluator: replicas of the strategy state on Ray actors, exchanging only fitness scalars.

Every replica holds (es, fitness) and a host (NumPy) copy of the state. One generation, driver ⇄
replica j, for a state S_t the driver reached by `step`:

    driver → j : (t, F_{t−1} (N scalars), members [a_j, b_j), fingerprint wanted?)
    j          : S_t = tell(S_{t−1}, F_{t−1}); evaluate members [a_j, b_j) of S_t from the counter RNG
    j → driver : F_t[a_j:b_j] (and SHA-256 of its params every `check_every` generations)

so the bytes per generation are O(N) and do not depend on the number of parameters. The full state travels
only when a replica is (re)started or out of sync: at the first call, after a fault, when a fingerprint
differs from the driver's, or when the driver hands over a state it did not get from `step` (a loaded
checkpoint, an edited state). `traffic` counts both kinds of bytes.
"""

from __future__ import annotations

import pickle
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import _checks
from ..strategy import EGGROLL, EggrollState
from .evaluators import (
    Evaluator,
    FitnessError,
    check_workers,
    evaluate_members,
    host_tree,
    params_fingerprint,
    split_members,
    timeout_error,
)

__all__ = ["RayEvaluator", "Traffic", "init_ray"]


class Traffic(NamedTuple):
    """Pickled payload bytes between the driver and the replicas, one entry per call (generation evaluated):
    `per_generation` the messages of the protocol (fitness, member ranges, fingerprints), `state_loads` the
    full states sent to new, restarted or out-of-sync replicas. Counters: `loads` (full states sent),
    `restarts` (dead replicas replaced), `mismatches` (fingerprints that differed from the driver's)."""

    per_generation: list[int]
    state_loads: list[int]
    loads: int
    restarts: int
    mismatches: int


class _Replica:
    """A Ray actor's state: the strategy, the fitness function and a host copy of the strategy state."""

    def __init__(self, es: EGGROLL, fitness: Callable):
        self.es, self.fitness = es, fitness
        self.state: EggrollState | None = None

    def load(self, state: EggrollState) -> None:
        self.state = state

    def ready(self) -> bool:
        return True

    def evaluate(self, generation: int, told_fitness, members: range, want_fingerprint: bool):
        """Tell the previous generation's fitness if given, then evaluate `members` of generation t."""
        if told_fitness is not None:
            self.state, _ = self.es.tell(self.state, self.es.ask(self.state), told_fitness)
        if self.state is None or self.state.generation != generation:
            held = None if self.state is None else self.state.generation
            raise RuntimeError(f"replica holds generation {held}, asked for {generation}: driver bookkeeping bug")
        fingerprint = params_fingerprint(self.state.params) if want_fingerprint else None
        return evaluate_members(self.es, self.state, members, self.fitness), fingerprint


class _Holding(NamedTuple):
    """What the driver knows a replica holds: `state` itself (told is None), or state's predecessor with
    the fitness that turns it into `state` still to be told."""

    state: EggrollState
    told: np.ndarray | None


def init_ray(**options) -> None:
    """`ray.init(include_dashboard=False, **options)`. Ray starts its processes by fork + exec (subprocess
    with preexec_fn); JAX, if imported, warns at every fork of a deadlock that a child which execs at once
    cannot meet, so that one warning is silenced here."""
    import ray

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        ray.init(**{"include_dashboard": False, **options})


def _start_failure(error) -> str:
    return (
        "a Ray worker could not start its replica: the strategy or the fitness function failed to arrive there "
        "(a fitness function defined in a module the workers cannot import? install it on every node, or pass "
        "init_options={'runtime_env': {'py_modules': [...]}} or a PYTHONPATH in runtime_env['env_vars']); "
        f"Ray said:\n{error}"
    )


def _payload_bytes(*objects) -> int:
    return sum(len(pickle.dumps(obj, protocol=5)) for obj in objects)


class RayEvaluator(Evaluator):
    """Evaluates the population on `workers` Ray actors, each holding a replica of the strategy state.

    Drive it with `state, info, fitness = evaluator.step(state)`: the replicas then advance by telling the
    same fitness as the driver, and only fitness scalars travel. Any other state (a loaded checkpoint, one
    the caller edited or told itself) is sent to the replicas in full at the next call, once.

    fitness: a Population of consecutive members → one value per member; `per_member(fn)` for a function of
    one member's params.
    address: a Ray cluster to connect to ("auto", "ray://host:10001", "host:6379"); None starts a local
    instance unless Ray is already initialized in this process (then that connection is used).
    workers: number of replica actors (default: the cluster's CPUs divided by `cpus_per_worker`).
    check_every: every this many generations each replica also returns the SHA-256 of its params; one that
    differs from the driver's is reloaded and its members re-evaluated.
    max_restarts: replicas replaced per call before a worker failure is raised to the caller.
    start_timeout: seconds to wait for the replicas to be placed and started, at construction and whenever
    one is replaced, before giving up with a RuntimeError (a cluster without enough free resources would
    otherwise wait forever).
    timeout: seconds the evaluation of one call may take (starting replicas, bounded by start_timeout, is not
    counted); None (the default) waits for ever. Past it, the replicas still evaluating are killed and
    replaced (the new ones receive the state at the next call) and TimeoutError is raised. A
    KeyboardInterrupt while waiting replaces them too, so no later call queues behind a hung one.
    actor_options: extra `ray.remote` options for the replicas (for example {"num_gpus": 1}).
    init_options: extra `ray.init` arguments when this evaluator starts or connects to Ray.

    The fitness function travels with cloudpickle; every node must have eggroll_np (same version)
    installed. A replica that dies (killed process, lost node) is replaced and its members re-evaluated:
    the result equals a run without the fault."""

    def __init__(
        self,
        es: EGGROLL,
        fitness: Callable,
        *,
        workers: int | None = None,
        address: str | None = None,
        cpus_per_worker: float = 1,
        check_every: int = 10,
        max_restarts: int = 3,
        start_timeout: float = 120.0,
        actor_options: dict | None = None,
        init_options: dict | None = None,
        timeout: float | None = None,
    ):
        super().__init__(es, fitness, timeout=timeout)
        workers = check_workers(workers)
        check_every = _checks.integer("check_every", check_every, 1)
        max_restarts = _checks.integer("max_restarts", max_restarts, 0)
        cpus_per_worker = _checks.real("cpus_per_worker", cpus_per_worker, 0, above=True)
        start_timeout = _checks.real("start_timeout", start_timeout, 0, above=True)
        try:
            import ray
        except ImportError:
            raise ImportError("RayEvaluator needs Ray: pip install 'eggroll-np[ray]'") from None
        self._ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            init_ray(address=address, **(init_options or {}))
            self._started_ray = address is None
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker))
        self.workers, self.check_every, self.max_restarts = workers, check_every, max_restarts
        self._start_timeout = start_timeout
        self._options = {"num_cpus": cpus_per_worker, **(actor_options or {})}
        self._actor_class = ray.remote(**self._options)(_Replica)
        self._actors = [self._new_actor() for _ in range(workers)]
        self._holding: list[_Holding | None] = [None] * workers
        self._starting = set(range(workers))  # replicas not yet seen started
        self._per_generation: list[int] = []
        self._state_loads: list[int] = []
        self._loads = self._restarts = self._mismatches = 0
        try:
            self._wait_until_started()
        except BaseException:
            self.close()
            raise

    def _wait_until_started(self) -> None:
        """Return once every replica in `_starting` is placed and started; RuntimeError after start_timeout
        seconds (saying how many started, what each asks for and the free resources) or where one failed to
        start."""
        ray = self._ray
        starting = sorted(self._starting)
        pending = [self._actors[j].ready.remote() for j in starting]
        ready, not_ready = ray.wait(pending, num_returns=len(pending), timeout=self._start_timeout)
        if not_ready:
            raise RuntimeError(
                f"only {len(ready)} of {len(pending)} Ray replicas started within {self._start_timeout:g} s; each "
                f"asks for {self._options} and the cluster has {ray.available_resources()} free. Ask for fewer "
                "workers or smaller cpus_per_worker, close other evaluators, or add nodes"
            )
        try:
            ray.get(ready)
        except ray.exceptions.RayActorError as error:
            raise RuntimeError(_start_failure(error)) from None
        self._starting.difference_update(starting)

    def _replace(self, replicas) -> None:
        """Kill `replicas` (indices) and start new, empty ones in their place; `_wait_until_started` waits for
        them before they are used."""
        for j in replicas:
            self._ray.kill(self._actors[j])
            self._actors[j] = self._new_actor()
            self._holding[j] = None
            self._starting.add(j)

    def _new_actor(self):
        return self._actor_class.remote(self.es, self.fitness)

    @property
    def traffic(self) -> Traffic:
        return Traffic(
            list(self._per_generation), list(self._state_loads), self._loads, self._restarts, self._mismatches
        )

    def _message(self, j: int, state: EggrollState, members: range, want_fingerprint: bool, host: list):
        """The call for replica j; loads the full state first where the replica does not hold `state`."""
        holding = self._holding[j]
        if holding is not None and holding.state is state:
            told = holding.told
        else:
            if not host:
                host.append(EggrollState(*host_tree(tuple(state))))
            self._actors[j].load.remote(host[0])
            self._state_loads[-1] += _payload_bytes(host[0])
            self._loads += 1
            told = None
        self._holding[j] = _Holding(state, None)  # the replica tells `told` before it evaluates
        args = (state.generation, told, members, want_fingerprint)
        self._per_generation[-1] += _payload_bytes(*args)
        return self._actors[j].evaluate.remote(*args)

    def __call__(self, state: EggrollState) -> np.ndarray:
        if not isinstance(state, EggrollState):
            raise TypeError(f"an evaluator needs the EggrollState from init or tell, got {type(state).__name__}")
        if not self._actors:
            raise RuntimeError("this RayEvaluator is closed; make a new one")
        if self._starting:
            self._wait_until_started()
        parts = split_members(self.es.population_size, self.workers, self.es.antithetic)
        results: dict[int, np.ndarray] = {}
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            self._gather(state, parts, results, deadline)
        except (KeyboardInterrupt, SystemExit):  # a replica still evaluating would hold up every later call
            self._replace([j for j in range(len(parts)) if j not in results])
            raise
        if len(results) < len(parts):
            outstanding = [j for j in range(len(parts)) if j not in results]
            self._replace(outstanding)
            raise timeout_error(
                state.generation,
                [parts[j] for j in outstanding],
                self.timeout,
                f"their {len(outstanding)} Ray replicas were killed and replaced (the new ones receive the state "
                "at the next call)",
            )
        return np.concatenate([results[j] for j in range(len(parts))])

    def _gather(self, state: EggrollState, parts: list[range], results: dict, deadline: float | None) -> None:
        """Fill `results` (replica → its fitness) for every part, restarting dead replicas and reloading
        mismatched ones; return early, with parts missing, at `deadline` (time.monotonic(), moved on by the time
        restarted replicas take to start)."""
        ray = self._ray
        want_fingerprint = state.generation % self.check_every == 0
        expected = params_fingerprint(state.params) if want_fingerprint else None
        self._per_generation.append(0)
        self._state_loads.append(0)
        host: list = []
        pending = {j: self._message(j, state, part, want_fingerprint, host) for j, part in enumerate(parts)}
        restarts, reloaded = 0, set()
        while pending:
            replica_of = {ref: j for j, ref in pending.items()}
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(replica_of), num_returns=1, timeout=left)
            if not ready:
                return
            j = replica_of[ready[0]]
            try:
                values, fingerprint = ray.get(ready[0])
            except ray.exceptions.RayTaskError as error:
                self._holding[j] = None
                cause = getattr(error, "cause", None)
                if isinstance(cause, FitnessError):
                    raise FitnessError(cause.member, cause.generation, cause.details) from None
                raise
            except ray.exceptions.RayActorError as error:
                if error.actor_init_failed:
                    raise RuntimeError(_start_failure(error)) from None
                restarts += 1
                if restarts > self.max_restarts:
                    raise RuntimeError(
                        f"Ray workers died {restarts} times while evaluating generation {state.generation}; "
                        f"giving up after max_restarts={self.max_restarts} (see the Ray logs for the cause)"
                    ) from None
                self._restarts += 1
                self._replace([j])
                started = time.monotonic()
                self._wait_until_started()
                if deadline is not None:  # the timeout counts evaluation, not the start of a replica
                    deadline += time.monotonic() - started
                pending[j] = self._message(j, state, parts[j], want_fingerprint, host)
                continue
            del pending[j]
            self._per_generation[-1] += _payload_bytes(values, fingerprint)
            if fingerprint is not None and fingerprint != expected:
                if j in reloaded:
                    raise RuntimeError(f"replica {j}'s params differ from the driver's right after a reload")
                self._mismatches += 1
                reloaded.add(j)
                self._holding[j] = None
                pending[j] = self._message(j, state, parts[j], want_fingerprint, host)
                continue
            results[j] = values

    def step(self, state: EggrollState) -> tuple[EggrollState, dict, np.ndarray]:
        next_state, info, fitness = super().step(state)
        self._holding = [
            _Holding(next_state, fitness) if holding is not None and holding.state is state else None
            for holding in self._holding
        ]
        return next_state, info, fitness

    def close(self) -> None:
        """Stop the replicas, and the local Ray instance if this evaluator started it."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
