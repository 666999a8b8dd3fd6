"""The in-process evaluator: the default, and the reference the others must reproduce."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..strategy import EGGROLL, EggrollState
from .common import Evaluator, check_kind, evaluate_members

__all__ = ["LocalEvaluator"]


class LocalEvaluator(Evaluator):
    """Evaluates every member in this process: `evaluator(state)` → raw fitness (N,), float64 NumPy."""

    def __init__(self, es: EGGROLL, fitness: Callable, kind: str = "member"):
        self.es, self.fitness, self.kind = es, fitness, check_kind(kind)

    def __call__(self, state: EggrollState) -> np.ndarray:
        return evaluate_members(self.es, state, range(self.es.population_size), self.fitness, self.kind)
