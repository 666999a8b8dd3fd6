"""`minimize(fun, x0)`: EGGROLL as a one-call optimizer of a function of one vector, in the manner of
`scipy.optimize.minimize`.

    result = egg.minimize(lambda x: float(np.sum((x - 3.0) ** 2)), np.zeros(10))
    result.x, result.fun, result.nit, result.nfev, result.success, result.message

The vector x is one leaf of shape (d,), which EGGROLL perturbs with full Gaussian noise: member i evaluates
xᵢ = x + σ sᵢ ε_{k(i)}. Every generation asks a population, evaluates it (point by point, or all N points as
one (N, d) array with batched=True), tells the strategy and updates the best point so far (`best.BestSoFar`).
The defaults (`default_settings`) anneal σ and the learning rate over the run's budget.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from . import _checks
from ._array_api import array_namespace, device, has_dtype, is_array_api_obj, to_numpy
from .best import BestSoFar
from .optim import adam
from .schedules import exponential
from .strategy import EGGROLL

__all__ = ["DECAY", "STOPS", "History", "OptimizeResult", "default_settings", "minimize"]

DECAY = 1e-4  # σ and the learning rate end the budget at DECAY times their start

# status -> message; the first two count as success.
STOPS = {
    "ftarget": "the best value reached ftarget={ftarget:g}",
    "stagnation": "the best value improved by no more than ftol={ftol:g} in patience={patience} generations",
    "callback": "the callback returned True",
    "maxiter": "maxiter={maxiter} generations done",
    "maxfev": "maxfev={maxfev} evaluations leave no room for another generation of {population_size} and the mean",
}
_SUCCESS = ("ftarget", "stagnation")
_OWN = ("population_size", "maximize", "seed")  # EGGROLL settings minimize takes as its own arguments
_OPTIONS = tuple(name for name in inspect.signature(EGGROLL).parameters if name not in _OWN)


class History(NamedTuple):
    """Per generation t: the mean raw fitness of the members and the best one (info's fitness_mean and
    fitness_best; NaN where no member was finite), as NumPy float64 arrays (nit,)."""

    fitness_mean: np.ndarray
    fitness_best: np.ndarray


class OptimizeResult(NamedTuple):
    """x: the best point evaluated (an array of x0's library, (d,)); fun: f(x) as a float; nit: generations;
    nfev: evaluations of fun (N per generation, 1 for the final mean); success, status (a key of `STOPS`, or
    "running" in a callback's intermediate result), message; history (`History`)."""

    x: Any
    fun: float
    nit: int
    nfev: int
    success: bool
    status: str
    message: str
    history: History


def default_settings(
    dimension: int, population_size: int | None = None, maxiter: int | None = None, maxfev: int | None = None
) -> dict:
    """The run's budget for a problem of `dimension` d, each value as given or by default:

    - population_size N = 2λ, λ = 4 + ⌊3 ln d⌋ (CMA-ES's population size; here, λ antithetic directions);
    - maxiter = 1000·⌈2d/N⌉ generations (about 2000·d evaluations);
    - horizon T = min(maxiter, ⌊(maxfev − 1)/N⌋): the generations the budget allows, over which σ and the
      learning rate decay (maxfev must leave room for one generation and the final evaluation of the mean);
    - patience = ⌈T/4⌉ generations for the stagnation rule (over T/4 the default σ falls tenfold)."""
    dimension = _checks.integer("dimension", dimension, 1)
    if population_size is None:
        population_size = 2 * (4 + math.floor(3 * math.log(dimension)))
    N = _checks.integer("population_size", population_size, 2)
    maxiter = 1000 * math.ceil(2 * dimension / N) if maxiter is None else _checks.integer("maxiter", maxiter, 1)
    horizon = maxiter
    if maxfev is not None:
        maxfev = _checks.integer("maxfev", maxfev, 1)
        if maxfev < N + 1:
            raise ValueError(
                f"maxfev={maxfev} leaves no room for one generation of population_size={N} and the final "
                f"evaluation of the mean; use at least {N + 1}, or a smaller population_size"
            )
        horizon = min(maxiter, (maxfev - 1) // N)
    return {"population_size": N, "maxiter": maxiter, "horizon": horizon, "patience": math.ceil(horizon / 4)}


def _vector(x0):
    """x0 as a finite 1-D float32 or float64 array of its own library (a sequence or an integer array becomes
    float64 where the library has it, else float32)."""
    if is_array_api_obj(x0):
        xp, dev = array_namespace(x0), device(x0)
        if not (xp.isdtype(x0.dtype, "real floating") or xp.isdtype(x0.dtype, ("integral", "bool"))):
            raise TypeError(f"x0 must hold real numbers; got dtype {x0.dtype}")
        if not xp.isdtype(x0.dtype, "real floating"):
            x0 = xp.astype(x0, xp.float64 if has_dtype(xp, "float64", dev) else xp.float32)
        elif x0.dtype not in (xp.float32, xp.float64):
            raise TypeError(f"x0 has dtype {x0.dtype}; use float32 or float64, for example xp.astype(x0, xp.float32)")
    else:
        if isinstance(x0, str | bytes | Mapping) or x0 is None:
            raise TypeError(f"x0 must be a 1-D array or a sequence of real numbers, not a {type(x0).__name__}")
        try:
            host = np.asarray(x0)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"x0 must be a 1-D array or a sequence of real numbers; {exc}") from None
        if host.dtype.kind not in "biuf":
            raise TypeError(f"x0 must be a 1-D array or a sequence of real numbers; got dtype {host.dtype}")
        x0 = host.astype(np.float64)
    if len(x0.shape) != 1 or x0.shape[0] == 0:
        raise ValueError(f"x0 has shape {tuple(x0.shape)}; it must be a non-empty 1-D vector (d,), e.g. x0.reshape(-1)")
    if not np.all(np.isfinite(to_numpy(x0))):
        raise ValueError("x0 holds NaN or infinite values; start from a finite point")
    return x0


def _optional(check, name: str, value, *bounds, **kwargs):
    return None if value is None else check(name, value, *bounds, **kwargs)


def _options(options, sigma0) -> dict:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"options={options!r} must be a mapping of EGGROLL settings, not a {type(options).__name__}")
    for key in options:
        if key in _OWN:
            raise ValueError(f"options sets {key!r}, which is an argument of minimize: pass {key}=... instead")
        if key not in _OPTIONS:
            raise ValueError(f"options has the unknown key {key!r}; the EGGROLL settings it takes are {_OPTIONS}")
    if "sigma" in options and sigma0 is not None:
        raise ValueError("sigma0 and options['sigma'] both set σ; pass one of them")
    return dict(options)


def _number(value, where: str) -> float:
    """One value of fun as a float: a real number or a 0-D real array of any library."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if is_array_api_obj(value) and value.shape == ():
        if array_namespace(value).isdtype(value.dtype, ("real floating", "integral")):
            return float(value)
    raise TypeError(f"fun must return one real number per point; {where} it returned {value!r}")


class _Problem(NamedTuple):
    """fun with its args, evaluated point by point or batched."""

    fun: Callable
    args: tuple
    batched: bool

    def population(self, pop):
        """F (N,) of every member: fun(X) of X = pop.vector("x") (N, d), or fun(X[i]) row by row."""
        X = pop.vector("x")
        if not self.batched:
            return [_number(self.fun(X[i, ...], *self.args), f"for member {i}") for i in range(X.shape[0])]
        values = self.fun(X, *self.args)
        shape = tuple(getattr(values, "shape", np.shape(values)))
        if shape != (X.shape[0],):
            raise ValueError(
                f"fun returned shape {shape} for X of shape {tuple(X.shape)}; with batched=True it must return "
                f"({X.shape[0]},), one value per row"
            )
        return values

    def point(self, x) -> float:
        """f(x) of one point x (d,)."""
        if not self.batched:
            return _number(self.fun(x, *self.args), "at the mean")
        values = self.fun(array_namespace(x).reshape(x, (1, x.shape[0])), *self.args)
        shape = tuple(getattr(values, "shape", np.shape(values)))
        if shape != (1,):
            raise ValueError(f"fun returned shape {shape} for X of shape (1, {x.shape[0]}); it must return (1,)")
        return _number(values[0], "at the mean")


class _Trace:
    """The run so far: each generation's fitness_mean and fitness_best, kept on the device until asked for,
    then read back in one transfer into a host buffer that grows by doubling (so a callback that asks every
    generation costs O(1) per generation, and the histories it received stay valid)."""

    def __init__(self):
        self.pending, self.size, self.host = [], 0, np.empty((2, 64), dtype=np.float64)

    def add(self, info: dict) -> None:
        self.pending.append((info["fitness_mean"], info["fitness_best"]))

    def history(self) -> History:
        if self.pending:
            xp = array_namespace(self.pending[0][0])
            new = to_numpy(xp.stack([xp.stack(pair) for pair in self.pending])).T
            size = self.size + new.shape[1]
            if size > self.host.shape[1]:
                grown = np.empty((2, max(2 * self.host.shape[1], size)), dtype=np.float64)
                grown[:, : self.size] = self.host[:, : self.size]
                self.host = grown
            self.host[:, self.size : size] = new
            self.size, self.pending = size, []
        return History(self.host[0, : self.size], self.host[1, : self.size])


def minimize(
    fun: Callable,
    x0,
    args: tuple = (),
    *,
    batched: bool = False,
    maximize: bool = False,
    sigma0: float | None = None,
    population_size: int | None = None,
    maxiter: int | None = None,
    maxfev: int | None = None,
    ftarget: float | None = None,
    ftol: float = 1e-12,
    patience: int | None = None,
    callback: Callable | None = None,
    seed: int = 0,
    options: Mapping | None = None,
) -> OptimizeResult:
    """Minimize fun(x, *args) over x ∈ R^d from x0 with EGGROLL (maximize=True: maximize it).

    fun(x, *args) returns a real number for one point x (d,) of x0's library; with batched=True,
    fun(X, *args) returns (N,) values for all members X (N, d) at once, one call per generation (the fast
    path). x0: a 1-D array of any array library, which is then the backend (NumPy, CuPy, JAX, PyTorch, ...),
    or a sequence of numbers (a NumPy float64 vector).

    Defaults for d = len(x0): population_size, maxiter and patience from `default_settings`; σ starts at
    sigma0 = 0.2·max(rms(x0), 1); the optimizer is Adam with learning rate αₜ = 2σₜ; both decay
    exponentially over the budget's T generations to DECAY = 1e-4 of their start, σₜ = sigma0·DECAY^(t/T);
    centered_rank shaping, antithetic pairs, and nan_policy="worst" (a NaN or infinite value counts as its
    generation's worst). `options` sets any other EGGROLL keyword (sigma, optimizer, shaping, antithetic,
    noise_reuse, group_size, noise, nan_policy, rank, policy) in place of these; `seed` seeds the noise.

    After each generation, the first of these that holds stops the run (`STOPS`): ftarget (the best value
    reached it); callback (called every generation with an `OptimizeResult` of the run so far, status
    "running", it returned True; False or None goes on); stagnation (the best improved by no more than
    ftol·max(1, |best|) over `patience` generations); maxiter generations; maxfev (one more generation and
    the final evaluation would pass it). success: stopped by ftarget or stagnation, with a finite fun.

    Then the final mean is evaluated once: x is the best point evaluated, the best member of any generation
    (`best.BestSoFar`) or the final mean, whichever has the better value (the member on a tie), and
    nfev = N·nit + 1.
    """
    fun = _checks.function("fun", fun)
    x0 = _vector(x0)
    if not isinstance(args, tuple):
        raise TypeError(f"args={args!r} must be a tuple of extra arguments of fun, not a {type(args).__name__}")
    problem = _Problem(fun, args, _checks.boolean("batched", batched))
    maximize = _checks.boolean("maximize", maximize)
    sigma0 = _optional(_checks.real, "sigma0", sigma0, 0, above=True)
    budget = default_settings(x0.shape[0], population_size, maxiter, maxfev)
    stops = {
        "ftarget": _optional(_checks.real, "ftarget", ftarget),
        "ftol": _checks.real("ftol", ftol, 0),
        "patience": budget["patience"] if patience is None else _checks.integer("patience", patience, 1),
        "maxiter": budget["maxiter"],
        "maxfev": maxfev,
        "population_size": budget["population_size"],
    }
    callback = _optional(_checks.function, "callback", callback)
    es = _strategy(x0, maximize, seed, sigma0, budget, _options(options, sigma0))
    return _run(es, es.init({"x": x0}), problem, callback, stops)


def _strategy(x0, maximize: bool, seed: int, sigma0: float | None, budget: dict, settings: dict) -> EGGROLL:
    """The EGGROLL of the run: the documented defaults, then `settings` (the options) in their place."""
    if sigma0 is None:
        sigma0 = 0.2 * max(math.sqrt(float(array_namespace(x0).mean(x0 * x0))), 1.0)
    sigma = exponential(sigma0, DECAY, steps=budget["horizon"])
    learning_rate = exponential(2 * sigma0, DECAY, steps=budget["horizon"])
    settings = {"sigma": sigma, "optimizer": adam(learning_rate), "nan_policy": "worst", **settings}
    return EGGROLL(population_size=budget["population_size"], maximize=maximize, seed=seed, **settings)


def _run(es: EGGROLL, state, problem: _Problem, callback, stops: dict) -> OptimizeResult:
    """Generations until a stopping rule holds, then the final mean's evaluation and the result."""
    N, best, trace = es.population_size, BestSoFar(es), _Trace()
    sign = -1.0 if es.maximize else 1.0  # sign·f is minimized
    reference, since, nit, status = math.inf, 0, 0, None
    while status is None:
        pop = es.ask(state)
        state, info = es.tell(state, pop, problem.population(pop))
        best.update(pop, info)
        trace.add(info)
        nit += 1
        value = math.inf if best.fitness is None else sign * best.fitness
        reference, since = (value, 0) if _improved(value, reference, stops["ftol"]) else (reference, since + 1)
        asked = callback is not None and _asks_to_stop(callback(_intermediate(best, state, nit, N, trace)))
        if stops["ftarget"] is not None and value <= sign * stops["ftarget"]:
            status = "ftarget"
        elif asked:
            status = "callback"
        elif since >= stops["patience"]:
            status = "stagnation"
        elif nit >= stops["maxiter"]:
            status = "maxiter"
        elif stops["maxfev"] is not None and N * (nit + 1) + 1 > stops["maxfev"]:
            status = "maxfev"
    x = state.params["x"]
    fun = problem.point(x)
    if best.fitness is not None and not sign * fun < sign * best.fitness:
        x, fun = best.params["x"], best.fitness
    return OptimizeResult(
        x=x,
        fun=fun,
        nit=nit,
        nfev=N * nit + 1,
        success=status in _SUCCESS and math.isfinite(fun),
        status=status,
        message=STOPS[status].format(**stops),
        history=trace.history(),
    )


def _improved(value: float, reference: float, ftol: float) -> bool:
    """Whether value (lower is better) beats reference by more than ftol·max(1, |reference|); the first finite
    value beats the initial reference ∞."""
    return value < reference and (math.isinf(reference) or reference - value > ftol * max(1.0, abs(reference)))


def _asks_to_stop(answer) -> bool:
    if answer is None or isinstance(answer, bool | np.bool_):
        return bool(answer)
    raise TypeError(f"callback must return True (to stop), False or None; it returned {answer!r}")


def _intermediate(best: BestSoFar, state, nit: int, N: int, trace: _Trace) -> OptimizeResult:
    """The result so far, for the callback: the best point evaluated (the mean before any finite value)."""
    x, fun = (state.params["x"], math.nan) if best.fitness is None else (best.params["x"], best.fitness)
    return OptimizeResult(x, fun, nit, N * nit, False, "running", f"generation {nit}", trace.history())
