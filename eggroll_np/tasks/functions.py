"""Black-box benchmark functions through the ask/tell path: the function only reads the values of each
member's parameter vector x, never a gradient. By default it is called once on the (N, dim) array of every
member's x (`pop.vector`, a vectorized simulator); with --calls single once per member on `pop.member(i)`,
as a simulator that takes one parameter set would be. Both hand it the same values, bit for bit.

Rosenbrock: f(x) = Σᵢ 100 (xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)², minimum 0 at x = (1, ..., 1), started from x = 0
(f = dim − 1). Its curved valley couples each xᵢ₊₁ to xᵢ², so descent from 0 moves along the chain
coordinate after coordinate and its length grows with the dimension: the default 50 dimensions converge in
3000 generations (f below 0.01), where 1000 dimensions barely move in as many (docs/hyperparameters.md).
"""

from __future__ import annotations

from typing import ClassVar

from .._checks import choice, integer
from . import Option

__all__ = ["CALLS", "RosenbrockTask", "rosenbrock"]

CALLS = ("batched", "single")  # --calls: f on all members at once (pop.vector), or on each pop.member(i)


def rosenbrock(xp, x):
    """Σᵢ 100 (xᵢ₊₁ − xᵢ²)² + (1 − xᵢ)² over the last axis."""
    head, tail = x[..., :-1], x[..., 1:]
    return xp.sum(100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2, axis=-1)


class RosenbrockTask:
    summary = "the Rosenbrock function in --dim dimensions, minimized black-box from x = 0 (f = dim − 1)"
    metric = "f"
    metric_goal = None
    # σ 0.01 and Adam 0.02 on a cosine schedule take f from 49 to about 0.006 on seeds 0, 1 and 2; σ 0.05 stops
    # at 36, SGD at 39, a constant rate wanders near 0.3 (docs/hyperparameters.md has the runs).
    defaults: ClassVar[dict] = dict(
        population_size=256,
        sigma=0.01,
        learning_rate=0.02,
        lr_schedule="cosine",
        generations=3000,
        eval_every=100,
        maximize=False,
    )
    options = (
        Option("dim", int, 50, "dimension of x"),
        Option("calls", str, "batched", "batched (f once on every member's x, pop.vector) or single (pop.member(i))"),
    )

    def __init__(self, config: dict, xp, device, dtype):
        self.xp, self.device, self.dtype, self.dim = xp, device, dtype, integer("dim", config["dim"], 2)
        self.batched = choice("calls", config["calls"], CALLS) == "batched"

    def init_params(self, seed: int) -> dict:
        return {"x": self.xp.zeros((self.dim,), dtype=self.dtype, device=self.device)}

    def fitness(self, pop, generation: int):
        """f of every member (the strategy minimizes: maximize=False): one call on (N, dim), or one per member."""
        if self.batched:
            return rosenbrock(self.xp, pop.vector("x"))
        return self.xp.stack([rosenbrock(self.xp, pop.member(i)["x"]) for i in range(len(pop))])

    def evaluate(self, params) -> dict:
        return {"f": float(rosenbrock(self.xp, params["x"]))}
