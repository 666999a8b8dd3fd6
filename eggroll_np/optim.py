"""Optimizers as optax-style pure (init, update) pairs with NamedTuple state, backend-neutral.

The strategy hands each optimizer the ES gradient g (an ascent direction) and adds the returned step:
θ ← θ + step. So every optimizer here climbs: plain SGD gives step = α·g.

    opt = egg.optim.adam(1e-2)
    opt_state = opt.init(params)
    step, opt_state = opt.update(grads, opt_state, generation, params)

Learning rates are numbers or schedules (callables of the generation, see `schedules`); every update checks
the rate of its generation (finite, ≥ 0) before it computes anything. Hyperparameters stay Python floats, so
an update never reads anything back from the device. The pairs are partials of module functions, so an
optimizer pickles (for process pools and Ray workers) and prints as the factory call that built it,
`adam(learning_rate=0.01)`. `OPTIMIZERS` maps each name to its factory and
`STATE_TYPES` lists every NamedTuple an optimizer state may hold: the command line and the checkpoints read
them.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from . import _checks
from ._array_api import array_namespace, is_floating_dtype, is_jax_array, is_traced
from .schedules import Schedule, constant, value_at

__all__ = [
    "OPTIMIZERS",
    "STATE_TYPES",
    "AdamState",
    "IntegerStepState",
    "Optimizer",
    "SGDState",
    "adam",
    "adamw",
    "as_optimizer",
    "from_optax",
    "integer_step",
    "sgd",
]

Params = dict


class Optimizer(NamedTuple):
    """init(params) → state; update(grads, state, generation, params) → (step, state)."""

    init: Callable[[Params], Any]
    update: Callable[[Params, Any, int, Params], tuple[Params, Any]]

    def __repr__(self) -> str:
        """The factory call that built it, with the arguments that differ from the factory's defaults
        (`adam(learning_rate=0.01)`, `sgd(learning_rate=cosine(init=0.1, steps=100, final_fraction=0.0),
        momentum=0.9)`); an Optimizer built from other functions shows their names."""
        call = _factory_call(self.update)
        return call or f"Optimizer(init={_name(self.init)}, update={_name(self.update)})"


class SGDState(NamedTuple):
    """Velocity v per leaf (empty without momentum)."""

    velocity: Params


class AdamState(NamedTuple):
    """Number of updates taken, first moment μ and second moment ν per leaf."""

    count: int
    mu: Params
    nu: Params


def _zeros_like(params: Params) -> Params:
    return {name: array_namespace(p).zeros_like(p) for name, p in params.items()}


def _check_float_leaves(params: Params, optimizer: str) -> None:
    for name, p in params.items():
        if not is_floating_dtype(array_namespace(p), p.dtype):
            raise TypeError(
                f"{optimizer} updates float leaves; leaf {name!r} is {p.dtype}: int8 leaves take "
                "optimizer=egg.optim.integer_step(...)"
            )


def _learning_rate(learning_rate: float | Schedule) -> Schedule:
    """A callable as is; a number α (finite, ≥ 0) as constant(α)."""
    if callable(learning_rate):
        return learning_rate
    try:
        return constant(_checks.real("learning_rate", learning_rate, 0))
    except ValueError as error:
        raise ValueError(
            f"{error}, or a schedule; the step always climbs the shaped fitness, so pass maximize=False to the "
            "strategy to minimize"
        ) from None


def _rate(lr: Schedule, generation: int) -> float:
    """α_t, checked: a finite number ≥ 0."""
    return value_at(lr, generation, "learning rate", positive=False)


def _sgd_init(params: Params, momentum: float) -> SGDState:
    _check_float_leaves(params, "sgd")
    return SGDState(velocity=_zeros_like(params) if momentum else {})


def _sgd_update(grads: Params, state: SGDState, generation: int, params=None, *, lr, momentum, nesterov):
    alpha = _rate(lr, generation)
    if not momentum:
        return {name: alpha * g for name, g in grads.items()}, state
    velocity = {name: momentum * state.velocity[name] + g for name, g in grads.items()}
    if nesterov:
        step = {name: alpha * (g + momentum * velocity[name]) for name, g in grads.items()}
    else:
        step = {name: alpha * v for name, v in velocity.items()}
    return step, SGDState(velocity=velocity)


def sgd(learning_rate: float | Schedule, momentum: float = 0.0, nesterov: bool = False) -> Optimizer:
    """SGD ascent. Without momentum: step = α·g. With momentum μ: v ← μ v + g, step = α·v, or with
    Nesterov step = α·(g + μ v)."""
    lr = _learning_rate(learning_rate)
    momentum = _checks.real("momentum", momentum, 0, 1, below=True)
    nesterov = _checks.boolean("nesterov", nesterov)
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov=True needs momentum > 0")
    return Optimizer(
        partial(_sgd_init, momentum=momentum), partial(_sgd_update, lr=lr, momentum=momentum, nesterov=nesterov)
    )


def _adam_init(params: Params) -> AdamState:
    _check_float_leaves(params, "adam")
    return AdamState(count=0, mu=_zeros_like(params), nu=_zeros_like(params))


def _adam_update(grads: Params, state: AdamState, generation: int, params=None, *, lr, b1, b2, eps, weight_decay):
    alpha = _rate(lr, generation)
    if weight_decay and params is None:
        raise ValueError("adamw's update needs the current params for its weight decay")
    count = state.count + 1
    mu_correction = 1.0 / (1.0 - b1**count)
    nu_correction = 1.0 / (1.0 - b2**count)
    mu, nu, step = {}, {}, {}
    for name, g in grads.items():
        xp = array_namespace(g)
        mu[name] = b1 * state.mu[name] + (1.0 - b1) * g
        nu[name] = b2 * state.nu[name] + (1.0 - b2) * (g * g)
        direction = (mu[name] * mu_correction) / (xp.sqrt(nu[name] * nu_correction) + eps)
        if weight_decay:
            direction = direction - weight_decay * params[name]
        step[name] = alpha * direction
    return step, AdamState(count=count, mu=mu, nu=nu)


def _adam(learning_rate, b1: float, b2: float, eps: float, weight_decay: float) -> Optimizer:
    update = partial(
        _adam_update,
        lr=_learning_rate(learning_rate),
        b1=_checks.real("b1", b1, 0, 1, below=True),
        b2=_checks.real("b2", b2, 0, 1, below=True),
        eps=_checks.real("eps", eps, 0, above=True),
        weight_decay=_checks.real("weight_decay", weight_decay, 0),
    )
    return Optimizer(_adam_init, update)


def adam(learning_rate: float | Schedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam ascent: μ ← b₁μ + (1−b₁)g, ν ← b₂ν + (1−b₂)g², step = α·μ̂/(√ν̂ + eps), with the bias
    corrections μ̂ = μ/(1−b₁ᵗ), ν̂ = ν/(1−b₂ᵗ)."""
    return _adam(learning_rate, b1, b2, eps, 0.0)


