"""The best member: of one generation (`generation_best`, sync-free, which `EGGROLL.tell` reports as
info["fitness_best"] and info["best_index"]) and of a whole run (`BestSoFar`, one host read per generation).

    es = egg.EGGROLL(population_size=64, maximize=False)
    best = egg.BestSoFar(es)                 # the direction comes from the strategy
    for _ in range(100):
        pop = es.ask(state)
        state, info = es.tell(state, pop, fitness(pop))
        best.update(pop, info)               # or best.update(pop, fitness)
    best.fitness, best.params, best.generation, best.index

Best means the highest raw fitness F when maximizing, the lowest when minimizing, over finite values only:
NaN and ±inf never count as best. Ties go to the earlier member: the lowest index within a generation, the
earlier generation across a run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from . import _checks
from ._array_api import array_namespace, device, index_dtype, is_numpy_namespace, to_numpy
from ._fitness import as_fitness
from .population import Population

__all__ = ["BestSoFar", "best_of", "generation_best", "improves"]

_SPLIT = 4096  # an index travels as two floats i // 4096 and i % 4096, each exact even in float32


def improves(value: float, best: float | None, maximize: bool) -> bool:
    """Whether `value` becomes the best: it is finite and strictly better than `best` (None: nothing yet),
    higher when maximizing, lower when minimizing. The one rule of BestSoFar, the command line's summary and
    its plot."""
    return math.isfinite(value) and (best is None or (value > best if maximize else value < best))


def generation_best(F, maximize: bool):
    """(F_b, b) of one generation's raw fitness F (N,) as 0-D arrays, with no host read: b = the lowest i with
    Gᵢ = max_j G_j over the finite values, G = F (maximize) or −F (minimize), and F_b its raw fitness; (NaN, 0)
    when no value is finite. b has the namespace's index dtype (no argmax: array-api-strict's no_x64 device
    refuses its int64 result)."""
    return best_of(array_namespace(F), device(F), F, maximize)


def best_of(xp, dev, F, maximize: bool):
    """`generation_best` of F, an array of `xp` on `dev` (what `EGGROLL.tell` calls): NumPy's own argmax on
    NumPy (a fifth of the time at small N), the portable reductions elsewhere."""
    if is_numpy_namespace(xp):
        return _best_numpy(F, maximize)
    return _best_portable(xp, dev, F, maximize)


def _best_portable(xp, dev, F, maximize: bool):
    G = F if maximize else -F
    G = xp.where(xp.isfinite(G), G, xp.full_like(G, -math.inf))
    top = xp.max(G)
    positions = xp.arange(F.shape[0], dtype=index_dtype(xp, dev), device=dev)
    index = xp.min(xp.where(G == top, positions, xp.full_like(positions, F.shape[0])))
    value = top if maximize else -top
    return xp.where(xp.isfinite(top), value, xp.full_like(top, math.nan)), index


def _best_numpy(F, maximize: bool):
    G = F if maximize else -F
    index = int(np.argmax(np.where(np.isfinite(G), G, -np.inf)))  # the first maximum
    value = F[index] if np.isfinite(G[index]) else np.nan
    return np.asarray(value, dtype=F.dtype), np.asarray(index, dtype=np.int64)


def _direction(strategy, maximize) -> bool:
    """maximize as given, or the strategy's; both given must agree, and one must be given."""
    from .strategy import EGGROLL  # strategy imports this module for generation_best

    if strategy is not None and not isinstance(strategy, EGGROLL):
        raise TypeError(f"strategy must be the EGGROLL whose direction to follow, not a {type(strategy).__name__}")
    if maximize is not None:
        maximize = _checks.boolean("maximize", maximize)
    if strategy is None and maximize is None:
        raise TypeError("BestSoFar needs the direction: pass the strategy, BestSoFar(es), or maximize=True/False")
    if strategy is not None and maximize is not None and maximize != strategy.maximize:
        raise ValueError(
            f"maximize={maximize} contradicts the strategy's maximize={strategy.maximize}; pass only the strategy"
        )
    return strategy.maximize if maximize is None else maximize


class BestSoFar:
    """The best member ever seen: `fitness` (a float, raw F in the user's sign), `params` (its θᵢ from
    `pop.member(i)`, materialized only when it improves), `generation` and `index` (in the whole population);
    all None until a finite fitness is seen.

    BestSoFar(es) follows the strategy's direction; BestSoFar(maximize=False) gives it directly. Each
    `update` reads one small array back to the host: the generation's best value and index (the generation
    too, when it is a 0-D array from jax.jit, on improvement). A member replaces the best only when it is
    strictly better, so of equal fitness the earlier one stays.
    """

    def __init__(self, strategy=None, *, maximize: bool | None = None):
        self.maximize = _direction(strategy, maximize)
        self.fitness: float | None = None
        self.params: dict | None = None
        self.generation: int | None = None
        self.index: int | None = None

    def __repr__(self) -> str:
        return (
            f"BestSoFar(maximize={self.maximize}, fitness={self.fitness}, generation={self.generation}, "
            f"index={self.index})"
        )

    def update(self, pop: Population, info_or_fitness) -> bool:
        """Take the generation of `pop` into account; True if its best member is strictly better than the best so
        far (and has become it).

        info_or_fitness: the info that `tell` returned (its fitness_best and best_index), or the raw fitness F
        (N,) of pop's members (an array of any library or a sequence; for a slice asked with `members=`, the
        slice's fitness: the index kept is the member's index in the whole population)."""
        if not isinstance(pop, Population):
            raise TypeError(f"update needs the Population the fitness belongs to, got {type(pop).__name__}")
        if isinstance(info_or_fitness, Mapping):
            missing = [key for key in ("fitness_best", "best_index") if key not in info_or_fitness]
            if missing:
                raise ValueError(
                    f"the info dict lacks {', '.join(missing)}; pass the info that tell returned, or the fitness"
                )
            value, index = info_or_fitness["fitness_best"], info_or_fitness["best_index"]
        else:
            xp, dev = pop.xp, device(next(iter(pop.params.values())))
            value, index = best_of(xp, dev, as_fitness(info_or_fitness, xp, dev, len(pop)), self.maximize)
        xp = pop.xp
        parts = [value, xp.astype(index // _SPLIT, value.dtype), xp.astype(index % _SPLIT, value.dtype)]
        best, high, low = (float(v) for v in to_numpy(xp.stack(parts)))
        if not improves(best, self.fitness, self.maximize):
            return False
        local = int(high) * _SPLIT + int(low)
        self.fitness, self.params = best, pop.member(local)
        self.generation, self.index = int(pop.generation), pop.offset + local
        return True
