"""Argument checks with one wording, used by every public constructor and function of the package.

A wrong type raises TypeError, a wrong value ValueError, and both say `name=value must be <what>`, the
TypeError adding the type that was given:

    population_size=8.0 must be an integer ≥ 2, not a float
    population_size=1 must be an integer ≥ 2

Python and NumPy scalars are accepted alike (`seed=np.int64(3)`, `sigma=np.float32(0.1)`); bools are never
numbers, and strings never bools. Each check returns the value as a plain Python int, float or bool.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["boolean", "choice", "function", "integer", "real", "scheduled"]


def _type_error(name: str, value, expected: str) -> TypeError:
    return TypeError(f"{name}={value!r} must be {expected}, not a {type(value).__name__}")


def _show(bound) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _bounds(minimum, maximum, low: str, high: str) -> str:
    """' ≥ 2', ' in [0, 1)', ' > 0' and the like."""
    if minimum is not None and maximum is not None:
        left = "[" if low == "≥" else "("
        right = "]" if high == "≤" else ")"
        return f" in {left}{_show(minimum)}, {_show(maximum)}{right}"
    if minimum is not None:
        return f" {low} {_show(minimum)}"
    if maximum is not None:
        return f" {high} {_show(maximum)}"
    return ""


def integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int, if it is a Python or NumPy integer (not a bool) with minimum ≤ value ≤ maximum."""
    expected = "an integer" + _bounds(minimum, maximum, "≥", "≤")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise _type_error(name, value, expected)
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name}={value!r} must be {expected}")
    return value


def real(
    name: str,
    value,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: bool = False,
    below: bool = False,
) -> float:
    """`value` as a float, if it is a finite Python or NumPy real number (not a bool) with minimum ≤ value ≤
    maximum (minimum < value with `above`, value < maximum with `below`)."""
    expected = "a finite number" + _bounds(minimum, maximum, ">" if above else "≥", "<" if below else "≤")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise _type_error(name, value, expected)
    value = float(value)
    too_low = minimum is not None and (value <= minimum if above else value < minimum)
    too_high = maximum is not None and (value >= maximum if below else value > maximum)
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(f"{name}={value!r} must be {expected}")
    return value


def boolean(name: str, value) -> bool:
    """`value` as a bool, if it is True or False (Python or NumPy); strings and numbers are refused."""
    if not isinstance(value, bool | np.bool_):
        raise _type_error(name, value, "True or False")
    return bool(value)


def choice(name: str, value, choices: Iterable[str]) -> str:
    """`value`, if it is one of the strings `choices`."""
    choices = tuple(choices)
    expected = "one of " + ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise _type_error(name, value, expected)
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be {expected}")
    return value


def function(name: str, value) -> Callable:
    """`value`, if it is callable."""
    if not callable(value):
        raise _type_error(name, value, "callable")
    return value


def scheduled(what: str, value, generation: int, *, positive: bool) -> float:
    """The value a schedule gave for `generation`, as a float, if it is a finite real number that is > 0
    (`positive`) or ≥ 0; otherwise the error names the hyperparameter and the generation."""
    expected = "a positive finite number" if positive else "a finite number ≥ 0"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} at generation {generation} is {value!r}; the schedule must return {expected}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{what} at generation {generation} is {value!r}; it must be {expected}")
    return value
