"""A process pool on one machine (concurrent.futures): for fitness functions in plain Python that need
several cores. Each worker process receives the strategy and the fitness function once; each generation
it receives the mean params (NumPy) and a member range, rebuilds those members' noise from the counter RNG,
and returns their fitness. (Unlike the Ray evaluator, the params travel every generation: on one machine
that costs a memory copy, not a network transfer.)"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_for_exit

import numpy as np

from ..strategy import EGGROLL, EggrollState
from .evaluators import (
    Evaluator,
    available_cores,
    check_workers,
    evaluate_members,
    host_tree,
    split_members,
    timeout_error,
)

__all__ = ["ProcessPoolEvaluator"]

_WORKER: dict = {}
_GRACE = 2.0  # seconds terminated workers get to exit before they are killed


def _start_worker(payload: bytes) -> None:
    # A terminal's Ctrl-C signals the whole process group: the driver alone handles it (and stops the workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["es"], _WORKER["fitness"] = pickle.loads(payload)


def _evaluate_part(params: dict, generation: int, members: range) -> np.ndarray:
    state = EggrollState(params=params, opt_state=None, generation=generation)
    return evaluate_members(_WORKER["es"], state, members, _WORKER["fitness"])


def _stop_pool(executor: ProcessPoolExecutor) -> None:
    """Shut `executor` down without waiting for running calls, in at most about 2·_GRACE seconds: queued
    calls are cancelled, every worker process is terminated (SIGTERM), those still alive after _GRACE
    seconds are killed (SIGKILL), and all are joined, so none is left running or unreaped.

    The processes are read from the executor's private `_processes` mapping before `shutdown` drops it. (The
    public `terminate_workers()` of Python 3.14 drops it too and joins nothing, so a later `kill_workers()`
    finds no process left to kill; hence the one path for every version.)"""
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    alive = {process.sentinel: process for process in processes}
    deadline = time.monotonic() + _GRACE
    while alive and time.monotonic() < deadline:
        for sentinel in wait_for_exit(list(alive), timeout=deadline - time.monotonic()):
            del alive[sentinel]
    for process in alive.values():
        process.kill()
    for process in processes:
        process.join(_GRACE)


class ProcessPoolEvaluator(Evaluator):
    """Evaluates the population in `workers` processes (default: one per core), one member range each.

    fitness(a Population of consecutive members) → one value per member; wrap a function of one member's
    params as `per_member(fn)`. The strategy and the fitness function must pickle (module-level functions,
    `per_member` of one, the package's own schedules and optimizers); processes start with the "spawn"
    method, safe beside threads, and ignore SIGINT (a Ctrl-C reaches the driver alone).

    timeout: seconds one call may take, counting the start of the worker processes at the first call and
    after a timeout; None (the default) waits for ever. A call past it terminates the pool's processes and
    raises TimeoutError; the next call starts a new pool. A KeyboardInterrupt while waiting terminates them
    too, and `close()` does not wait for running calls: neither is held up by a hung fitness."""

    def __init__(self, es: EGGROLL, fitness: Callable, *, workers: int | None = None, timeout: float | None = None):
        super().__init__(es, fitness, timeout=timeout)
        self.workers = check_workers(workers) or available_cores()
        try:
            self._payload = pickle.dumps((es, fitness))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(
                f"the strategy or the fitness function cannot be sent to worker processes ({exc}); define the "
                "fitness function and any custom schedule or shaping at module level, or use LocalEvaluator"
            ) from None
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False

    def _pool(self) -> ProcessPoolExecutor:
        """The running pool, started on first use (its processes start as calls arrive)."""
        if self._closed:
            raise RuntimeError("this ProcessPoolEvaluator is closed; make a new one")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(self._payload,),
            )
        return self._executor

    def _stop(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            _stop_pool(executor)

    def __call__(self, state: EggrollState) -> np.ndarray:
        params = host_tree(state.params)
        parts = split_members(self.es.population_size, self.workers, self.es.antithetic)
        executor = self._pool()
        try:
            futures = [executor.submit(_evaluate_part, params, state.generation, part) for part in parts]
            done, running = wait(futures, timeout=self.timeout, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future in done and future.exception() is not None:
                    future.result()  # raises the error of the first failed slice, in member order
        except BrokenProcessPool:
            self._stop()
            raise RuntimeError(
                "a worker process of the pool died (crashed, killed, or out of memory); the next call starts a "
                "new pool. If this runs from a script, guard its top-level code with "
                "`if __name__ == '__main__':` (worker processes are spawned and re-import the script)"
            ) from None
        except (KeyboardInterrupt, SystemExit):  # hung workers would also hold up the interpreter's exit
            self._stop()
            raise
        if running:
            self._stop()
            outstanding = [part for part, future in zip(parts, futures, strict=True) if future in running]
            raise timeout_error(
                state.generation,
                outstanding,
                self.timeout,
                f"the pool's {self.workers} worker processes were terminated; the next call starts new ones",
            )
        return np.concatenate([future.result() for future in futures])

    def close(self) -> None:
        """Stop the worker processes without waiting for running calls (within a few seconds: terminated,
        then killed); the evaluator cannot be used afterwards."""
        self._closed = True
        self._stop()
