"""The Ray evaluator: replicas of the strategy state on Ray actors, each on its own backend and device,
exchanging only fitness.

Every replica (`replica.Replica`) holds (es, fitness) and a copy of the state on its backend: NumPy on the
host, or CuPy / JAX / PyTorch on the device Ray assigned it. One generation, driver ⇄ replica j, for a state
S_t the driver reached by `step`:

    driver → j : (t, the told fitness of t − 1, members [a_j, b_j), fingerprint wanted?)
    j          : S_t = tell(S_{t−1}, F_{t−1}); evaluate members [a_j, b_j) of S_t on its device
    j → driver : F_t[a_j:b_j] (and SHA-256 of its params every `check_every` generations)

The told fitness is N float64 values, or under sign shaping the N/2 pair signs five to a byte (`packing`),
so the bytes per generation are O(N) and do not depend on the number of parameters.

Whose params are authoritative. Copies told the same fitness agree bit for bit when they round alike: the
same library on the same kind of device (`replica.rounding_class`), or an int8 state under sign shaping,
whose update is exact integer arithmetic on every backend. When every replica rounds as the driver does (or
the state is exact), the driver's params are authoritative and the replicas' fingerprints are compared with
the driver's. Otherwise (a NumPy driver with CuPy or JAX replicas, say) the replicas' params are: the
fingerprints are compared with each other, the one most replicas hold wins, and the driver's state is a
mirror that it tells in its own library (its params may differ from the replicas' by rounding). Then
`authoritative(state)` fetches the replicas' state, once, for a checkpoint or an exact evaluation.

The full state travels only when a replica is (re)started or out of sync: at the first call, after a fault,
when a fingerprint differs from the reference, or when the driver hands over a state it did not get from
`step` (a loaded checkpoint, an edited state), which is then authoritative as given. A replica started in
place of a dead one receives the state of a live replica that holds it, where one does (the authoritative
copy); where none does and the replicas are the reference, the last exact state the driver knows with the
told fitness since then, to tell again (up to `replay_bytes` of it); else the driver's copy. `traffic`
counts both kinds of bytes.
"""

from __future__ import annotations

import pickle
import time
import warnings
from collections import Counter
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .. import _checks
from .._array_api import dtype_name, has_dtype, namespace_and_device
from ..shaping import sign
from ..strategy import EGGROLL, EggrollState
from .evaluators import (
    Evaluator,
    FitnessError,
    check_workers,
    host_tree,
    params_fingerprint,
    split_members,
    timeout_error,
)
from .packing import PackedSigns, told_message
from .replica import REPLICA_BACKENDS, Replica, on_backend, rounding_class

__all__ = ["RayEvaluator", "Traffic", "init_ray"]


class Traffic(NamedTuple):
    """Pickled payload bytes between the driver and the replicas, one entry per call (generation evaluated):
    `per_generation` the messages of the protocol (fitness, member ranges, fingerprints), `state_loads` the
    full states sent to new, restarted or out-of-sync replicas, and fetched from live replicas for them.
    Counters: `loads` (full states sent), `restarts` (dead replicas replaced), `mismatches` (fingerprints that
    differed from the reference), `pulls` (states fetched from a replica: for a new replica, or by
    `authoritative`), `pulled_bytes` (the bytes `authoritative` fetched, outside any call)."""

    per_generation: list[int]
    state_loads: list[int]
    loads: int
    restarts: int
    mismatches: int
    pulls: int
    pulled_bytes: int


class _Load(NamedTuple):
    """What a replica that holds nothing receives: an exact host state, and the told fitness of the
    generations since it, to tell in order (the replay of `RayEvaluator._anchor`)."""

    state: EggrollState
    replay: tuple = ()


class _Holding(NamedTuple):
    """What the driver knows a replica holds: `state` itself (told is None), or state's predecessor with
    the told fitness that turns it into `state` still to be told."""

    state: EggrollState
    told: np.ndarray | PackedSigns | None


def init_ray(**options) -> None:
    """`ray.init(include_dashboard=False, **options)`. Ray starts its processes by fork + exec (subprocess
    with preexec_fn); JAX, if imported, warns at every fork of a deadlock that a child which execs at once
    cannot meet, so that one warning is silenced here."""
    import ray

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        ray.init(**{"include_dashboard": False, **options})


def _start_failure(error, backend: str) -> str:
    return (
        f"a Ray worker could not start its replica: the strategy or the fitness function failed to arrive there "
        "(a fitness function defined in a module the workers cannot import? install it on every node, or pass "
        "init_options={'runtime_env': {'py_modules': [...]}} or a PYTHONPATH in runtime_env['env_vars']), or "
        f"backend={backend!r} is not usable there (its library missing, no device); Ray said:\n{error}"
    )


