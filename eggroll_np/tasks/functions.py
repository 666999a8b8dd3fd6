"""Black-box benchmark functions through the ask/tell path: each member's parameter vector is
materialized with `pop.member(i)` and handed to a plain function, as a user's own simulator would be.

Rosenbrock: f(x) = Σᵢ 100 (xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)², minimum 0 at x = (1, ..., 1), started from x = 0.
"""

from __future__ import annotations

from typing import ClassVar

from .._checks import integer
from . import Option

__all__ = ["RosenbrockTask", "rosenbrock"]


def rosenbrock(xp, x):
    """Σᵢ 100 (xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)² over the last axis."""
    head, tail = x[..., :-1], x[..., 1:]
    return xp.sum(100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2, axis=-1)


class RosenbrockTask:
    summary = "the Rosenbrock function in --dim dimensions, minimized black-box from x = 0"
    metric = "rosenbrock"
    metric_goal = None
    defaults: ClassVar[dict] = dict(
        population_size=512, sigma=0.01, learning_rate=0.01, generations=1000, eval_every=50, maximize=False
    )
    options = (Option("dim", int, 1000, "dimension of x"),)

    def __init__(self, config: dict, xp, device, dtype):
        self.xp, self.device, self.dtype, self.dim = xp, device, dtype, integer("dim", config["dim"], 2)

    def init_params(self, seed: int) -> dict:
        return {"x": self.xp.zeros((self.dim,), dtype=self.dtype, device=self.device)}

    def fitness(self, pop, generation: int):
        """f of every member, one black-box call each (the strategy minimizes: maximize=False)."""
        return self.xp.stack([rosenbrock(self.xp, pop.member(i)["x"]) for i in range(len(pop))])

    def evaluate(self, params) -> dict:
        return {"rosenbrock": float(rosenbrock(self.xp, params["x"]))}
