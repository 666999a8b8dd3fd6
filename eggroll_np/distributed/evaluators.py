"""The evaluator interface, the in-process evaluator, and what every evaluator shares: splitting the
population into member ranges, evaluating one range from (strategy, params, generation) alone, and reporting
a failing member with its traceback.

Fitness functions take a slice: `fitness(pop)` gets a Population of consecutive members and returns one
value per member. `per_member(fn)` turns a function of one member's params into such a function."""

from __future__ import annotations

import hashlib
import itertools
import os
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
    """The interface every evaluator shares, built from (es, fitness):

    - `evaluator(state)` → the raw fitness (N,) of generation state.generation's population, float64 NumPy
      in member order;
    - `evaluator.step(state)` → (next state, info, fitness): evaluate, then `es.tell` on the driver;
    - `close()` releases the workers (also on leaving a `with` block).

    fitness(a Population of consecutive members) → one value per member, from any array library or a
    sequence. For a function of one member's params (a dict of arrays) → number, pass `per_member(fn)`."""

    def __init__(self, es: EGGROLL, fitness: Callable[[Population], object]):
        if not isinstance(es, EGGROLL):
            raise TypeError(f"es={es!r} must be an EGGROLL strategy, not a {type(es).__name__}")
        self.es, self.fitness = es, _checks.function("fitness", fitness)

    def __call__(self, state: EggrollState) -> np.ndarray:
        raise NotImplementedError

    def step(self, state: EggrollState) -> tuple[EggrollState, dict, np.ndarray]:
        """One generation: F = evaluator(state); (state', info) = es.tell(state, es.ask(state), F)."""
        fitness = self(state)
        next_state, info = self.es.tell(state, self.es.ask(state), fitness)
        return next_state, info, fitness

    def close(self) -> None:
        """Release the evaluator's workers (nothing to release by default)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalEvaluator(Evaluator):
    """Evaluates the whole population as one slice in this process: the default, and the reference the other
    evaluators reproduce. `evaluator(state)` → raw fitness (N,), float64 NumPy."""

    def __call__(self, state: EggrollState) -> np.ndarray:
        return evaluate_members(self.es, state, range(self.es.population_size), self.fitness)


def split_members(population_size: int, parts: int, antithetic: bool) -> list[range]:
    """The members 0..N−1 as at most `parts` consecutive ranges of nearly equal size, never splitting an
    antithetic pair."""
    unit = 2 if antithetic else 1
    units = population_size // unit
    parts = max(1, min(parts, units))
    bounds = [unit * (units * p // parts) for p in range(parts + 1)]
    return [range(a, b) for a, b in itertools.pairwise(bounds) if b > a]


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


def host_tree(tree):
    """The same tree (dicts, tuples, NamedTuples, lists) with every array copied to host NumPy: what travels
    to worker processes, whatever library the driver computes with."""
    if isinstance(tree, dict):
        return {key: host_tree(value) for key, value in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(host_tree(value) for value in tree))
    if isinstance(tree, tuple | list):
        return type(tree)(host_tree(value) for value in tree)
    if isinstance(tree, np.ndarray) or hasattr(tree, "__array_namespace__"):
        return to_numpy(tree)
    return tree
