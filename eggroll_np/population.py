"""The population of one generation, an immutable value held as noise factors: member i is
θᵢ = θ + σ sᵢ ε_{k(i)}.

A Population never holds dense per-member matrices. It offers the model ops (`linear`, `vector`,
`embedding`) for all members at once, as `MeanOps` does for the mean parameters, so one model function runs
on either; `member(i)` materializes one member for black-box evaluation. Every fact about the generation
lives in it once: the strategy's `Settings`, the pairing `Layout`, σ, the generation and its noise epoch,
the leaf plans and the noise records, and the params it was asked from. Where JAX is in use, a Population
is a registered pytree (its arrays are the leaves; everything else is static).
"""

from __future__ import annotations

import functools
import operator
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from . import forward
from ._array_api import is_jax_namespace
from .leaves import LeafPlan
from .ops import add_bias_into, vector_like

__all__ = ["Layout", "Population", "Settings"]


class Settings(NamedTuple):
    """The strategy settings that decide a population's noise (`EGGROLL.settings`, also its fingerprint)."""

    population_size: int
    rank: int
    antithetic: bool
    noise_reuse: int
    noise: str
    seed: int


class Layout(NamedTuple):
    """How members map to directions: `size` members, `per_direction` members P per direction (2 with
    antithetic pairs, member 2k taking +εₖ and 2k+1 taking −εₖ; 1 without), and `offset`, the index in the
    whole population of the first member (0, or the start of a slice asked with `members=range(...)`)."""

    size: int
    per_direction: int
    offset: int

    @property
    def directions(self) -> int:
        """D = size / P: the directions this population's noise holds."""
        return self.size // self.per_direction

    def direction(self, i: int) -> int:
        """k(i) in the whole population of local member i: (offset + i) // P."""
        return (self.offset + i) // self.per_direction

    def sign(self, i: int) -> int:
        """sᵢ of local member i: −1 for the second member of a pair, +1 otherwise."""
        return -1 if (self.offset + i) % self.per_direction else 1


