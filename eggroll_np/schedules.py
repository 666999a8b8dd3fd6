"""Schedules: functions of the generation t (a Python int) returning a Python float.

A schedule serves any hyperparameter that changes over a run (learning rate, σ). A float is the constant
schedule; any callable t → float is a schedule. The shipped ones are small frozen dataclasses, so they
print their settings and pickle (a process pool or a Ray worker can receive a strategy that uses them).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Schedule", "as_schedule", "constant", "cosine", "exponential", "linear"]

Schedule = Callable[[int], float]


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")


@dataclass(frozen=True)
class constant:
    """v(t) = value."""

    value: float

    def __call__(self, t: int) -> float:
        return float(self.value)


@dataclass(frozen=True)
class linear:
    """v(t) = init + (end − init)·min(t, steps)/steps."""

    init: float
    end: float
    steps: int

    def __post_init__(self):
        _check_steps(self.steps)

    def __call__(self, t: int) -> float:
        return self.init + (self.end - self.init) * min(t, self.steps) / self.steps


@dataclass(frozen=True)
class cosine:
    """v(t) = init·(a + (1 − a)·½(1 + cos(π·min(t, steps)/steps))), a = final_fraction."""

    init: float
    steps: int
    final_fraction: float = 0.0

    def __post_init__(self):
        _check_steps(self.steps)

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
        _check_steps(self.steps)
        if self.decay <= 0:
            raise ValueError(f"decay={self.decay!r} must be positive")

    def __call__(self, t: int) -> float:
        return max(self.init * self.decay ** (t / self.steps), self.floor)


def as_schedule(value: float | Schedule, what: str) -> Schedule:
    """A schedule from a float (constant) or a callable of the generation; `what` names it in errors."""
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a float or a callable of the generation, got {type(value).__name__}")
    return constant(value)
