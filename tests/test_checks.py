"""Every public constructor and function refuses a wrong type with TypeError and a wrong value with
ValueError, and the message names the argument (the wording of `eggroll_np._checks`)."""

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _checks
from eggroll_np.distributed import LocalEvaluator, ProcessPoolEvaluator, per_member

_ES = egg.EGGROLL(population_size=4)
_STATE = _ES.init({"w": np.zeros((2, 2), np.float32)})
_POP = _ES.ask(_STATE)


def _eggroll(**kwargs):
    return lambda: egg.EGGROLL(**kwargs)


# (call, expected error, the argument the message must name as "name=")
CASES = {
    "population_size type": (_eggroll(population_size="8"), TypeError, "population_size"),
    "population_size value": (_eggroll(population_size=1, antithetic=False), ValueError, "population_size"),
    "population_size odd": (_eggroll(population_size=7), ValueError, "population_size"),
    "sigma type": (_eggroll(sigma="0.1"), TypeError, "sigma"),
    "sigma value": (_eggroll(sigma=-0.1), ValueError, "sigma"),
    "rank type": (_eggroll(rank=1.5), TypeError, "rank"),
    "rank value": (_eggroll(rank=0), ValueError, "rank"),
    "optimizer type": (_eggroll(optimizer="adam"), TypeError, "optimizer"),
    "optimizer value": (_eggroll(optimizer=-1.0), ValueError, "learning_rate"),
    "shaping type": (_eggroll(shaping=3), TypeError, "shaping"),
    "shaping value": (_eggroll(shaping="ranks"), ValueError, "shaping"),
    "antithetic type": (_eggroll(antithetic="yes"), TypeError, "antithetic"),
    "noise_reuse type": (_eggroll(noise_reuse=1.0), TypeError, "noise_reuse"),
    "noise_reuse value": (_eggroll(noise_reuse=-1), ValueError, "noise_reuse"),
    "group_size type": (_eggroll(group_size="2"), TypeError, "group_size"),
    "group_size value": (_eggroll(group_size=-1), ValueError, "group_size"),
    "noise type": (_eggroll(noise=3), TypeError, "noise"),
    "noise value": (_eggroll(noise="uniform"), ValueError, "noise"),
    "maximize type": (_eggroll(maximize="False"), TypeError, "maximize"),
    "seed type": (_eggroll(seed=1.5), TypeError, "seed"),
    "seed value": (_eggroll(seed=-1), ValueError, "seed"),
    "policy type": (_eggroll(policy=["w"]), TypeError, "policy"),
    "nan_policy type": (_eggroll(nan_policy=None), TypeError, "nan_policy"),
    "nan_policy value": (_eggroll(nan_policy="omit"), ValueError, "nan_policy"),
    "ask members type": (lambda: _ES.ask(_STATE, members=[0, 1]), TypeError, "members"),
    "ask members value": (lambda: _ES.ask(_STATE, members=range(0, 4, 2)), ValueError, "members"),
    "linear shared type": (lambda: _POP.linear("w", np.ones((1, 2)), shared=None), TypeError, "shared"),
    "embedding shared type": (lambda: _POP.embedding("w", np.zeros(1, np.int64), shared="no"), TypeError, "shared"),
    "sgd learning_rate type": (lambda: egg.optim.sgd("0.1"), TypeError, "learning_rate"),
    "sgd learning_rate value": (lambda: egg.optim.sgd(float("nan")), ValueError, "learning_rate"),
    "sgd momentum type": (lambda: egg.optim.sgd(0.1, momentum="0.5"), TypeError, "momentum"),
    "sgd momentum value": (lambda: egg.optim.sgd(0.1, momentum=1.0), ValueError, "momentum"),
    "sgd nesterov type": (lambda: egg.optim.sgd(0.1, momentum=0.5, nesterov="yes"), TypeError, "nesterov"),
    "adam b1 value": (lambda: egg.optim.adam(0.1, b1=1.0), ValueError, "b1"),
    "adam b2 type": (lambda: egg.optim.adam(0.1, b2=None), TypeError, "b2"),
    "adam eps value": (lambda: egg.optim.adam(0.1, eps=0.0), ValueError, "eps"),
    "adamw weight_decay value": (lambda: egg.optim.adamw(0.1, weight_decay=-1.0), ValueError, "weight_decay"),
    "constant value": (lambda: egg.schedules.constant(float("nan")), ValueError, "value"),
    "linear steps type": (lambda: egg.schedules.linear(1.0, 0.0, 2.5), TypeError, "steps"),
    "linear end value": (lambda: egg.schedules.linear(1.0, float("inf"), 5), ValueError, "end"),
    "cosine init value": (lambda: egg.schedules.cosine(-0.1, 10), ValueError, "init"),
    "cosine final_fraction value": (
        lambda: egg.schedules.cosine(0.1, 10, final_fraction=2),
        ValueError,
        "final_fraction",
    ),
    "exponential decay value": (lambda: egg.schedules.exponential(0.1, float("nan")), ValueError, "decay"),
    "exponential floor type": (lambda: egg.schedules.exponential(0.1, 0.5, floor="0"), TypeError, "floor"),
    "MLP sizes value": (lambda: egg.models.MLP((3, 0)), ValueError, "sizes[1]"),
    "MLP sizes type": (lambda: egg.models.MLP(3), TypeError, "sizes"),
    "MLP activation value": (lambda: egg.models.MLP((3, 2), activation="swish"), ValueError, "activation"),
    "MLP name type": (lambda: egg.models.MLP((3, 2), name=None), TypeError, "name"),
    "MLP init seed type": (lambda: egg.models.MLP((3, 2)).init(np, seed=1.5), TypeError, "seed"),
    "MLP init seed value": (lambda: egg.models.MLP((3, 2)).init(np, seed=-1), ValueError, "seed"),
    "GRU input_size type": (lambda: egg.models.GRU("3", 2), TypeError, "input_size"),
    "GRU hidden_size value": (lambda: egg.models.GRU(3, 0), ValueError, "hidden_size"),
    "LocalEvaluator es type": (lambda: LocalEvaluator("es", per_member(sum)), TypeError, "es"),
    "LocalEvaluator fitness type": (lambda: LocalEvaluator(_ES, 3), TypeError, "fitness"),
    "ProcessPoolEvaluator workers type": (
        lambda: ProcessPoolEvaluator(_ES, per_member(sum), workers="2"),
        TypeError,
        "workers",
    ),
    "ProcessPoolEvaluator workers value": (
        lambda: ProcessPoolEvaluator(_ES, per_member(sum), workers=0),
        ValueError,
        "workers",
    ),
    "per_member fn type": (lambda: per_member(3), TypeError, "fn"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_type_is_a_type_error_and_a_wrong_value_a_value_error_naming_the_argument(case):
    call, error, argument = CASES[case]
    with pytest.raises(Exception) as raised:  # the exact class is checked below, not a subclass
        call()
    assert type(raised.value) is error, f"{case}: {type(raised.value).__name__}: {raised.value}"
    assert f"{argument}=" in str(raised.value), f"{case}: {raised.value}"


@pytest.mark.parametrize(
    ("check", "args", "value"),
    [
        (_checks.integer, ("n",), np.int64(3)),
        (_checks.integer, ("n", 0, 5), np.uint8(5)),
        (_checks.real, ("x", 0), np.float32(0.5)),
        (_checks.real, ("x", 0), np.int16(2)),
        (_checks.boolean, ("flag",), np.bool_(False)),
    ],
)
def test_numpy_scalars_pass_and_come_back_as_python_values(check, args, value):
    got = check(args[0], value, *args[1:])
    assert got == value and type(got) in (int, float, bool)


@pytest.mark.parametrize("value", [True, np.bool_(True), "1", None, [1]])
def test_bools_strings_and_containers_are_never_numbers(value):
    for check in (_checks.integer, _checks.real):
        with pytest.raises(TypeError, match=r"must be .*, not a"):
            check("n", value)


@pytest.mark.parametrize("value", ["True", "False", 1, 0, None])
def test_only_true_and_false_are_booleans(value):
    with pytest.raises(TypeError, match="must be True or False"):
        _checks.boolean("flag", value)
