"""Schedules: functions of the generation t (a Python int) returning a Python float.

A schedule serves any hyperparameter that changes over a run (learning rate, σ). A float is the constant
schedule; any callable t → float is a schedule.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

__all__ = ["Schedule", "as_schedule", "constant", "cosine", "exponential", "linear"]

Schedule = Callable[[int], float]


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")


def constant(value: float) -> Schedule:
    """v(t) = value."""
    value = float(value)
    return lambda t: value


def linear(init: float, end: float, steps: int) -> Schedule:
    """v(t) = init + (end − init)·min(t, steps)/steps."""
    _check_steps(steps)
    return lambda t: init + (end - init) * min(t, steps) / steps


def cosine(init: float, steps: int, final_fraction: float = 0.0) -> Schedule:
    """v(t) = init·(a + (1 − a)·½(1 + cos(π·min(t, steps)/steps))), a = final_fraction."""
    _check_steps(steps)
    return lambda t: (
        init * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * min(t, steps) / steps)))
    )


def exponential(init: float, decay: float, steps: int = 1, floor: float = 0.0) -> Schedule:
    """v(t) = max(init·decay^(t/steps), floor)."""
    _check_steps(steps)
    if decay <= 0:
        raise ValueError(f"decay={decay!r} must be positive")
    return lambda t: max(init * decay ** (t / steps), floor)


def as_schedule(value: float | Schedule, what: str) -> Schedule:
    """A schedule from a float (constant) or a callable of the generation; `what` names it in errors."""
    if callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a float or a callable of the generation, got {type(value).__name__}")
    return constant(value)
