"""Schedules: functions of the generation t (a Python int) returning a Python float.

A schedule serves any hyperparameter that changes over a run (learning rate, σ). A number is the constant
schedule; any callable t → float is a schedule. The shipped ones are small frozen dataclasses, so they
print their settings and pickle (a process pool or a Ray worker can receive a strategy that uses them).
Their constructors check their settings with the wording of `_checks` and store them as plain floats and
ints; `value_at` checks what a schedule returns at each generation.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _checks

__all__ = ["Schedule", "as_schedule", "constant", "cosine", "exponential", "linear", "value_at"]

Schedule = Callable[[int], float]


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
        return self.init + (self.end - self.init) * min(t, self.steps) / self.steps


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
        return self.init * (a + (1.0 - a) * 0.5 * (1.0 + math.cos(math.pi * min(t, self.steps) / self.steps)))


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
        return max(self.init * self.decay ** (t / self.steps), self.floor)


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
    names `what` and the generation."""
    return _checks.scheduled(what, schedule(generation), generation, positive=positive)
