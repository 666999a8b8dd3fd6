"""EGGROLL: evolution strategies with low-rank perturbations (Sarkar et al., "Evolution Strategies at the
Hyperscale", arXiv 2511.16652), as an ask/tell strategy with explicit state.

    es = EGGROLL(population_size=256, sigma=0.05)
    state = es.init(params)
    pop = es.ask(state)                      # noise factors for generation t
    fitness = evaluate(pop)                  # (N,) raw fitness, higher is better
    state, info = es.tell(state, pop, fitness)

The strategy object holds settings only; everything that changes lives in `EggrollState`, and everything
about one generation in its `Population`. Neither ask nor tell reads anything back from the device, except
the one boolean of the default nan_policy="raise" (and of the distinctness check of `_fitness` for the
integer dtypes that need it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

from . import _checks
from ._array_api import detached, is_traced, namespace_and_device, sum_of_squares
from ._fitness import as_fitness
from .best import best_of
from .gradient import es_gradient
from .integer import sigma_shift
from .leaves import INT8, Policy, check_leaves, check_policy, plan_leaves
from .noise import NOISE_KINDS, leaf_noise, trainable
from .optim import Optimizer, adam, as_optimizer
from .population import Layout, Population, Settings
from .schedules import Schedule, as_schedule, constant, value_at
from .shaping import NAN_POLICIES, SHAPINGS, handle_nonfinite, make_shaping

__all__ = ["EGGROLL", "NAN_POLICIES", "EggrollState"]


class EggrollState(NamedTuple):
    """Mean parameters θ, optimizer state, and the generation counter t (a Python int)."""

    params: dict
    opt_state: Any
    generation: int


class EGGROLL:
    """Evolution strategies with rank-r perturbations of matrix leaves (the math: docs/algorithm.md).

    population_size N (even with antithetic pairs); sigma σ (float or schedule of the generation); rank r of
    each perturbation; optimizer (an `optim.Optimizer`; a float or schedule means plain SGD with that rate;
    default adam(1e-2)); shaping (a name from `shaping.SHAPINGS` or a callable F → f); antithetic (member 2k
    gets +ε, 2k+1 gets −ε); noise_reuse k (fresh noise every k generations, 0 = never resample); group_size
    G (for the group shapings); noise ("gaussian" or "rademacher" low-rank factors); maximize (False
    minimizes); seed (integer in [0, 2⁶⁴)); policy (per-leaf kind: mapping name → "lowrank" | "full" |
    "frozen" (or "int8" | "frozen" for an int8 leaf), or callable (name, array) → kind or None);
    nan_policy ("raise": non-finite fitness raises and names the members, at the cost of one boolean read
    back per tell; "worst": non-finite fitness counts as the population's worst finite fitness, with no
    read-back).

    int8 leaves (`eggroll_np.integer`) need σ = 2^−k and `optim.integer_step`; their integer factors ignore
    `noise`, and their update is exact and bit-identical across backends with shaping="sign".

    `settings` holds the six settings that decide a population's noise (also `fingerprint`); each is an
    attribute of the same name too.
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
        policy: Policy = None,
        nan_policy: str = "raise",
    ):
        population_size = _checks.integer("population_size", population_size, 2)
        antithetic = _checks.boolean("antithetic", antithetic)
        if antithetic and population_size % 2:
            raise ValueError(
                f"population_size={population_size} must be even when antithetic=True; "
                f"use {population_size + 1}, or antithetic=False"
            )
        self.settings = Settings(
            population_size=population_size,
            rank=_checks.integer("rank", rank, 1),
            antithetic=antithetic,
            noise_reuse=_checks.integer("noise_reuse", noise_reuse, 0),
            noise=_checks.choice("noise", noise, NOISE_KINDS),
            seed=_checks.integer("seed", seed, 0, 2**64 - 1),
        )
        self.sigma = as_schedule(sigma, "sigma", positive=True)
        self.optimizer = adam(1e-2) if optimizer is None else as_optimizer(optimizer)
        self.group_size = _checks.integer("group_size", group_size, 0)
        self.shaping = make_shaping(
            shaping, population_size=population_size, group_size=self.group_size, antithetic=antithetic
        )
        self.maximize = _checks.boolean("maximize", maximize)
        self.policy = check_policy(policy)
        self.nan_policy = _checks.choice("nan_policy", nan_policy, NAN_POLICIES)

    def __repr__(self) -> str:
        """EGGROLL(name=value, ...) with each setting whose text differs from its default's, in the signature's
        order: what a user chose, and (with eggroll_np's names in scope) the call that builds these settings again.
        A constant σ shows as its number, a named shaping as its name, a function by its name."""
        shown = []
        for name, parameter in inspect.signature(EGGROLL).parameters.items():
            default = adam(1e-2) if name == "optimizer" else parameter.default
            text = _setting_text(getattr(self, name))
            if text != _setting_text(default):
                shown.append(f"{name}={text}")
        return f"EGGROLL({', '.join(shown)})"

    population_size = property(lambda self: self.settings.population_size, doc="N: members per generation.")
    rank = property(lambda self: self.settings.rank, doc="r: the rank of each low-rank perturbation.")
    antithetic = property(lambda self: self.settings.antithetic, doc="Whether members 2k, 2k+1 share εₖ.")
    noise_reuse = property(lambda self: self.settings.noise_reuse, doc="k: fresh noise every k generations.")
    noise = property(lambda self: self.settings.noise, doc="Distribution of the low-rank factors.")
    seed = property(lambda self: self.settings.seed, doc="The seed of every generation's noise.")

    @property
    def fingerprint(self) -> Settings:
        """The settings that decide a population's noise: a population is only told to a strategy with equal
        settings (another object with the same settings, after a restart say, accepts it)."""
        return self.settings

    @property
    def n_directions(self) -> int:
        """D: distinct directions per generation (N/2 with antithetic pairs)."""
        return self.population_size // 2 if self.antithetic else self.population_size

    def epoch(self, generation: int) -> int:
        """Noise epoch e = t // k, or 0 forever when k = 0."""
        return generation // self.noise_reuse if self.noise_reuse else 0

    def _sigma_at(self, generation: int) -> float:
        return value_at(self.sigma, generation, "sigma", positive=True)

    def _plans(self, params: Mapping) -> dict:
        return plan_leaves(params, self.policy)

    def init(self, params: Mapping) -> EggrollState:
        """The state at generation 0: params θ (a dict name → array, one namespace and device, float32 or
        float64 leaves in native byte order) and the optimizer's initial state for every non-frozen leaf.
        PyTorch tensors that require grad are detached: the state's leaves never build an autograd graph."""
        check_leaves(params)
        params = {name: detached(value) for name, value in params.items()}
        names = trainable(self._plans(params))
        if not names:
            raise ValueError("every leaf is frozen, so there is nothing to evolve; leave at least one leaf unfrozen")
        opt_state = self.optimizer.init({name: params[name] for name in names})
        return EggrollState(params=dict(params), opt_state=opt_state, generation=0)

    def _layout(self, members) -> Layout:
        per_direction = 2 if self.antithetic else 1
        if members is None:
            return Layout(self.population_size, per_direction, 0)
        if not isinstance(members, range):
            raise TypeError(f"members={members!r} must be a range of member indices, not a {type(members).__name__}")
        if members.step != 1 or not 0 <= members.start < members.stop:
            raise ValueError(f"members={members!r} must be a non-empty range with step 1")
        if members.stop > self.population_size:
            raise ValueError(f"members={members!r} reaches past the population of {self.population_size}")
        if members.start % per_direction or members.stop % per_direction:
            raise ValueError(f"members={members!r} would split antithetic pairs; start and stop must be even")
        return Layout(len(members), per_direction, members.start)

    def ask(self, state: EggrollState, members: range | None = None) -> Population:
        """The population of generation t: noise factors of every direction of every non-frozen leaf.

        members: a range of member indices (even bounds with antithetic pairs) to rebuild only those
        members, for example on a worker that evaluates a slice; its directions alone are drawn. Such a
        slice is evaluated but not told: tell takes the whole population."""
        if not isinstance(state, EggrollState):
            raise TypeError(f"ask needs the EggrollState from init or tell, got {type(state).__name__}")
        layout = self._layout(members)
        xp, dev = namespace_and_device(state.params)
        generation = state.generation
        sigma = self._sigma_at(generation)
        epoch = self.epoch(generation)
        plans = self._plans(state.params)
        if any(plan.kind == INT8 for plan in plans.values()):
            sigma_shift(sigma)  # int8 leaves need σ = 2^-k
        first = layout.offset // layout.per_direction
        directions = range(first, first + layout.directions)
        noise = {
            name: leaf_noise(
                xp,
                plans[name],
                seed=self.seed,
                epoch=epoch,
                directions=directions,
                rank=self.rank,
                noise=self.noise,
                dtype=state.params[name].dtype,
                dev=dev,
            )
            for name in trainable(plans)
        }
        return Population(self.settings, layout, sigma, generation, epoch, plans, noise, state.params, xp)

    def _check_asked_from(self, state: EggrollState, pop: Population) -> None:
        """That `pop` was asked from `state` by this strategy, or the error that says which part is not."""
        if not isinstance(state, EggrollState):
            raise TypeError(f"tell needs the EggrollState from init or tell, got {type(state).__name__}")
        if not isinstance(pop, Population):
            raise TypeError(f"tell needs the Population returned by ask, got {type(pop).__name__}")
        if pop.settings != self.settings:
            raise ValueError(
                "this population was asked from a strategy with other settings (population size, rank, "
                "antithetic, noise reuse, noise or seed); tell it to the strategy that asked for it"
            )
        if pop.layout != self._layout(None):
            raise ValueError(
                f"this population holds members [{pop.offset}, {pop.offset + len(pop)}) only; tell needs the fitness "
                f"of all {self.population_size} members, from a population asked without `members`"
            )
        if not is_traced(pop.generation) and not is_traced(state.generation) and pop.generation != state.generation:
            raise ValueError(
                f"this population belongs to generation {pop.generation}, but the state is at generation "
                f"{state.generation}; ask a new population from this state"
            )
        if pop.params.keys() != state.params.keys() or any(pop.params[k] is not v for k, v in state.params.items()):
            raise ValueError(
                f"this population was asked from another state at generation {state.generation} (its params "
                "are other arrays); ask a new population from this state"
            )
        if pop.plans != self._plans(state.params):
            raise ValueError(
                "this population was asked under another leaf policy; tell it to the strategy that asked for it"
            )

    def tell(self, state: EggrollState, pop: Population, fitness) -> tuple[EggrollState, dict]:
        """Update θ from the population's raw fitness F (N,): an array of any library or a sequence of real
        numbers (the dtype rule: `eggroll_np._fitness`, docs/algorithm.md "Fitness").

        f = shaping(±F); g = 1/(Nσ) Σᵢ fᵢ sᵢ ε_{k(i)} per leaf; θ ← θ + optimizer step. Returns the new
        state and 0-D array metrics: fitness_mean, fitness_max, fitness_min (of F as given), fitness_best
        and best_index (the best finite F in the strategy's direction, max or min, and the first member that
        has it; NaN and 0 when no F is finite: `best.generation_best`) and grad_norm.
        Nothing changes unless every check passes: `pop` was asked from `state` by this strategy, F is
        finite (nan_policy="raise"), the shaping returns (N,), the learning rate at generation t is valid.
        """
        self._check_asked_from(state, pop)
        xp, dev = namespace_and_device(state.params)
        F = as_fitness(fitness, xp, dev, self.population_size)
        f = self.shaping(handle_nonfinite(F if self.maximize else -F, self.nan_policy))
        if getattr(f, "shape", None) != (self.population_size,):
            raise ValueError(
                f"the shaping function returned shape {getattr(f, 'shape', None)}; "
                f"it must return ({self.population_size},)"
            )
        grads = es_gradient(pop, f)
        trained = {name: state.params[name] for name in grads}
        step, opt_state = self.optimizer.update(grads, state.opt_state, state.generation, trained)
        params = dict(state.params)
        for name, delta in step.items():
            params[name] = state.params[name] + delta
        fitness_best, best_index = best_of(xp, dev, F, self.maximize)
        info = {
            "fitness_mean": xp.mean(F),
            "fitness_max": xp.max(F),
            "fitness_min": xp.min(F),
            "fitness_best": fitness_best,
            "best_index": best_index,
            "grad_norm": xp.sqrt(sum_of_squares(xp, grads.values())),
        }
        return EggrollState(params=params, opt_state=opt_state, generation=state.generation + 1), info


def _setting_text(value) -> str:
    """A setting as written in a call of EGGROLL: constant(v) as v, a shaping function of `SHAPINGS` (or its
    partial with group_size) as its name, a function by its qualified name, anything else by its repr."""
    if isinstance(value, constant):
        value = value.value
    shaping = value.func if isinstance(value, partial) else value
    names = [name for name, function in SHAPINGS.items() if function is shaping]
    if names:
        return repr(names[0])
    if inspect.isfunction(value) or inspect.isbuiltin(value):
        return value.__qualname__
    return repr(value)