def _payload_bytes(*objects) -> int:
    return sum(len(pickle.dumps(obj, protocol=5)) for obj in objects)


def _is_exact(es: EGGROLL, state: EggrollState) -> bool:
    """Whether every backend computes the same update: integer params under sign shaping."""
    return es.shaping is sign and all(dtype_name(v.dtype).startswith(("int", "uint")) for v in state.params.values())


def _majority(fingerprints: dict[int, str | None]) -> tuple[str | None, int]:
    """The fingerprint most replicas (index → fingerprint) hold, the lowest replica's on a tie, and the
    lowest replica that holds it."""
    counts = Counter(fingerprints[j] for j in sorted(fingerprints))
    reference = counts.most_common(1)[0][0]
    return reference, min(j for j in fingerprints if fingerprints[j] == reference)


class RayEvaluator(Evaluator):
    """Evaluates the population on `workers` Ray actors, each holding a replica of the strategy state on
    its own backend and device.

    Drive it with `state, info, fitness = evaluator.step(state)`: the replicas then advance by telling the
    same fitness as the driver, and only fitness travels. Any other state (a loaded checkpoint, one the
    caller edited or told itself) is sent to the replicas in full at the next call, once.

    fitness: a Population of consecutive members (on the replica's device) → one value per member;
    `per_member(fn)` for a function of one member's params.
    backend: what the replicas compute with, "numpy" (default), "cupy", "jax" or "torch": each creates its
    state there, on the device Ray assigns it (CuPy, JAX and PyTorch on their first device, which is the
    assigned GPU). The driver computes with whatever library its state is in and needs no GPU.
    gpus_per_replica: the GPUs each replica asks Ray for, in [0, 1] (0.5 puts two replicas on each GPU);
    "cupy" needs more than 0.
    address: a Ray cluster to connect to ("auto", "ray://host:10001", "host:6379"); None starts a local
    instance unless Ray is already initialized in this process (then that connection is used).
    workers: number of replica actors (default: the cluster's GPUs divided by gpus_per_replica, or with
    gpus_per_replica=0 its CPUs divided by `cpus_per_worker`).
    check_every: every this many generations each replica also returns the SHA-256 of its params; one that
    differs from the reference (the driver's, or the one most replicas hold: module docstring) is reloaded
    and its members re-evaluated.
    max_restarts: replicas replaced per call before a worker failure is raised to the caller.
    start_timeout: seconds to wait for the replicas to be placed and started, at construction and whenever
    one is replaced, before giving up with a RuntimeError (a cluster without enough free CPUs or GPUs would
    otherwise wait for ever).
    timeout: seconds the evaluation of one call may take (starting replicas, bounded by start_timeout, is not
    counted); None (the default) waits for ever. Past it, the replicas still evaluating are killed and
    replaced (the new ones receive the state at the next call) and TimeoutError is raised. A
    KeyboardInterrupt while waiting replaces them too, so no later call queues behind a hung one.
    actor_options: extra `ray.remote` options for the replicas.
    init_options: extra `ray.init` arguments when this evaluator starts or connects to Ray.

    The fitness function travels with cloudpickle; every node must have eggroll_np (same version) and the
    backend's library installed. A replica that dies (killed process, lost node) is replaced and its members
    re-evaluated: the result equals a run without the fault."""

    def __init__(
        self,
        es: EGGROLL,
        fitness: Callable,
        *,
        workers: int | None = None,
        backend: str = "numpy",
        gpus_per_replica: float = 0,
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
        self.backend = _checks.choice("backend", backend, REPLICA_BACKENDS)
        gpus = _checks.real("gpus_per_replica", gpus_per_replica, 0, 1)
        if backend == "cupy" and gpus == 0:
            raise ValueError(
                "backend='cupy' computes on a GPU: give each replica one with gpus_per_replica=1 (or 0.5 to put "
                "two replicas on each GPU)"
            )
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
            resource, each = ("GPU", gpus) if gpus else ("CPU", cpus_per_worker)
            workers = max(1, int(ray.cluster_resources().get(resource, 1) // each))
        self.workers, self.check_every, self.max_restarts = workers, check_every, max_restarts
        self.gpus_per_replica = gpus
        self._start_timeout = start_timeout
        self._options = {"num_cpus": cpus_per_worker, **({"num_gpus": gpus} if gpus else {}), **(actor_options or {})}
        self._actor_class = ray.remote(**self._options)(Replica)
        self._actors = [self._new_actor() for _ in range(workers)]
        self._holding: list[_Holding | None] = [None] * workers
        self._kinds: list[tuple[str, str] | None] = [None] * workers  # (rounding class, widest float) once started
        self._starting = set(range(workers))  # replicas not yet seen started
        self._per_generation: list[int] = []
        self._state_loads: list[int] = []
        self._loads = self._restarts = self._mismatches = self._pulls = self._pulled_bytes = 0
        self._source: _Load | None = None  # what this call loads into replicas
        self._stepped: EggrollState | None = None  # the state the last step returned
        # Where the replicas are the reference: the last exact host state known to the driver (loaded or
        # fetched) with the told fitness since then, and the driver's state it leads to (`_anchor_tip`), so
        # that a replica can be rebuilt exactly when no live one holds the state. Dropped past replay_bytes.
        self._anchor: _Load | None = None
        self._anchor_tip: EggrollState | None = None
        self._anchor_bytes = 0  # of its replay
        self.replay_bytes = 256 * 2**20
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
                "workers or a smaller cpus_per_worker or gpus_per_replica, close other evaluators, or add nodes"
            )
        try:
            kinds = ray.get(pending)
        except ray.exceptions.RayActorError as error:
            raise RuntimeError(_start_failure(error, self.backend)) from None
        for j, kind in zip(starting, kinds, strict=True):
            self._kinds[j] = tuple(kind)
        self._starting.difference_update(starting)

    def _replace(self, replicas) -> None:
        """Kill `replicas` (indices) and start new, empty ones in their place; `_wait_until_started` waits for
        them before they are used."""
        for j in replicas:
            self._ray.kill(self._actors[j])
            self._actors[j] = self._new_actor()
            self._holding[j] = None
            self._kinds[j] = None
            self._starting.add(j)

    def _new_actor(self):
        return self._actor_class.remote(self.es, self.fitness, self.backend, 0 < self.gpus_per_replica < 1)

    @property
    def traffic(self) -> Traffic:
        return Traffic(
            list(self._per_generation),
            list(self._state_loads),
            self._loads,
            self._restarts,
            self._mismatches,
            self._pulls,
            self._pulled_bytes,
        )

    def driver_is_authoritative(self, state: EggrollState) -> bool:
        """Whether the driver's params are the reference for `state` (module docstring): every started
        replica rounds as the driver's library and device do, or the state is exact (int8, sign shaping).
        Waits for replicas still starting, whose rounding is not known before."""
        if self._starting and self._actors:
            self._wait_until_started()
        xp, dev = namespace_and_device(state.params)
        own = rounding_class(xp, dev)
        return _is_exact(self.es, state) or all(kind[0] == own for kind in self._kinds if kind is not None)

    def _reference_float(self, state: EggrollState) -> str:
        """The float the reference's tell rounds the fitness to: the driver's widest where it is the
        reference, else the replicas' (float32 where any lacks float64), so that packed signs are its signs."""
        if self.driver_is_authoritative(state):
            xp, dev = namespace_and_device(state.params)
            return "float64" if has_dtype(xp, "float64", dev) else "float32"
        return "float32" if any(kind[1] == "float32" for kind in self._kinds if kind is not None) else "float64"

    def _pull(self, j: int, state: EggrollState, timeout: float | None) -> EggrollState:
        """Replica j's copy of `state` (which it holds, perhaps with its last fitness still to tell), as host
        arrays; Ray's GetTimeoutError after `timeout` seconds, RayActorError if it died."""
        holding = self._holding[j]
        host = self._ray.get(self._actors[j].host_state.remote(state.generation, holding.told), timeout=timeout)
        self._holding[j] = _Holding(holding.state, None)
        self._pulls += 1
        return host

    def _anchor_at(self, host: EggrollState, tip: EggrollState) -> _Load:
        """Remember `host`, the exact copy of the driver's `tip`, as the anchor; returns its load."""
        self._anchor, self._anchor_tip, self._anchor_bytes = _Load(host), tip, 0
        return self._anchor

    def _state_to_load(self, state: EggrollState, j: int, driver_decides: bool, deadline: float | None) -> _Load:
        """What to load into replica j, which does not hold `state`: this call's `_source` once chosen; else,
        where the replicas are authoritative, the copy of a live replica that holds `state`, or the anchor
        with its replay where it leads to `state`; else the driver's copy (a warning says so where the exact
        copy was lost)."""
        if self._source is not None:
            return self._source
        if not driver_decides:
            for k, holding in enumerate(self._holding):
                if k == j or holding is None or holding.state is not state:
                    continue
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    host = self._pull(k, state, left)
                except self._ray.exceptions.RayActorError:
                    continue  # found dead when its evaluation returns
                self._state_loads[-1] += _payload_bytes(host)
                self._source = self._anchor_at(host, state)
                return self._source
            if state is self._stepped and self._anchor_tip is state:
                self._source = self._anchor
                return self._source
            if state is self._stepped:
                warnings.warn(
                    f"generation {state.generation}: no live replica holds the state any more, so the new "
                    "replicas receive the driver's copy, which rounds differently from theirs; the run goes on from "
                    f"it and is no longer bit-identical to one without the fault (the told fitness since the last "
                    f"exact state passed replay_bytes={self.replay_bytes}; run two or more replicas to recover "
                    "exactly)",
                    RuntimeWarning,
                    stacklevel=5,
                )
        host = EggrollState(*host_tree(tuple(state)))
        exact = not driver_decides and state is not self._stepped  # a state given to the evaluator is exact
        self._source = self._anchor_at(host, state) if exact else _Load(host)
        return self._source

    def _message(self, j: int, state: EggrollState, members: range, want_fingerprint: bool, how: tuple):
        """The call for replica j; loads the full state first where the replica does not hold `state`.
        `how`: (driver_decides, deadline) of this call."""
        holding = self._holding[j]
        if holding is not None and holding.state is state:
            told = holding.told
        else:
            load = self._state_to_load(state, j, *how)
            self._actors[j].load.remote(*load)
            self._state_loads[-1] += _payload_bytes(*load)
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
        except self._ray.exceptions.GetTimeoutError:
            pass  # a live replica's state, fetched for a new one, did not come within the timeout
        except (KeyboardInterrupt, SystemExit):  # a replica still evaluating would hold up every later call
            self._replace([j for j in range(len(parts)) if j not in results])
            raise
        finally:
            self._source = None
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
        """Fill `results` (replica → its fitness) for every part, restarting dead replicas and reloading those
        whose fingerprint differs from the reference; return early, with parts missing, at `deadline`."""
        want_fingerprint = state.generation % self.check_every == 0
        driver_decides = self.driver_is_authoritative(state)
        how = [driver_decides, deadline]
        self._per_generation.append(0)
        self._state_loads.append(0)
        pending = {j: self._message(j, state, part, want_fingerprint, how) for j, part in enumerate(parts)}
        fingerprints: dict[int, str] = {}
        restarts = [0]
        if not self._collect(state, parts, pending, results, fingerprints, how, restarts) or not want_fingerprint:
            return
        if driver_decides:
            reference, holder = params_fingerprint(state.params), "the driver's"
        else:
            reference, source = _majority(fingerprints)
            holder = f"replica {source}'s"
        odd = [j for j in sorted(fingerprints) if fingerprints[j] != reference]
        if not odd:
            return
        self._mismatches += len(odd)
        if not driver_decides:
            host = self._pull(source, state, None if deadline is None else max(0.0, deadline - time.monotonic()))
            self._state_loads[-1] += _payload_bytes(host)
            self._source = self._anchor_at(host, state)
        for j in odd:
            self._holding[j] = None
            del results[j]
            pending[j] = self._message(j, state, parts[j], want_fingerprint, how)
        fingerprints.clear()
        if self._collect(state, parts, pending, results, fingerprints, how, restarts):
            for j in odd:
                if fingerprints.get(j, reference) != reference:
                    raise RuntimeError(f"replica {j}'s params differ from {holder} right after a reload")

    def _collect(self, state, parts, pending: dict, results: dict, fingerprints: dict, how: list, restarts: list):
        """Wait for the `pending` calls (replica → ref), filling `results` and `fingerprints`, replacing dead
        replicas (and sending their calls again) up to max_restarts; False where the deadline (how[1], moved
        on by the time restarted replicas take to start) passed first."""
        ray = self._ray
        want_fingerprint = state.generation % self.check_every == 0
        while pending:
            replica_of = {ref: j for j, ref in pending.items()}
            left = None if how[1] is None else max(0.0, how[1] - time.monotonic())
            ready, _ = ray.wait(list(replica_of), num_returns=1, timeout=left)
            if not ready:
                return False
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
                    raise RuntimeError(_start_failure(error, self.backend)) from None
                restarts[0] += 1
                if restarts[0] > self.max_restarts:
                    raise RuntimeError(
                        f"Ray workers died {restarts[0]} times while evaluating generation {state.generation}; "
                        f"giving up after max_restarts={self.max_restarts} (see the Ray logs for the cause)"
                    ) from None
                self._restarts += 1
                self._replace([j])
                started = time.monotonic()
                self._wait_until_started()
                if how[1] is not None:  # the timeout counts evaluation, not the start of a replica
                    how[1] += time.monotonic() - started
                pending[j] = self._message(j, state, parts[j], want_fingerprint, how)
                continue
            del pending[j]
            self._per_generation[-1] += _payload_bytes(values, fingerprint)
            results[j] = values
            if fingerprint is not None:
                fingerprints[j] = fingerprint
        return True

    def step(self, state: EggrollState) -> tuple[EggrollState, dict, np.ndarray]:
        next_state, info, fitness = super().step(state)
        told = told_message(self.es, fitness, self._reference_float(state))
        self._holding = [
            _Holding(next_state, told) if holding is not None and holding.state is state else None
            for holding in self._holding
        ]
        self._stepped = next_state
        self._anchor_bytes += told.nbytes if isinstance(told, np.ndarray) else len(told.data)
        if self._anchor_tip is state and self._anchor_bytes <= self.replay_bytes:
            self._anchor, self._anchor_tip = _Load(self._anchor.state, (*self._anchor.replay, told)), next_state
        else:
            self._anchor = self._anchor_tip = None
        return next_state, info, fitness

    def authoritative(self, state: EggrollState) -> EggrollState:
        """The authoritative copy of `state` (module docstring), in the library and on the device of
        `state`: `state` itself where the driver is authoritative or `state` is not the driver's mirror of
        one the replicas hold; else the copy that most live replicas holding it agree on (by fingerprint),
        fetched from one of them (the state's size in bytes, once). Where no live replica holds it any more
        (replaced after a fault, a timeout or an interrupt), a replica is rebuilt from the last exact state
        and the told fitness since (a RuntimeError where that replay was dropped: replay_bytes). A replica
        that disagrees is reloaded at the next call. Holdings move to the returned state, so `step` goes on
        from it without sending anything. For checkpoints and exact evaluations."""
        if self.driver_is_authoritative(state):
            return state
        holders = [j for j, holding in enumerate(self._holding) if holding is not None and holding.state is state]
        if not holders and state is not self._stepped:
            return state
        ray, fingerprints = self._ray, {}
        for j in holders:
            try:
                fingerprints[j] = ray.get(
                    self._actors[j].fingerprint.remote(state.generation, self._holding[j].told), timeout=self.timeout
                )
            except ray.exceptions.RayActorError:
                self._restarts += 1
                self._replace([j])
                continue
            self._holding[j] = _Holding(state, None)
        if not fingerprints:
            if self._anchor_tip is not state:
                raise RuntimeError(
                    f"generation {state.generation}: no live replica holds the state any more (they were replaced "
                    "after a fault or an interrupt), the told fitness since the last exact state passed "
                    f"replay_bytes={self.replay_bytes}, and the driver's copy rounds differently from theirs; go "
                    "on from an earlier exact state (a checkpoint)"
                )
            if self._starting:
                self._wait_until_started()
            self._actors[0].load.remote(*self._anchor)  # rebuilt exactly by replaying the told fitness
            self._pulled_bytes += _payload_bytes(*self._anchor)
            self._loads += 1
            self._holding[0] = _Holding(state, None)
            fingerprints = {0: None}  # the one holder: nothing to compare it with
        reference, source = _majority(fingerprints)
        for j in fingerprints:
            if fingerprints[j] != reference:
                self._mismatches += 1
                self._holding[j] = None
        host = self._pull(source, state, self.timeout)
        self._pulled_bytes += _payload_bytes(host)
        xp, dev = namespace_and_device(state.params)
        exact = EggrollState(*on_backend(tuple(host), xp, dev))
        self._anchor_at(host, exact)
        self._holding = [
            _Holding(exact, None) if holding is not None and holding.state is state else holding
            for holding in self._holding
        ]
        if self._stepped is state:
            self._stepped = None  # loading `exact` into a new replica loses nothing
        return exact

    def run_on_replica(self, fn: Callable, *args):
        """`fn(*args)` in the process of the first replica, on its backend and device; returns what fn
        returns (host values travel best), or raises what fn raised."""
        if not self._actors:
            raise RuntimeError("this RayEvaluator is closed; make a new one")
        try:
            return self._ray.get(self._actors[0].run.remote(fn, *args), timeout=self.timeout)
        except self._ray.exceptions.RayTaskError as error:
            raise error.cause from None

    def close(self) -> None:
        """Stop the replicas, and the local Ray instance if this evaluator started it."""
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False
