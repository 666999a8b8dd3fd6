"""Schedules: their formulas, their argument checks, and the check of the value they give at a generation."""

import dataclasses
import math
import pickle
import re

import numpy as np
import pytest

from eggroll_np import schedules

# ---- formulas -------------------------------------------------------------------------------------------


def test_constant_is_its_value_at_every_generation():
    assert [schedules.constant(0.3)(t) for t in (0, 1, 100)] == [0.3, 0.3, 0.3]


def test_linear_moves_from_init_to_end_in_steps_then_stays():
    down = schedules.linear(1.0, 0.0, 4)
    assert [down(t) for t in (0, 1, 2, 4, 9)] == [1.0, 0.75, 0.5, 0.0, 0.0]
    up = schedules.linear(0.2, 1.0, 8)
    assert up(2) == pytest.approx(0.4) and up(8) == 1.0 and up(20) == 1.0


def test_cosine_falls_from_init_to_its_final_fraction_then_stays():
    cos = schedules.cosine(2.0, 10, final_fraction=0.1)
    assert cos(0) == pytest.approx(2.0)
    assert cos(3) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0.3 * math.pi))))
    assert cos(5) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert cos(10) == pytest.approx(0.2) and cos(50) == pytest.approx(0.2)
    assert schedules.cosine(1.0, 4)(4) == pytest.approx(0.0, abs=1e-15)


def test_exponential_decays_continuously_down_to_its_floor():
    exp = schedules.exponential(1.0, 0.5, steps=2, floor=0.1)
    assert exp(0) == 1.0 and exp(2) == 0.5 and exp(3) == pytest.approx(0.5 * math.sqrt(0.5))
    assert exp(100) == 0.1
    assert schedules.exponential(3.0, 0.9)(2) == pytest.approx(2.43)


# ---- constructor arguments ------------------------------------------------------------------------------

GOOD = {
    schedules.constant: {"value": 0.1},
    schedules.linear: {"init": 0.1, "end": 0.01, "steps": 10},
    schedules.cosine: {"init": 0.1, "steps": 10, "final_fraction": 0.05},
    schedules.exponential: {"init": 0.1, "decay": 0.9, "steps": 2, "floor": 0.01},
}
REAL_FIELDS = [(cls, field) for cls, kwargs in GOOD.items() for field in kwargs if field != "steps"]
STEPS_FIELDS = [cls for cls, kwargs in GOOD.items() if "steps" in kwargs]
WRONG_TYPES = ["0.1", True, np.bool_(False), None, [0.1]]


def _refused(cls, field, value, error, shown=None):
    """cls with `field` set to `value` raises `error` saying `field=shown must be` (shown: the value as checked)."""
    with pytest.raises(error, match=re.escape(f"{field}={value if shown is None else shown!r} must be ")):
        cls(**{**GOOD[cls], field: value})


@pytest.mark.parametrize(("cls", "field"), REAL_FIELDS, ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, np.float32(-0.5)])
def test_a_setting_that_is_not_a_finite_number_in_range_is_a_value_error(cls, field, value):
    _refused(cls, field, value, ValueError, shown=float(value))