def adamw(
    learning_rate: float | Schedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> Optimizer:
    """Adam with decoupled weight decay λ: step = α·(μ̂/(√ν̂ + eps) − λθ)."""
    return _adam(learning_rate, b1, b2, eps, weight_decay)


class IntegerStepState(NamedTuple):
    """The thresholded integer update keeps no state."""


def _integer_init(params: Params) -> IntegerStepState:
    for name, p in params.items():
        if p.dtype != array_namespace(p).int8:
            raise TypeError(f"integer_step updates int8 leaves; leaf {name!r} is {p.dtype}: use adam or sgd for it")
    return IntegerStepState()


def _integer_update(grads: Params, state: IntegerStepState, generation: int, params=None, *, fraction):
    from .integer import threshold_step

    if params is None:
        raise ValueError("integer_step's update needs the current params (their saturation at ±127)")
    alpha = value_at(fraction, generation, "integer_step fraction", positive=True)
    if is_traced(alpha):
        raise ValueError(
            "integer_step's fraction α must be a number under jax.jit or lax.scan, not a schedule: its float32 value "
            "there could round ⌈α · size⌉ otherwise than the eager float64 one, and the run would no longer be "
            "bit-identical; pass a constant fraction, or run a scheduled run eagerly"
        )
    if alpha > 1:
        raise ValueError(f"integer_step fraction at generation {generation} is {alpha!r}; it must be in (0, 1]")
    step = {name: threshold_step(array_namespace(g), g, params[name], alpha) for name, g in grads.items()}
    return step, state


def integer_step(fraction: float | Schedule = 0.01) -> Optimizer:
    """The update of int8 leaves (`integer`): with the integer estimate E = Σₖ wₖ Aₖ Bₖᵀ, move the weights
    whose |E| is among the largest `fraction` α of each leaf (ties included) one unit towards sign(E),
    saturating at ±127. α in (0, 1], a number or a schedule (decaying over training, say); no state."""
    if not callable(fraction):
        fraction = constant(_checks.real("fraction", fraction, 0, 1, above=True))
    return Optimizer(_integer_init, partial(_integer_update, fraction=fraction))


def _check_jax_leaves(params: Params) -> None:
    for name, p in params.items():
        if not is_jax_array(p):
            raise TypeError(
                f"from_optax runs optax on JAX leaves only; leaf {name!r} is a {type(p).__name__}: make the params "
                "jax.numpy arrays, or use this package's own optimizers (egg.optim.adam, sgd, adamw)"
            )


def _optax_init(params: Params, *, transformation):
    _check_jax_leaves(params)
    return transformation.init(params)


def _optax_update(grads: Params, state, generation: int, params=None, *, transformation):
    descent = {name: -g for name, g in grads.items()}
    updates, state = transformation.update(descent, state, params)
    return dict(updates), state


def from_optax(transformation) -> Optimizer:
    """An optax GradientTransformation as an Optimizer (JAX leaves only). This package's steps climb: tell adds
    the step to θ, and g estimates the ascent direction of the shaped fitness (already turned for
    minimization). optax transformations descend, so they are given −g and their updates are the step:
    optax.sgd(η) gives θ + η g and optax.adam(η) the same step as `adam(η)`. The optax state is the run's
    optimizer state (`state.opt_state`); checkpoints save only this package's own optimizer states."""
    if isinstance(transformation, Optimizer) or not (
        callable(getattr(transformation, "init", None)) and callable(getattr(transformation, "update", None))
    ):
        raise TypeError(
            "from_optax needs an optax GradientTransformation (with init and update), "
            f"got {type(transformation).__name__}"
        )
    return Optimizer(
        partial(_optax_init, transformation=transformation), partial(_optax_update, transformation=transformation)
    )


OPTIMIZERS = {"adam": adam, "adamw": adamw, "sgd": sgd, "integer": integer_step}
STATE_TYPES = (SGDState, AdamState, IntegerStepState)


# The factory behind each update function (adam's with weight decay is adamw's), and the factory's names of the
# keywords the update functions take under shorter ones.
_FACTORIES = {_sgd_update: sgd, _adam_update: adam, _integer_update: integer_step, _optax_update: from_optax}
_ARGUMENT_NAMES = {"lr": "learning_rate"}


def _name(function) -> str:
    return getattr(function, "__qualname__", None) or repr(function)


def _argument_text(value) -> str:
    """A hyperparameter as written in the call: a constant schedule as its number."""
    return repr(value.value if isinstance(value, constant) else value)


def _factory_call(update) -> str | None:
    """`factory(name=value, ...)` of the factory of this module whose partial `update` is, showing the arguments
    whose text differs from the factory's default; None for any other update function."""
    if not isinstance(update, partial) or update.func not in _FACTORIES:
        return None
    factory = _FACTORIES[update.func]
    arguments = {_ARGUMENT_NAMES.get(name, name): value for name, value in update.keywords.items()}
    if factory is adam and arguments["weight_decay"]:
        factory = adamw
    parameters = inspect.signature(factory).parameters
    shown = [
        f"{name}={_argument_text(value)}"
        for name, value in arguments.items()
        if name in parameters
        and (
            parameters[name].default is inspect.Parameter.empty
            or _argument_text(value) != _argument_text(parameters[name].default)
        )
    ]
    return f"{factory.__name__}({', '.join(shown)})"


def as_optimizer(optimizer: Optimizer | float | Schedule) -> Optimizer:
    """An Optimizer as given, or plain SGD when given a learning rate (a number or a schedule)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    looks_like_optax = hasattr(optimizer, "init") and hasattr(optimizer, "update")
    if not looks_like_optax and (callable(optimizer) or isinstance(optimizer, numbers.Real)):
        return sgd(optimizer)
    message = (
        f"optimizer={optimizer!r} must be an eggroll_np.optim.Optimizer, a learning rate (number) or a schedule, "
        f"not a {type(optimizer).__name__}"
    )
    if looks_like_optax:
        message += "; it looks like an optax GradientTransformation: wrap it as egg.optim.from_optax(transformation)"
    raise TypeError(message)
