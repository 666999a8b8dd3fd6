"""The evaluator interface, the in-process evaluator, and what every evaluator shares: splitting the
population into member ranges, evaluating one range from (strategy, params, generation) alone, and reporting
a failing member with its traceback.

Fitness functions take a slice: `fitness(pop)` gets a Population of consecutive members and returns one
value per member. `per_member(fn)` turns a function of one member's params into such a function."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import traceback
from collections.abc import Callable

import numpy as np

from .. import _checks
from .._array_api import to_numpy
from ..population import Population
from ..strategy import EGGROLL, EggrollState

__all__ = [
    "Evaluator",
    "FitnessError",
    "LocalEvaluator",
    "evaluate_members",
    "params_fingerprint",
    "per_member",
    "split_members",
]


class FitnessError(RuntimeError):
    """The user's fitness function raised: `member` is the index of the member being evaluated (with
    `per_member`), else the first member of the slice; `details` the original traceback, formatted where it
    happened."""

    def __init__(self, member: int, generation: int, details: str):
        self.member, self.generation, self.details = member, generation, details
        super().__init__(
            f"the fitness function raised on member {member} of generation {generation}; its traceback:\n{details}"
        )

    def __reduce__(self):
        return (type(self), (self.member, self.generation, self.details))


class per_member:
    """`per_member(fn)`: the slice fitness that calls `fn(params of one member) → number` for every member of
    the slice, in order. A member whose call raises is reported as `FitnessError` with its own index in the
    whole population (`pop.offset + i`). An object, not a closure, so process pools and Ray can pickle it
    (`fn` must pickle too)."""

    def __init__(self, fn: Callable[[dict], float]):
        self.fn = _checks.function("fn", fn)

    def __call__(self, pop: Population) -> np.ndarray:
        values = np.empty(len(pop), dtype=np.float64)
        for i in range(len(pop)):
            try:
                values[i] = float(self.fn(pop.member(i)))
            except Exception:
                raise FitnessError(pop.offset + i, pop.generation, traceback.format_exc()) from None
        return values

    def __repr__(self) -> str:
        return f"per_member({self.fn!r})"


class Evaluator:
    """The interface every evaluator shares, built from (es, fitness, timeout=None):

    - `evaluator(state)` → the raw fitness (N,) of generation state.generation's population, float64 NumPy
      in member order;
    - `evaluator.step(state)` → (next state, info, fitness): evaluate, then `es.tell` on the driver;
    - `close()` releases the workers (also on leaving a `with` block).

    fitness(a Population of consecutive members) → one value per member, from any array library or a
    sequence. For a function of one member's params (a dict of arrays) → number, pass `per_member(fn)`.

    timeout: seconds one call (one generation's evaluation) may take, or None (the default) to wait for
    ever. A call that runs past it raises TimeoutError naming the generation, the members still outstanding
    and what became of the workers; `step` raises before it tells, so the caller's state is untouched."""

    def __init__(self, es: EGGROLL, fitness: Callable[[Population], object], *, timeout: float | None = None):
        if not isinstance(es, EGGROLL):
            raise TypeError(f"es={es!r} must be an EGGROLL strategy, not a {type(es).__name__}")
        self.es, self.fitness = es, _checks.function("fitness", fitness)
        self.timeout = None if timeout is None else _checks.real("timeout", timeout, 0, above=True)

    def __call__(self, state: EggrollState) -> np.ndarray:
        raise NotImplementedError

    def step(self, state: EggrollState) -> tuple[EggrollState, dict, np.ndarray]:
        """One generation: F = evaluator(state); (state', info) = es.tell(state, es.ask(state), F)."""
        fitness = self(state)
        next_state, info = self.es.tell(state, self.es.ask(state), fitness)
        return next_state, info, fitness

    def authoritative(self, state: EggrollState) -> EggrollState:
        """The state whose params the workers evaluate: for in-process and pool evaluators `state` itself."""
        return state

    def close(self) -> None:
        """Release the evaluator's workers (nothing to release by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalEvaluator(Evaluator):
    """Evaluates the whole population as one slice in this process: the default, and the reference the other
    evaluators reproduce. `evaluator(state)` → raw fitness (N,), float64 NumPy.

    timeout: None (the default) calls the fitness in the caller's thread and waits for ever; a number of
    seconds runs each call in a daemon thread and raises TimeoutError once it is exceeded. Python cannot
    stop a thread, so the abandoned call runs on in the background (its result is dropped; being a daemon,
    it does not hold up the interpreter's exit). For a fitness that can hang and must be stopped, use
    ProcessPoolEvaluator, which terminates its workers."""

    def __call__(self, state: EggrollState) -> np.ndarray:
        members = range(self.es.population_size)
        if self.timeout is None:
            return evaluate_members(self.es, state, members, self.fitness)
        outcome: list = []

        def call() -> None:
            try:
                outcome.append(evaluate_members(self.es, state, members, self.fitness))
            except BaseException as exc:  # re-raised in the caller's thread, as without a timeout
                outcome.append(exc)

        worker = threading.Thread(target=call, name=f"fitness of generation {state.generation}", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if not outcome:
            raise timeout_error(
                state.generation,
                [members],
                self.timeout,
                "the call runs on in a background thread, which Python cannot stop (use ProcessPoolEvaluator "
                "for a fitness that must be stopped)",
            )
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]


def split_members(population_size: int, parts: int, antithetic: bool) -> list[range]:
    """The members 0..N−1 as at most `parts` consecutive ranges of nearly equal size, never splitting an
    antithetic pair."""
    unit = 2 if antithetic else 1
    units = population_size // unit
    parts = max(1, min(parts, units))
    bounds = [unit * (units * p // parts) for p in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def timeout_error(generation: int, outstanding: list[range], timeout: float, workers: str) -> TimeoutError:
    """The error of a call that ran past `timeout`: it names the generation, the members still outstanding
    (adjacent ranges merged), the timeout, and what became of the `workers` that were evaluating them."""
    merged: list[list[int]] = []
    for part in sorted(outstanding, key=lambda r: r.start):
        if merged and merged[-1][1] == part.start:
            merged[-1][1] = part.stop
        else:
            merged.append([part.start, part.stop])
    ranges = ", ".join(f"[{a}, {b})" for a, b in merged)
    return TimeoutError(
        f"generation {generation}: members {ranges} were still being evaluated after timeout={timeout:g} s; "
        f"{workers}. Nothing was told: the state is unchanged"
    )


def evaluate_members(es: EGGROLL, state: EggrollState, members: range, fitness: Callable) -> np.ndarray:
    """Raw fitness of `members` of generation state.generation, rebuilt from the params and the counter RNG:
    fitness(the Population of these members) as (len(members),) float64 NumPy. A FitnessError from inside
    passes through; any other exception is reported for the slice's first member."""
    try:
        values = fitness(es.ask(state, members=members))
    except FitnessError:
        raise
    except Exception:
        raise FitnessError(members.start, state.generation, traceback.format_exc()) from None
    values = np.asarray(to_numpy(values), dtype=np.float64)
    if values.shape != (len(members),):
        raise ValueError(
            f"a slice fitness function must return {len(members)} values for members [{members.start}, "
            f"{members.stop}), got shape {values.shape}"
        )
    return values


def params_fingerprint(params: dict) -> str:
    """SHA-256 over every leaf's name, dtype, shape and bytes: replicas compare it with the driver's."""
    digest = hashlib.sha256()
    for name in sorted(params):
        host = np.ascontiguousarray(to_numpy(params[name]))
        digest.update(f"{name}|{host.dtype.str}|{host.shape}|".encode())
        digest.update(host.tobytes())
    return digest.hexdigest()


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_workers(workers: int | None) -> int | None:
    """None (the evaluator's default) or an integer ≥ 1."""
    return None if workers is None else _checks.integer("workers", workers, 1)


def map_arrays(tree, convert: Callable):
    """The same tree (dicts, tuples, NamedTuples, lists) with every array `a` (NumPy's or another array-API
    library's) replaced by convert(a); other leaves (the generation, None) as they are."""
    if isinstance(tree, dict):
        return {key: map_arrays(value, convert) for key, value in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(map_arrays(value, convert) for value in tree))
    if isinstance(tree, tuple | list):
        return type(tree)(map_arrays(value, convert) for value in tree)
    if isinstance(tree, np.ndarray) or hasattr(tree, "__array_namespace__"):
        return convert(tree)
    return tree


def host_tree(tree):
    """The same tree with every array copied to host NumPy: what travels to worker processes, whatever
    library the driver computes with."""
    return map_arrays(tree, to_numpy)
