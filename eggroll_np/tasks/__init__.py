"""Tasks the command line trains: each couples a model or a black-box function with its fitness and its
evaluation, and names the settings that suit it.

A task is a class with

- `summary`, `metric` (the evaluation's headline number) and `metric_goal` (None or a value the default run
  should reach); its name is its key in `TASKS`;
- `defaults`: the run settings that suit it where they differ from `training.DEFAULTS` (population_size,
  sigma, optimizer, learning_rate, generations, eval_every, ...: config keys, EGGROLL's keyword names for
  the strategy's settings), overridable from the command line;
- `options`: its own `Option`s (command-line flags with defaults);
- optionally `defaults_for(settings) -> dict`: the defaults for these option values and settings, where they
  depend on an option (the text task's float twin trains with Adam);
- optionally `derived(config) -> dict`: facts about its data a run's config records when it is built (the
  text task's corpus digest), so that a resumed run can check them;
- optionally `whole_population(config) -> str | None`: why its fitness takes the whole population in one
  call, where it does for this config (cartpole --env gymnasium), so that more than one worker is refused;
- `__init__(config, xp, device, dtype)`: loads its data or environments onto the backend;
- `init_params(seed) -> dict`, `fitness(pop, generation) -> (N,) array of xp`, `evaluate(params) -> dict`
  of Python floats, or strings reported as text (the one place a run reads values back from the device).

fitness must be a pure function of (params, generation, config): minibatches and environment seeds come
from (seed, generation), so a resumed run repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, NamedTuple

__all__ = ["TASKS", "Option", "task_class"]


class Option(NamedTuple):
    """A task's own command-line option: --name (dashes for underscores), its type, default and help."""

    name: str
    type: Any
    default: Any
    help: str


TASKS = {
    "digits": ("eggroll_np.tasks.digits", "DigitsTask"),
    "cartpole": ("eggroll_np.tasks.cartpole", "CartPoleTask"),
    "pendulum": ("eggroll_np.tasks.control", "PendulumTask"),
    "acrobot": ("eggroll_np.tasks.control", "AcrobotTask"),
    "mountaincar": ("eggroll_np.tasks.control", "MountainCarTask"),
    "rosenbrock": ("eggroll_np.tasks.functions", "RosenbrockTask"),
    "text": ("eggroll_np.tasks.text", "TextTask"),
}


def task_class(name: str):
    """The task class registered under `name` (imported on first use: tasks pull in optional packages)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    module, cls = TASKS[name]
    return getattr(import_module(module), cls)
