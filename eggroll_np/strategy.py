"""EGGROLL: evolution strategies with low-rank perturbations (Sarkar et al., "Evolution Strategies at the
Hyperscale", arXiv 2511.16652), as an ask/tell strategy with explicit state.

    es = EGGROLL(population_size=256, sigma=0.05)
    state = es.init(params)
    pop = es.ask(state)                      # noise factors for generation t
    fitness = evaluate(pop)                  # (N,) raw fitness, higher is better
    state, info = es.tell(state, pop, fitness)

The strategy object holds settings only; everything that changes lives in `EggrollState`. Neither ask nor
tell reads anything back from the device, except the one boolean of the default nan_policy="raise".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from . import noise as noise_mod
from ._array_api import (
    as_namespace_array,
    dtype_name,
    is_floating_dtype,
    namespace_and_device,
    sum_of_squares,
    to_numpy,
)
from .gradient import es_gradient
from .optim import Optimizer, adam, as_optimizer
from .population import Population
from .schedules import Schedule, as_schedule
from .shaping import make_shaping

__all__ = ["EGGROLL", "NAN_POLICIES", "EggrollState"]

NAN_POLICIES = ("raise", "worst")


class EggrollState(NamedTuple):
    """Mean parameters θ, optimizer state, and the generation counter t (a Python int)."""

    params: dict
    opt_state: Any
    generation: int


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an integer ≥ {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer ≥ {minimum}")
    return int(value)


class EGGROLL:
    """Evolution strategies with rank-r perturbations of matrix leaves (the math: docs/algorithm.md).

    population_size N (even with antithetic pairs); sigma σ (float or schedule of the generation); rank r of
    each perturbation; optimizer (an `optim.Optimizer`; a float or schedule means plain SGD with that rate;
    default adam(1e-2)); shaping (a name from `shaping.SHAPINGS` or a callable F → f); antithetic (member 2k
    gets +ε, 2k+1 gets −ε); noise_reuse k (fresh noise every k generations, 0 = never resample); group_size
    G (for the group shapings); noise ("gaussian" or "rademacher" low-rank factors); maximize (False
    minimizes); seed (integer in [0, 2⁶⁴)); policy (per-leaf kind: mapping name → "lowrank" | "full" |
    "frozen", or callable (name, array) → kind or None); nan_policy ("raise": non-finite fitness raises and
    names the members, at the cost of one boolean read back per tell; "worst": non-finite fitness counts
    as the population's worst finite fitness, with no read-back).
    """

    def __init__(
        self,
        population_size: int = 256,
        sigma: float | Schedule = 0.05,
        rank: int = 1,
        optimizer: Optimizer | float | Schedule | None = None,
        shaping: str | Callable = "centered_rank",
        antithetic: bool = True,
        noise_reuse: int = 1,
        group_size: int = 0,
        noise: str = "gaussian",
        maximize: bool = True,
        seed: int = 0,
        policy: noise_mod.Policy = None,
        nan_policy: str = "raise",
    ):
        self.population_size = _check_int("population_size", population_size, 2)
        if antithetic and population_size % 2:
            raise ValueError(
                f"population_size={population_size} must be even when antithetic=True; "
                f"use {population_size + 1}, or antithetic=False"
            )
        self.sigma = as_schedule(sigma, "sigma")
        if not callable(sigma):
            self._sigma_at(0)
        self.rank = _check_int("rank", rank, 1)
        self.optimizer = adam(1e-2) if optimizer is None else as_optimizer(optimizer)
        self.antithetic = bool(antithetic)
        self.noise_reuse = _check_int("noise_reuse", noise_reuse, 0)
        self.group_size = _check_int("group_size", group_size, 0)
        self.shaping = make_shaping(
            shaping, population_size=population_size, group_size=group_size, antithetic=self.antithetic
        )
        if noise not in noise_mod.NOISE_KINDS:
            raise ValueError(f"noise={noise!r}; use one of {', '.join(noise_mod.NOISE_KINDS)}")
        self.noise = noise
        self.maximize = bool(maximize)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(f"seed={seed!r} must be an integer in [0, 2**64)")
        self.seed = seed
        if policy is not None and not callable(policy) and not isinstance(policy, Mapping):
            raise TypeError(f"policy must be None, a mapping name -> kind, or a callable; got {type(policy).__name__}")
        self.policy = policy
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy={nan_policy!r}; use one of {', '.join(NAN_POLICIES)}")
        self.nan_policy = nan_policy

    @property
    def fingerprint(self) -> tuple:
        """The settings that decide a population's noise: a population is only told to a strategy with equal
        fingerprint."""
        return (self.population_size, self.rank, self.antithetic, self.noise_reuse, self.noise, self.seed)

    @property
    def n_directions(self) -> int:
        """D: distinct directions per generation (N/2 with antithetic pairs)."""
        return noise_mod.n_directions(self.population_size, self.antithetic)

    def epoch(self, generation: int) -> int:
        """Noise epoch e = t // k, or 0 forever when k = 0."""
        return generation // self.noise_reuse if self.noise_reuse else 0

    def _sigma_at(self, generation: int) -> float:
        sigma = float(self.sigma(generation))
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma at generation {generation} is {sigma!r}; it must be a positive finite number")
        return sigma

    def _plans(self, params: Mapping) -> dict:
        return noise_mod.plan_leaves(params, self.policy)

    def init(self, params: Mapping) -> EggrollState:
        """The state at generation 0: params θ (a dict name → array, one namespace and device, real
        floating dtypes) and the optimizer's initial state for every non-frozen leaf."""
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a mapping name -> array, got {type(params).__name__}")
        if not params:
            raise ValueError("params is empty; pass a dict name -> array with at least one leaf")
        xp, _ = namespace_and_device(params)
        for name, value in params.items():
            if not is_floating_dtype(xp, value.dtype):
                raise TypeError(
                    f"leaf {name!r} has dtype {dtype_name(value.dtype)}; ES needs real floating leaves, for example "
                    f"xp.astype(params[{name!r}], xp.float32)"
                )
        plans = self._plans(params)
        trainable = {name: params[name] for name, plan in plans.items() if plan.kind != noise_mod.FROZEN}
        if not trainable:
            raise ValueError("every leaf is frozen, so there is nothing to evolve; leave at least one leaf unfrozen")
        return EggrollState(params=dict(params), opt_state=self.optimizer.init(trainable), generation=0)

    def _member_range(self, members: range | None) -> range:
        if members is None:
            return range(self.population_size)
        if not isinstance(members, range) or members.step != 1 or not 0 <= members.start < members.stop:
            raise ValueError(f"members={members!r} must be a non-empty range with step 1")
        if members.stop > self.population_size:
            raise ValueError(f"members={members!r} reaches past the population of {self.population_size}")
        if self.antithetic and (members.start % 2 or members.stop % 2):
            raise ValueError(f"members={members!r} would split antithetic pairs; start and stop must be even")
        return members

    def ask(self, state: EggrollState, members: range | None = None) -> Population:
        """The population of generation t: noise factors of every direction of every non-frozen leaf.

        members: a range of member indices (even bounds with antithetic pairs) to rebuild only those
        members, for example on a worker that evaluates a slice; its directions alone are drawn. Such a
        slice is evaluated but not told: tell takes the whole population."""
        if not isinstance(state, EggrollState):
            raise TypeError(f"ask needs the EggrollState from init or tell, got {type(state).__name__}")
        members = self._member_range(members)
        xp, dev = namespace_and_device(state.params)
        generation = state.generation
        sigma = self._sigma_at(generation)
        epoch = self.epoch(generation)
        plans = self._plans(state.params)
        per_direction = 2 if self.antithetic else 1
        directions = range(members.start // per_direction, members.stop // per_direction)
        noise = {
            name: noise_mod.leaf_noise(
                xp,
                plan,
                seed=self.seed,
                epoch=epoch,
                directions=directions,
                rank=self.rank,
                noise=self.noise,
                dtype=state.params[name].dtype,
                dev=dev,
            )
            for name, plan in plans.items()
            if plan.kind != noise_mod.FROZEN
        }
        return Population(
            xp=xp,
            params=state.params,
            plans=plans,
            noise=noise,
            size=len(members),
            offset=members.start,
            sigma=sigma,
            rank=self.rank,
            antithetic=self.antithetic,
            generation=generation,
            epoch=epoch,
            fingerprint=self.fingerprint,
        )

    def _check_population(self, state: EggrollState, pop: Population) -> None:
        if not isinstance(state, EggrollState):
            raise TypeError(f"tell needs the EggrollState from init or tell, got {type(state).__name__}")
        if not isinstance(pop, Population):
            raise TypeError(f"tell needs the Population returned by ask, got {type(pop).__name__}")
        if pop.fingerprint != self.fingerprint:
            raise ValueError(
                "this population was asked from a strategy with other settings (population size, rank, "
                "antithetic, noise reuse, noise or seed); tell it to the strategy that asked for it"
            )
        if len(pop) != self.population_size:
            raise ValueError(
                f"this population holds members [{pop.offset}, {pop.offset + len(pop)}) only; tell needs the fitness "
                f"of all {self.population_size} members, from a population asked without `members`"
            )
        if pop.generation != state.generation:
            raise ValueError(
                f"this population belongs to generation {pop.generation}, but the state is at generation "
                f"{state.generation}; ask a new population from this state"
            )
        if list(pop.plans) != list(state.params):
            raise ValueError(
                f"this population perturbs leaves {list(pop.plans)}, but the state has leaves {list(state.params)}"
            )
        if pop.plans != self._plans(state.params):
            raise ValueError(
                "this population was asked under another leaf policy or for leaves of other shapes; "
                "tell it to the strategy that asked for it, with the state it was asked from"
            )

    def _fitness_array(self, xp, dev, fitness, dtype):
        F = as_namespace_array(fitness, xp, dev)
        if F.ndim != 1 or F.shape[0] != self.population_size:
            raise ValueError(
                f"fitness has shape {tuple(F.shape)}; it must have shape ({self.population_size},), one value "
                "per member in population order"
            )
        if not is_floating_dtype(xp, F.dtype):
            F = xp.astype(F, dtype)
        if self.nan_policy == "raise":
            finite = xp.isfinite(F)
            if not bool(xp.all(finite)):
                bad = [int(i) for i in (~to_numpy(finite)).nonzero()[0]]
                raise ValueError(
                    f"fitness is NaN or infinite for members {bad}; fix the evaluation, or pass "
                    "nan_policy='worst' to count them as the worst member"
                )
        return F

    def _replace_nonfinite(self, xp, G):
        """nan_policy='worst': non-finite values of G (higher is better) become the worst finite value."""
        finite = xp.isfinite(G)
        worst = xp.min(xp.where(finite, G, xp.asarray(math.inf, dtype=G.dtype, device=G.device)))
        worst = xp.where(xp.isfinite(worst), worst, xp.zeros_like(worst))
        return xp.where(finite, G, worst)

    def tell(self, state: EggrollState, pop: Population, fitness) -> tuple[EggrollState, dict]:
        """Update θ from the population's raw fitness F (N,), any array library or a sequence.

        f = shaping(±F); g = 1/(Nσ) Σᵢ fᵢ sᵢ ε_{k(i)} per leaf; θ ← θ + optimizer step. Returns the new
        state and 0-D array metrics: fitness_mean, fitness_max, fitness_min (of F as given) and grad_norm.
        """
        self._check_population(state, pop)
        xp, dev = namespace_and_device(state.params)
        first_dtype = next(iter(state.params.values())).dtype
        F = self._fitness_array(xp, dev, fitness, first_dtype)
        G = F if self.maximize else -F
        if self.nan_policy == "worst":
            G = self._replace_nonfinite(xp, G)
        f = self.shaping(G)
        if getattr(f, "shape", None) != (self.population_size,):
            raise ValueError(
                f"the shaping function returned shape {getattr(f, 'shape', None)}; "
                f"it must return ({self.population_size},)"
            )
        grads = es_gradient(xp, pop.plans, pop.noise, f, sigma=pop.sigma, rank=pop.rank, antithetic=pop.antithetic)
        trainable = {name: state.params[name] for name in grads}
        step, opt_state = self.optimizer.update(grads, state.opt_state, state.generation, trainable)
        params = dict(state.params)
        for name, delta in step.items():
            params[name] = state.params[name] + delta
        info = {
            "fitness_mean": xp.mean(F),
            "fitness_max": xp.max(F),
            "fitness_min": xp.min(F),
            "grad_norm": xp.sqrt(sum_of_squares(xp, grads.values())),
        }
        return EggrollState(params=params, opt_state=opt_state, generation=state.generation + 1), info