@pytest.mark.parametrize(("cls", "field"), REAL_FIELDS, ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
def test_a_setting_that_is_not_a_number_is_a_type_error(cls, field, value):
    _refused(cls, field, value, TypeError)


@pytest.mark.parametrize("cls", STEPS_FIELDS, ids=lambda cls: cls.__name__)
def test_steps_must_be_an_integer_of_at_least_one(cls):
    for value in (0, -3):
        _refused(cls, "steps", value, ValueError)
    for value in (2.0, "2", True, None):
        _refused(cls, "steps", value, TypeError)


def test_decay_must_be_positive_and_final_fraction_at_most_one():
    _refused(schedules.exponential, "decay", 0.0, ValueError)
    _refused(schedules.cosine, "final_fraction", 1.5, ValueError)
    assert schedules.cosine(0.1, 10, final_fraction=1.0)(5) == 0.1
    assert schedules.constant(0.0)(3) == 0.0


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers():
    lin = schedules.linear(np.float32(0.5), np.float64(0.25), np.int64(4))
    assert lin == schedules.linear(0.5, 0.25, 4)
    assert type(lin.init) is float and type(lin.end) is float and type(lin.steps) is int
    exp = schedules.exponential(np.float64(1.0), np.float32(0.5), np.int32(2), np.float16(0.0))
    assert exp == schedules.exponential(1.0, 0.5, 2, 0.0) and type(exp.decay) is float
    assert type(schedules.constant(np.float32(0.5))(0)) is float


@pytest.mark.parametrize("schedule", [cls(**kwargs) for cls, kwargs in GOOD.items()], ids=repr)
def test_schedules_pickle_print_their_settings_and_stay_frozen(schedule):
    again = pickle.loads(pickle.dumps(schedule))
    assert again == schedule and again is not schedule and again(7) == schedule(7)
    for field, value in dataclasses.asdict(schedule).items():
        assert f"{field}={value!r}" in repr(schedule)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(schedule, dataclasses.fields(schedule)[0].name, 1.0)


# ---- as_schedule and value_at ---------------------------------------------------------------------------


def test_as_schedule_keeps_a_callable_and_makes_a_number_constant():
    def custom(t):
        return 1.0 / (t + 1)

    assert schedules.as_schedule(custom, "sigma") is custom
    assert schedules.as_schedule(0.5, "sigma") == schedules.constant(0.5)
    assert schedules.as_schedule(np.float32(0.5), "sigma") == schedules.constant(0.5)
    assert schedules.as_schedule(np.int64(2), "learning rate", positive=False) == schedules.constant(2.0)
    assert schedules.as_schedule(0, "learning rate", positive=False) == schedules.constant(0.0)


@pytest.mark.parametrize("value", ["0.1", True, np.bool_(True), None, [0.1]], ids=repr)
def test_as_schedule_refuses_what_is_neither_a_number_nor_callable_naming_it(value):
    expected = (
        f"sigma={value!r} must be a finite number > 0 or a schedule (a callable of the generation), "
        f"not a {type(value).__name__}"
    )
    with pytest.raises(TypeError, match=re.escape(expected)):
        schedules.as_schedule(value, "sigma")


def test_as_schedule_checks_a_number_as_the_value_of_every_generation():
    sigma_message = "sigma=0.0 must be a finite number > 0 or a schedule (a callable of the generation)"
    for value in (0.0, -0.1, math.inf, math.nan):
        with pytest.raises(ValueError, match=re.escape(sigma_message.replace("0.0", repr(value)))):
            schedules.as_schedule(value, "sigma")
    rate_message = "learning rate=nan must be a finite number ≥ 0 or a schedule"
    with pytest.raises(ValueError, match=re.escape(rate_message)):
        schedules.as_schedule(math.nan, "learning rate", positive=False)


def test_value_at_gives_the_checked_value_of_a_generation():
    sigma = schedules.linear(0.1, 0.0, 4)
    assert schedules.value_at(sigma, 2, "sigma", positive=True) == pytest.approx(0.05)
    assert type(schedules.value_at(lambda t: np.float32(0.25), 0, "sigma", positive=True)) is float
    assert schedules.value_at(sigma, 4, "learning rate", positive=False) == 0.0
    message = "sigma at generation 4 is 0.0; it must be a positive finite number"
    with pytest.raises(ValueError, match=re.escape(message)):
        schedules.value_at(sigma, 4, "sigma", positive=True)


def test_value_at_names_the_hyperparameter_and_the_generation_of_a_bad_value():
    def turning(bad):
        return lambda t: 0.1 if t < 3 else bad

    assert schedules.value_at(turning(math.nan), 2, "learning rate", positive=False) == 0.1
    for bad in (math.nan, -math.inf, -0.5):
        with pytest.raises(ValueError, match=re.escape(f"learning rate at generation 3 is {bad!r}; it must be a")):
            schedules.value_at(turning(bad), 3, "learning rate", positive=False)
    for bad in ("0.1", None, True, np.bool_(True)):
        with pytest.raises(TypeError, match=re.escape(f"sigma at generation 3 is {bad!r}; the schedule must return")):
            schedules.value_at(turning(bad), 3, "sigma", positive=True)
