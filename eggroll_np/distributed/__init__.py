"""Evaluate a population across processes and machines; every evaluator rebuilds members from the counter
RNG, so only member ranges and fitness scalars need to travel.

Every evaluator takes a slice fitness, `fitness(pop) → one value per member` for a Population of consecutive
members; `per_member(fn)` adapts a function of one member's params.

- LocalEvaluator: in this process (the reference the others reproduce).
- ProcessPoolEvaluator: worker processes on this machine (concurrent.futures).
- RayEvaluator: replicas of the strategy state on a Ray cluster (`pip install 'eggroll-np[ray]'`); Ray is
  imported only when it is used.

    with RayEvaluator(es, per_member(rollout)) as evaluator:
        for _ in range(generations):
            state, info, fitness_values = evaluator.step(state)
"""

from .evaluators import Evaluator, FitnessError, LocalEvaluator, per_member, split_members
from .pool import ProcessPoolEvaluator

__all__ = [
    "Evaluator",
    "FitnessError",
    "LocalEvaluator",
    "ProcessPoolEvaluator",
    "RayEvaluator",
    "Traffic",
    "per_member",
    "split_members",
]


def __getattr__(name: str):
    if name in ("RayEvaluator", "Traffic"):
        from . import ray_cluster

        return getattr(ray_cluster, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
