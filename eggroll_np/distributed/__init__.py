"""Evaluate a population across processes and machines; every evaluator rebuilds members from the counter
RNG, so only member ranges and fitness scalars need to travel.

- LocalEvaluator: in this process (the reference the others reproduce).
- ProcessPoolEvaluator: worker processes on this machine (concurrent.futures).
- RayEvaluator: replicas of the strategy state on a Ray cluster (`pip install 'eggroll-np[ray]'`); Ray is
  imported only when it is used.

    with RayEvaluator(es, fitness) as evaluator:
        for _ in range(generations):
            state, info, fitness_values = evaluator.step(state)
"""

from .common import Evaluator, FitnessError, split_members
from .local import LocalEvaluator
from .pool import ProcessPoolEvaluator

__all__ = ["Evaluator", "FitnessError", "LocalEvaluator", "ProcessPoolEvaluator", "RayEvaluator", "split_members"]


def __getattr__(name: str):
    if name in ("RayEvaluator", "Traffic"):
        from . import ray_cluster

        return getattr(ray_cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