@dataclass(frozen=True, eq=False)
class Population:
    """One generation's perturbed population (returned by `EGGROLL.ask`; build one through `ask` only).

    Attributes (all read-only): `settings` (the strategy's `Settings`), `layout` (`Layout`), `sigma` (σ of
    this generation), `generation`, `epoch` (noise epoch), `plans` (per-leaf `leaves.LeafPlan`, frozen
    leaves included), `noise` (per perturbed leaf: its noise record, e.g. `noise.LowRankNoise` with
    A (D, m, r), B (D, n, r), or `noise.FullNoise` with E (D, *shape)), `params` (the mean θ it was asked
    from) and `xp` (their namespace). Shortcuts: `len(pop)` = `size` = N, `offset`, `rank`, `antithetic`.
    """

    settings: Settings
    layout: Layout
    sigma: float
    generation: int
    epoch: int
    plans: Mapping[str, LeafPlan]
    noise: Mapping[str, Any]
    params: Mapping[str, Any]
    xp: Any
    owns_outputs = True  # linear returns arrays no one else holds (models may write into them)

    def __post_init__(self):
        for field in ("plans", "noise", "params"):
            object.__setattr__(self, field, MappingProxyType(dict(getattr(self, field))))
        if is_jax_namespace(self.xp):
            register_jax_pytree()

    size = property(lambda self: self.layout.size, doc="N: the members of this population (or slice).")
    offset = property(lambda self: self.layout.offset, doc="The index of the first member in the whole population.")
    rank = property(lambda self: self.settings.rank, doc="r: the rank of each low-rank perturbation.")
    antithetic = property(lambda self: self.settings.antithetic, doc="Whether members 2k, 2k+1 share εₖ.")

    @property
    def fingerprint(self) -> Settings:
        """The settings of the strategy that asked for this population."""
        return self.settings

    def __len__(self) -> int:
        return self.layout.size

    def __repr__(self) -> str:
        kinds = ", ".join(f"{name}: {plan.kind}" for name, plan in self.plans.items())
        where = f", members=range({self.offset}, {self.offset + self.size})" if self.offset else ""
        return (
            f"Population(size={self.size}{where}, generation={self.generation}, sigma={self.sigma}, leaves={{{kinds}}})"
        )

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
        return self.layout.sign(self._index(i))

    def direction(self, i: int) -> int:
        """k(i): the direction member i shares with its antithetic partner (for a slice of the population,
        i counts from the slice's first member and k is the direction's index in the whole population)."""
        return self.layout.direction(self._index(i))

    def member(self, i: int) -> dict:
        """θᵢ = θ + σ sᵢ ε_{k(i)} for every leaf, materialized (frozen leaves are θ's own arrays; an int8 leaf
        gives the exact float32 Wᵢ = W + σ sᵢ Aₖ Bₖᵀ)."""
        index = self._index(i)
        c = self.sigma * self.layout.sign(index)
        row = index // self.layout.per_direction
        member = {}
        for name, plan in self.plans.items():
            theta, noise = self.params[name], self.noise.get(name)
            member[name] = theta if noise is None else noise.member_leaf(self.xp, plan, theta, row, c)
        return member

    def linear(self, name: str, x, bias=None, *, shared: bool = True):
        """yᵢ = xᵢ Wᵢᵀ (+ bᵢ) for every member, Wᵢ = W + σ sᵢ ε_{k(i)} never formed: for a low-rank leaf
        x Wᵀ + (σ sᵢ/√r)(x Bₖ) Aₖᵀ.

        x: (..., n), one input shared by all members, or with shared=False (N, ..., n), one per member.
        bias: a leaf name (perturbed per member), an array (shared) or None. Returns (N, ..., m)."""
        return add_bias_into(self, forward.linear(self, name, x, shared=shared), bias)

    def vector(self, name: str, like=None):
        """θ + σ sᵢ ε_{k(i)} of a full-rank (or frozen) leaf for every member: (N, *shape), or with `like`
        (a per-member activation (N, ..., *shape)) shaped (N, 1, ..., 1, *shape) to broadcast against it,
        so `h * pop.vector("gain", like=h)` scales each member's activations by its own gain."""
        return vector_like(self, forward.vector(self, name), like, name)

    def embedding(self, name: str, ids, *, shared: bool = True):
        """Rows `ids` of every member's table Wᵢ (V, d), never formed: W[ids] + (σ sᵢ/√r) Aₖ[ids] Bₖᵀ for a
        low-rank table. ids: (...) shared, or with shared=False (N, ...) per member, integers in [0, V).
        Returns (N, ..., d)."""
        return forward.embedding(self, name, ids, shared=shared)


def _flatten(pop: Population):
    """Arrays as children, t and e too (they may be traced); σ static when it is a number, a child when it is an
    array (a σ schedule of a traced generation)."""
    number = isinstance(pop.sigma, int | float)
    children = (dict(pop.params), dict(pop.noise), pop.generation, pop.epoch, None if number else pop.sigma)
    static = (pop.settings, pop.layout, pop.sigma if number else None, tuple(pop.plans.items()), pop.xp)
    return children, static


def _unflatten(static, children) -> Population:
    settings, layout, static_sigma, plans, xp = static
    params, noise, generation, epoch, traced_sigma = children
    sigma = traced_sigma if static_sigma is None else static_sigma
    return Population(settings, layout, sigma, generation, epoch, dict(plans), noise, params, xp)


@functools.cache
def register_jax_pytree() -> None:
    """Make Population a JAX pytree (arrays as leaves, the rest static); done once, on first use with JAX."""
    import jax

    jax.tree_util.register_pytree_node(Population, _flatten, _unflatten)


if "jax" in sys.modules:
    register_jax_pytree()
