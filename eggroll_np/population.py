"""The population of one generation, held as noise factors: member i is θᵢ = θ + σ sᵢ ε_{k(i)}.

A Population never holds dense per-member matrices; `member(i)` materializes one member for black-box
evaluation.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

from .noise import FROZEN, LeafPlan, direction_of, perturbation, sign_of

__all__ = ["Population"]


class Population:
    """One generation's perturbed population (returned by `EGGROLL.ask`).

    Attributes: `params` (the mean θ), `sigma` (σ of this generation), `generation`, `epoch` (noise epoch),
    `rank`, `antithetic`, `plans` (per-leaf LeafPlan), `noise` (per non-frozen leaf: LowRankNoise with
    A (D, m, r), B (D, n, r), or FullNoise with E (D, *shape)), and `len(pop)` = N.
    """

    __slots__ = (
        "antithetic",
        "epoch",
        "fingerprint",
        "generation",
        "noise",
        "params",
        "plans",
        "rank",
        "sigma",
        "size",
        "xp",
    )

    def __init__(
        self,
        *,
        xp,
        params: Mapping,
        plans: Mapping[str, LeafPlan],
        noise: Mapping,
        size: int,
        sigma: float,
        rank: int,
        antithetic: bool,
        generation: int,
        epoch: int,
        fingerprint: tuple,
    ):
        self.xp = xp
        self.params = params
        self.plans = plans
        self.noise = noise
        self.size = size
        self.sigma = sigma
        self.rank = rank
        self.antithetic = antithetic
        self.generation = generation
        self.epoch = epoch
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        kinds = ", ".join(f"{name}: {plan.kind}" for name, plan in self.plans.items())
        return f"Population(size={self.size}, generation={self.generation}, sigma={self.sigma}, leaves={{{kinds}}})"

    def _index(self, i) -> int:
        if isinstance(i, bool):
            raise TypeError("member index must be an integer, got bool")
        try:
            index = operator.index(i)
        except TypeError:
            raise TypeError(f"member index must be an integer, got {type(i).__name__}") from None
        if not -self.size <= index < self.size:
            raise IndexError(f"member index {i!r} is out of range for a population of {self.size}")
        return index % self.size

    def sign(self, i: int) -> int:
        """sᵢ: +1 or −1."""
        return sign_of(self._index(i), self.antithetic)

    def direction(self, i: int) -> int:
        """k(i): the direction member i shares with its antithetic partner."""
        return direction_of(self._index(i), self.antithetic)

    def member(self, i: int) -> dict:
        """θᵢ = θ + σ sᵢ ε_{k(i)} for every leaf, materialized (frozen leaves are θ's own arrays)."""
        index = self._index(i)
        scale = self.sigma * sign_of(index, self.antithetic)
        k = direction_of(index, self.antithetic)
        member = {}
        for name, plan in self.plans.items():
            theta = self.params[name]
            if plan.kind == FROZEN:
                member[name] = theta
            else:
                member[name] = theta + scale * perturbation(self.xp, plan, self.noise[name], k)
        return member
