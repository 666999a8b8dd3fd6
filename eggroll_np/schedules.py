"""Schedules: functions of the generation t (a Python int) returning a Python float; under jax.jit or
lax.scan, of a traced integer t, returning a traced float (the shipped schedules compute with the array's
namespace there, and `value_at` leaves a traced value unchecked: it has no value to read).

A schedule serves any hyperparameter that changes over a run (learning rate, σ). A number is the constant
schedule; any callable t → float is a schedule. The shipped ones are small frozen dataclasses, so they
print their settings and pickle (a process pool or a Ray worker can receive a strategy that uses them).
Their constructors check their settings with the wording of `_checks` and store them as plain floats and
ints; `value_at` checks what a schedule returns at each generation.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _checks
from ._array_api import array_namespace, is_traced

__all__ = ["Schedule", "as_schedule", "constant", "cosine", "exponential", "linear", "value_at"]

Schedule = Callable[[int], float]


def _minimum(t, bound: int):
    """min(t, bound), for a Python t or a traced one."""
    return array_namespace(t).minimum(t, bound) if is_traced(t) else min(t, bound)


def _store(schedule, **checked) -> None:
    """Replace the fields of a frozen dataclass by their checked values."""
    for name, value in checked.items():
        object.__setattr__(schedule, name, value)


@dataclass(frozen=True)
class constant:
    """v(t) = value."""

    value: float

    def __post_init__(self):
        _store(self, value=_checks.real("value", self.value, 0))

    def __call__(self, t: int) -> float:
        return self.value


@dataclass(frozen=True)
class linear:
    """v(t) = init + (end − init)·min(t, steps)/steps."""

    init: float
    end: float
    steps: int

    def __post_init__(self):
        _store(
            self,
            init=_checks.real("init", self.init, 0),
            end=_checks.real("end", self.end, 0),
            steps=_checks.integer("steps", self.steps, 1),
        )

    def __call__(self, t: int) -> float:
        return self.init + (self.end - self.init) * _minimum(t, self.steps) / self.steps


@dataclass(frozen=True)
class cosine:
    """v(t) = init·(a + (1 − a)·½(1 + cos(π·min(t, steps)/steps))), a = final_fraction."""

    init: float
    steps: int
    final_fraction: float = 0.0

    def __post_init__(self):
        _store(
            self,
            init=_checks.real("init", self.init, 0),
            steps=_checks.integer("steps", self.steps, 1),
            final_fraction=_checks.real("final_fraction", self.final_fraction, 0, 1),
        )

    def __call__(self, t: int) -> float:
        a = self.final_fraction
        angle = math.pi * _minimum(t, self.steps) / self.steps
        cos = array_namespace(t).cos(angle) if is_traced(t) else math.cos(angle)
        return self.init * (a + (1.0 - a) * 0.5 * (1.0 + cos))


@dataclass(frozen=True)
class exponential:
    """v(t) = max(init·decay^(t/steps), floor)."""

    init: float
    decay: float
    steps: int = 1
    floor: float = 0.0

    def __post_init__(self):
        _store(
            self,
            init=_checks.real("init", self.init, 0),
            decay=_checks.real("decay", self.decay, 0, above=True),
            steps=_checks.integer("steps", self.steps, 1),
            floor=_checks.real("floor", self.floor, 0),
        )

    def __call__(self, t: int) -> float:
        value = self.init * self.decay ** (t / self.steps)
        return array_namespace(t).maximum(value, self.floor) if is_traced(t) else max(value, self.floor)


def as_schedule(value: float | Schedule, what: str, *, positive: bool = True) -> Schedule:
    """A schedule from a callable of the generation (returned as is) or a Python or NumPy real number v
    (constant(v), with v > 0 if `positive`, else v ≥ 0); `what` names the hyperparameter in errors."""
    if callable(value):
        return value
    expected = "a finite number" + (" > 0" if positive else " ≥ 0") + " or a schedule (a callable of the generation)"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what}={value!r} must be {expected}, not a {type(value).__name__}")
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{what}={value!r} must be {expected}")
    return constant(float(value))


def value_at(schedule: Schedule, generation: int, what: str, *, positive: bool) -> float:
    """v(t) for t = generation, as a float, if it is finite and > 0 (`positive`) or ≥ 0; otherwise the error
    names `what` and the generation. A traced value (inside jax.jit) is returned unchecked; a concrete 0-d
    integer array generation (a state that came out of jax.jit) is read as its int."""
    if not is_traced(generation):
        generation = operator.index(generation)
    value = schedule(generation)
    return value if is_traced(value) else _checks.scheduled(what, value, generation, positive=positive)
