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
    start_timeout: seconds to wait for the replicas to be placed and started before giving up with an error
    (a cluster without enough free CPUs would otherwise wait forever).
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
    ):
        super().__init__(es, fitness)
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
        options = {"num_cpus": cpus_per_worker, **(actor_options or {})}
        self._actor_class = ray.remote(**options)(_Replica)
        self._actors = [self._new_actor() for _ in range(workers)]
        self._wait_until_started(start_timeout, options)
        self._holding: list[_Holding | None] = [None] * workers
        self._per_generation: list[int] = []
        self._state_loads: list[int] = []
        self._loads = self._restarts = self._mismatches = 0

    def _wait_until_started(self, timeout: float, options: dict) -> None:
        ray = self._ray
        pending = [actor.ready.remote() for actor in self._actors]
        ready, not_ready = ray.wait(pending, num_returns=len(pending), timeout=timeout)
        if not_ready:
            free = ray.available_resources()
            self.close()
            raise RuntimeError(
                f"only {len(ready)} of {len(pending)} Ray replicas started within {timeout:g} s; each asks for "
                f"{options} and the cluster has {free} free. Ask for fewer workers or smaller cpus_per_worker, "
                "close other evaluators, or add nodes"
            )
        try:
            ray.get(ready)
        except ray.exceptions.RayActorError as error:
            self.close()
            raise RuntimeError(_start_failure(error)) from None

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
        ray = self._ray
        parts = split_members(self.es.population_size, self.workers, self.es.antithetic)
        want_fingerprint = state.generation % self.check_every == 0
        expected = params_fingerprint(state.params) if want_fingerprint else None
        self._per_generation.append(0)
        self._state_loads.append(0)
        host: list = []
        pending = {j: self._message(j, state, part, want_fingerprint, host) for j, part in enumerate(parts)}
        results: dict[int, np.ndarray] = {}
        restarts, reloaded = 0, set()
        while pending:
            j, ref = next(iter(pending.items()))
            try:
                values, fingerprint = ray.get(ref)
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
                ray.kill(self._actors[j])
                self._actors[j] = self._new_actor()
                self._holding[j] = None
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
        return np.concatenate([results[j] for j in range(len(parts))])

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
