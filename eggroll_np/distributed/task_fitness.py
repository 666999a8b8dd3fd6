"""A command-line task as the fitness of Ray replicas: what travels is the run's config, and each replica
builds the task (its data, its environments) on the run's backend the first time it evaluates."""

from __future__ import annotations

from .._array_api import backend_namespace, has_dtype, to_numpy
from ..population import Population
from ..tasks import task_class

__all__ = ["TaskFitness", "initial_params", "task_on"]


def task_on(config: dict, backend: str) -> tuple:
    """(the task of `config` on `backend`'s first device in config["dtype"], xp, device); a ValueError where
    that backend lacks the dtype."""
    xp, device = backend_namespace(backend)
    if not has_dtype(xp, config["dtype"], device):
        raise ValueError(
            f"--backend {backend} has no {config['dtype']} on {device} (JAX needs JAX_ENABLE_X64=1 for 64-bit "
            "types); use --dtype float32"
        )
    return task_class(config["task"])(config, xp, device, getattr(xp, config["dtype"])), xp, device


def initial_params(config: dict) -> dict:
    """The task's initial params drawn on config["backend"], as host NumPy arrays: run in a replica, so that a
    run whose driver computes in NumPy starts where a run on the backend does (the MLP tasks draw their init
    on the device, a few ulp from NumPy's draw)."""
    task = task_on(config, config["backend"])[0]
    return {name: to_numpy(value) for name, value in task.init_params(config["seed"]).items()}


class TaskFitness:
    """`fitness(pop)` = the config's task's fitness of a slice of members at pop.generation, the task built in
    the calling process at the first call (`task_on`). Pickles as its config alone, never the task's
    loaded data."""

    def __init__(self, config: dict):
        self.config = dict(config)
        self._task = None

    def __call__(self, pop: Population):
        if self._task is None:
            self._task = task_on(self.config, self.config["backend"])[0]
        return self._task.fitness(pop, pop.generation)

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.config, self._task = state["config"], None

    def __repr__(self) -> str:
        return f"TaskFitness(task={self.config['task']!r}, backend={self.config['backend']!r})"
