"""The in-process evaluator: the default, and the reference the others must reproduce."""

from __future__ import annotations

import numpy as np

from ..strategy import EggrollState
from .common import Evaluator, evaluate_members

__all__ = ["LocalEvaluator"]


class LocalEvaluator(Evaluator):
    """Evaluates every member in this process: `evaluator(state)` → raw fitness (N,), float64 NumPy."""

    def __call__(self, state: EggrollState) -> np.ndarray:
        return evaluate_members(self.es, state, range(self.es.population_size), self.fitness, self.kind)
