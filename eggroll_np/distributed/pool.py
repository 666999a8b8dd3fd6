"""A process pool on one machine (concurrent.futures): for fitness functions in plain Python that need
several cores. Each worker process receives the strategy and the fitness function once; each generation
it receives the mean params (NumPy) and a member range, rebuilds those members' noise from the counter RNG,
and returns their fitness. (Unlike the Ray evaluator, the params travel every generation: on one machine
that costs a memory copy, not a network transfer.)"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..strategy import EGGROLL, EggrollState
from .evaluators import Evaluator, available_cores, check_workers, evaluate_members, host_tree, split_members

__all__ = ["ProcessPoolEvaluator"]

_WORKER: dict = {}


def _start_worker(payload: bytes) -> None:
    _WORKER["es"], _WORKER["fitness"] = pickle.loads(payload)


def _evaluate_part(params: dict, generation: int, members: range) -> np.ndarray:
    state = EggrollState(params=params, opt_state=None, generation=generation)
    return evaluate_members(_WORKER["es"], state, members, _WORKER["fitness"])


class ProcessPoolEvaluator(Evaluator):
    """Evaluates the population in `workers` processes (default: one per core), one member range each.

    fitness(a Population of consecutive members) → one value per member; wrap a function of one member's
    params as `per_member(fn)`. The strategy and the fitness function must pickle (module-level functions,
    `per_member` of one, the package's own schedules and optimizers); processes start with the "spawn"
    method, safe beside threads."""

    def __init__(self, es: EGGROLL, fitness: Callable, *, workers: int | None = None):
        super().__init__(es, fitness)
        self.workers = check_workers(workers) or available_cores()
        try:
            payload = pickle.dumps((es, fitness))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                f"the strategy or the fitness function cannot be sent to worker processes ({exc}); define the "
                "fitness function and any custom schedule or shaping at module level, or use LocalEvaluator"
            ) from None
        self._executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(payload,),
        )

    def __call__(self, state: EggrollState) -> np.ndarray:
        params = host_tree(state.params)
        parts = split_members(self.es.population_size, self.workers, self.es.antithetic)
        try:
            futures = [self._executor.submit(_evaluate_part, params, state.generation, part) for part in parts]
            return np.concatenate([future.result() for future in futures])
        except BrokenProcessPool:
            raise RuntimeError(
                "a worker process of the pool died (crashed, killed, or out of memory); the pool cannot be "
                "used again. If this runs from a script, guard its top-level code with "
                "`if __name__ == '__main__':` (worker processes are spawned and re-import the script)"
            ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
