"""The population of one generation, held as noise factors: member i is θᵢ = θ + σ sᵢ ε_{k(i)}.

A Population never holds dense per-member matrices. It offers the model ops (`linear`, `vector`,
`embedding`) for all members at once, as `MeanOps` does for the mean parameters, so one model function runs
on either; `member(i)` materializes one member for black-box evaluation.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

from . import forward
from .noise import FROZEN, LeafPlan, direction_of, perturbation, sign_of
from .ops import add_bias

__all__ = ["Population"]


class Population:
    """One generation's perturbed population (returned by `EGGROLL.ask`).

    Attributes: `params` (the mean θ), `sigma` (σ of this generation), `generation`, `epoch` (noise epoch),
    `rank`, `antithetic`, `plans` (per-leaf LeafPlan), `noise` (per non-frozen leaf: LowRankNoise with
    A (D, m, r), B (D, n, r), or FullNoise with E (D, *shape)), `len(pop)` = N, and `offset`: 0, or the first
    member's index for a slice asked with `EGGROLL.ask(state, members=range(...))` (its local index i is member
    offset + i of the whole population).
    """

    __slots__ = (
        "antithetic",
        "epoch",
        "fingerprint",
        "generation",
        "noise",
        "offset",
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
        offset: int = 0,
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
        self.offset = offset
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
        """k(i): the direction member i shares with its antithetic partner (for a slice of the population,
        i counts from the slice's first member and k is the direction's index in the whole population)."""
        return direction_of(self.offset + self._index(i), self.antithetic)

    @property
    def _members(self) -> forward.Members:
        return forward.Members(self.size, self.antithetic, self.sigma, self.rank)

    def _leaf(self, name: str):
        if name not in self.plans:
            raise KeyError(f"no leaf named {name!r}; the leaves are {', '.join(map(repr, self.plans))}")
        return self.plans[name], self.params[name], self.noise.get(name)

    def linear(self, name: str, x, bias=None, *, shared: bool | None = None):
        """yᵢ = xᵢ Wᵢᵀ (+ bᵢ) for every member, Wᵢ = W + σ sᵢ ε_{k(i)} never formed: for a low-rank leaf
        x Wᵀ + (σ sᵢ/√r)(x Bₖ) Aₖᵀ.

        x: (N, ..., n), one input per member, or (..., n), one input shared by all (inferred from a leading
        axis of size N; pass shared=True for a shared batch of exactly N rows). bias: a leaf name (perturbed
        per member), an array (shared) or None. Returns (N, ..., m).
        """
        plan, value, noise = self._leaf(name)
        y = forward.linear(self.xp, plan, value, noise, x, self._members, shared=shared)
        return add_bias(self, y, bias, per_member=True)

    def vector(self, name: str):
        """(N, *shape): θ + σ sᵢ ε_{k(i)} of a full-rank (or frozen) leaf for every member, e.g. biases."""
        plan, value, noise = self._leaf(name)
        return forward.vector(self.xp, plan, value, noise, self._members)

    def embedding(self, name: str, ids, *, shared: bool | None = None):
        """Rows `ids` of every member's table Wᵢ (V, d), never formed: W[ids] + (σ sᵢ/√r) Aₖ[ids] Bₖᵀ for a
        low-rank table. ids: (N, ...) per member or (...) shared, integers in [0, V). Returns (N, ..., d)."""
        plan, value, noise = self._leaf(name)
        return forward.embedding(self.xp, plan, value, noise, ids, self._members, shared=shared)

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
