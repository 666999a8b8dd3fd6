"""egg.minimize: it converges on test functions, each stopping rule stops with its message, evaluations are
counted, batched and per-point evaluation agree, every backend's x0 works, and bad arguments are refused.

Bounds on the values reached come from runs of seeds 0-7 with the same settings (the largest value over the
seeds, in the comments), with a margin of at least ten times that value; every bound is still far below the
value at x0."""

import math
import re

import numpy as np
import pytest
from helpers import BACKEND_NAMES, get_backend, np_of

import eggroll_np as egg
from eggroll_np.minimize import STOPS, default_settings

OPTIMUM = np.linspace(-2.0, 2.0, 10)


def sphere(X, c=OPTIMUM):
    """|x − c|² of a point (d,) or of every row of (N, d)."""
    return np.sum((X - c) ** 2, axis=-1)


def ellipsoid(X, c):
    """Σⱼ 10^(4j/(d−1)) (xⱼ − cⱼ)²: condition number 10⁴."""
    weights = 10.0 ** (4 * np.arange(X.shape[-1]) / (X.shape[-1] - 1))
    return np.sum(weights * (X - c) ** 2, axis=-1)


def test_a_shifted_sphere_in_10_dimensions_converges():
    result = egg.minimize(sphere, np.zeros(10), batched=True, maxiter=100)
    assert sphere(np.zeros(10)) == pytest.approx(16.3, abs=0.1)
    assert result.fun < 1e-5  # seeds 0-7 reached at most 7.3e-8
    assert np.max(np.abs(result.x - OPTIMUM)) < 1e-2  # at most 1.9e-4
    assert result.fun == sphere(result.x) and result.nit == 100 and result.status == "maxiter"


def test_a_shifted_sphere_in_100_dimensions_converges():
    c = np.linspace(-2.0, 2.0, 100)
    result = egg.minimize(sphere, np.zeros(100), args=(c,), batched=True, maxiter=200)
    assert sphere(np.zeros(100), c) == pytest.approx(136.0, abs=0.1)
    assert result.fun < 1e-3  # seeds 0-7 reached at most 8.7e-6


def test_an_ellipsoid_of_condition_1e4_falls_far_below_its_start():
    start = ellipsoid(np.zeros(10), OPTIMUM)
    result = egg.minimize(ellipsoid, np.zeros(10), args=(OPTIMUM,), batched=True, maxiter=500)
    assert start == pytest.approx(5.05e4, rel=1e-2)
    assert result.fun < 20.0  # seeds 0-7 reached at most 1.63; isotropic noise is slow on ill-conditioned axes


def test_a_noisy_sphere_ends_near_its_optimum():
    """Gaussian noise of standard deviation 0.1 on every evaluation: the point returned is the luckiest
    evaluation, so its noise-free value is what is bounded."""
    rng = np.random.default_rng(0)
    result = egg.minimize(lambda X: sphere(X) + 0.1 * rng.standard_normal(X.shape[0]), np.zeros(10), batched=True)
    assert sphere(result.x) < 1.0  # noise-free; seeds 0-7 (noise seeded alike) reached at most 0.096, from 16.3
    assert result.status == "stagnation" and result.success


def test_maximizing_is_minimizing_the_negated_function_in_the_users_sign():
    maximized = egg.minimize(lambda x: -sphere(x), np.zeros(10), maximize=True, maxiter=30)
    minimized = egg.minimize(sphere, np.zeros(10), maxiter=30)
    np.testing.assert_array_equal(maximized.x, minimized.x)
    assert maximized.fun == -minimized.fun < 0.0
    np.testing.assert_array_equal(maximized.history.fitness_best, -minimized.history.fitness_best)


def test_batched_and_per_point_evaluation_give_the_identical_result():
    per_point = egg.minimize(sphere, np.zeros(10), seed=4, maxiter=30)
    batched = egg.minimize(sphere, np.zeros(10), seed=4, maxiter=30, batched=True)
    np.testing.assert_array_equal(per_point.x, batched.x)
    assert (per_point.fun, per_point.nit, per_point.nfev) == (batched.fun, batched.nit, batched.nfev)
    for got, expected in zip(per_point.history, batched.history, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("batched", [False, True])
def test_nfev_counts_every_evaluation_of_fun_including_the_final_mean(batched):
    evaluated = []

    def counted(x):
        evaluated.append(x.shape[0] if batched else 1)
        return sphere(x)

    result = egg.minimize(counted, np.zeros(10), batched=batched, population_size=12, maxiter=9)
    assert result.nfev == sum(evaluated) == 12 * 9 + 1 and result.nit == 9


@pytest.mark.parametrize(("x0", "winner"), [(OPTIMUM, "mean"), (OPTIMUM + 1.0, "member")])
def test_x_is_the_best_point_evaluated_or_the_final_mean_whichever_is_better(x0, winner):
    """With the mean held at x0 (SGD of rate 0) and σ = 1, members are about d σ² = 10 farther from the optimum
    than x0 on average: at the optimum no member beats the mean (f = 0 there); from 1 + c (f = 10) the best of
    400 members, with f ≈ Σⱼ (1 + εⱼ)² of mean 20 and standard deviation 7.7, comes far below 10."""
    last = []

    def recorded(X):
        last[:] = [X, sphere(X)]
        return last[1]

    result = egg.minimize(recorded, x0, sigma0=1.0, batched=True, maxiter=20, options={"optimizer": 0.0})
    (mean,), (at_mean,) = last  # the final call evaluates the mean alone
    best_member = np.min(result.history.fitness_best)
    assert at_mean == sphere(x0) and result.fun == min(at_mean, best_member) == sphere(result.x)
    assert (result.fun < best_member) == (winner == "mean")
    assert np.array_equal(result.x, mean) == (winner == "mean")


def test_the_history_holds_each_generations_mean_and_best():
    means = []

    def recorded(X):
        values = sphere(X)
        means.append((values.mean(), values.min()))
        return values

    lengths = []  # a callback reads the history every generation: past 64 generations its buffer grows
    result = egg.minimize(recorded, np.zeros(10), batched=True, maxiter=70, callback=lambda r: lengths.append(r.nit))
    np.testing.assert_allclose(np.stack(result.history, axis=1), np.array(means[:-1]), rtol=1e-12)
    assert result.history.fitness_mean.dtype == np.float64 and result.history.fitness_best.shape == (70,)
    assert lengths == list(range(1, 71))


# ---- stopping rules ---------------------------------------------------------------------------------------


def test_maxiter_stops_after_that_many_generations():
    result = egg.minimize(sphere, np.zeros(10), maxiter=7)
    assert (result.status, result.nit, result.success) == ("maxiter", 7, False)
    assert result.message == "maxiter=7 generations done" == STOPS["maxiter"].format(maxiter=7)


def test_maxfev_stops_where_another_generation_and_the_mean_would_pass_it():
    result = egg.minimize(sphere, np.zeros(10), maxfev=100)  # N = 20: 4 generations and the mean are 81
    assert (result.status, result.nit, result.nfev, result.success) == ("maxfev", 4, 81, False)
    assert result.message == "maxfev=100 evaluations leave no room for another generation of 20 and the mean"


@pytest.mark.parametrize(("maximize", "sign"), [(False, 1.0), (True, -1.0)])
def test_ftarget_stops_at_the_first_generation_that_reaches_it(maximize, sign):
    result = egg.minimize(
        lambda X: sign * sphere(X), np.zeros(10), ftarget=sign * 1e-2, batched=True, maximize=maximize
    )
    best = np.fmin.accumulate(sign * result.history.fitness_best)
    assert best[-1] <= 1e-2 < best[-2] and sign * result.fun <= 1e-2
    assert (result.status, result.success) == ("ftarget", True)
    assert result.message == f"the best value reached ftarget={sign * 0.01:g}"


def test_stagnation_stops_when_the_best_has_not_improved_for_patience_generations():
    result = egg.minimize(lambda x: 1.0, np.zeros(3), patience=6)  # the first generation sets the best
    assert (result.status, result.nit, result.fun, result.success) == ("stagnation", 7, 1.0, True)
    assert result.message == "the best value improved by no more than ftol=1e-12 in patience=6 generations"


def test_an_improvement_within_ftol_counts_as_none():
    values = iter([10.0, 9.5, 9.2, 9.0])  # then 9.0 for ever: improvements of 0.5, 0.3, 0.2, 0, ...

    def improving(X):
        return np.full(X.shape[0], next(values, 9.0))

    result = egg.minimize(improving, np.zeros(3), batched=True, ftol=0.025, patience=2)
    # 0.5 > 0.025·10 and 0.3 > 0.025·9.5 count; 0.2 < 0.025·9.2 and 0 do not: generations 4 and 5 stagnate
    assert result.status == "stagnation" and result.nit == 5 and result.fun == 9.0


def test_a_callback_sees_the_run_so_far_and_stops_it_by_returning_true():
    seen = []

    def callback(intermediate):
        seen.append(intermediate)
        return intermediate.nit == 3

    result = egg.minimize(sphere, np.zeros(10), population_size=8, callback=callback)
    assert (result.status, result.nit, result.success) == ("callback", 3, False)
    assert result.message == "the callback returned True"
    assert [r.nit for r in seen] == [1, 2, 3] and [r.nfev for r in seen] == [8, 16, 24]
    for r in seen:
        assert r.status == "running" and len(r.history.fitness_best) == r.nit
        assert r.fun == np.min(r.history.fitness_best) == sphere(r.x)
    np.testing.assert_array_equal(seen[0].history.fitness_mean, result.history.fitness_mean[:1])  # still valid


def test_a_callback_returning_something_else_than_a_bool_or_none_is_an_error():
    with pytest.raises(TypeError, match="callback must return True \\(to stop\\), False or None; it returned 'stop'"):
        egg.minimize(sphere, np.zeros(10), callback=lambda r: "stop")


def test_nan_everywhere_counts_as_no_improvement_and_is_no_success():
    result = egg.minimize(lambda x: math.nan, np.zeros(2), patience=3)
    assert (result.status, result.nit, result.success) == ("stagnation", 3, False)
    assert math.isnan(result.fun) and np.all(np.isnan(result.history.fitness_best))


def test_a_nan_region_is_avoided_under_the_default_nan_policy():
    result = egg.minimize(lambda x: math.nan if x[0] < -1.0 else sphere(x), np.zeros(10), maxiter=100)
    assert result.x[0] >= -1.0 and 1.0 <= result.fun < 1.1  # c₀ = −2 is out of reach: f ≥ (−1 + 2)² = 1 there


# ---- defaults, options, backends --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("d", "population_size", "maxiter"), [(1, 8, 1000), (10, 20, 1000), (100, 34, 6000), (1000, 48, 42000)]
)
def test_the_defaults_follow_the_dimension(d, population_size, maxiter):
    budget = default_settings(d)
    assert budget == {
        "population_size": population_size,  # 2·(4 + ⌊3 ln d⌋)
        "maxiter": maxiter,  # 1000·⌈2d/N⌉
        "horizon": maxiter,
        "patience": maxiter // 4,
    }


def test_maxfev_shortens_the_horizon_of_the_schedules():
    assert default_settings(10, maxfev=401) == {"population_size": 20, "maxiter": 1000, "horizon": 20, "patience": 5}
    by_evaluations = egg.minimize(sphere, np.zeros(10), maxfev=401)
    by_generations = egg.minimize(sphere, np.zeros(10), maxiter=20)  # the same horizon: the same schedules
    assert (by_evaluations.status, by_evaluations.nit, by_evaluations.nfev) == ("maxfev", 20, 401)
    np.testing.assert_array_equal(by_evaluations.x, by_generations.x)
    longer = egg.minimize(sphere, np.zeros(10), maxiter=21)  # another horizon: σ and α decay more slowly
    assert longer.history.fitness_mean[1] != by_generations.history.fitness_mean[1]


def test_options_replace_the_strategys_defaults():
    still = egg.minimize(sphere, OPTIMUM, options={"optimizer": 0.0}, maxiter=3)  # SGD with rate 0
    assert still.fun == 0.0  # the mean stayed at the optimum (Adam would have stepped away from it)
    np.testing.assert_array_equal(still.x, OPTIMUM)
    with pytest.raises(ValueError, match="fitness is NaN or infinite for members"):
        egg.minimize(lambda x: math.nan, np.zeros(2), options={"nan_policy": "raise"})


def test_sigma0_scales_the_perturbations():
    for sigma0 in (0.01, 1.0):
        result = egg.minimize(lambda x: 0.0, np.zeros(50), sigma0=sigma0, maxiter=1)
        spread = np.std(result.x)  # every value ties: x is member 0, x0 + σ ε₀ with 50 normals in ε₀
        assert 0.5 * sigma0 < spread < 1.5 * sigma0  # their sample std is within 1 ± 0.1 (one sd) of 1


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_x0_of_any_backend_is_the_backend_of_the_run(name):
    backend = get_backend(name)
    x0 = backend.asarray(np.zeros(3), dtype=backend.xp.float32)
    c = backend.asarray(OPTIMUM[:3] / 4, dtype=backend.xp.float32)  # f(x0) = 0.48
    result = egg.minimize(  # N = 8 and d = 3 as in test_best: JAX compiles the generator once per shape
        lambda X: backend.xp.sum((X - c) ** 2, axis=1), x0, batched=True, population_size=8, maxiter=40
    )
    assert type(result.x) is type(x0) and result.x.dtype == backend.xp.float32 and result.x.shape == (3,)
    assert result.fun < 1e-4  # in NumPy float32, seeds 0-7 reached at most 9.3e-7


def test_a_list_or_an_integer_array_is_a_float64_start():
    for x0 in ([0, 0, 0], np.zeros(3, dtype=np.int32)):
        result = egg.minimize(sphere, x0, args=(OPTIMUM[:3],), maxiter=2)
        assert isinstance(result.x, np.ndarray) and result.x.dtype == np.float64


# ---- bad arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fun": 3}, TypeError, "fun=3 must be callable, not a int"),
        ({"x0": np.zeros((2, 2))}, ValueError, "x0 has shape (2, 2); it must be a non-empty 1-D vector (d,)"),
        ({"x0": []}, ValueError, "x0 has shape (0,); it must be a non-empty 1-D vector"),
        ({"x0": [0.0, math.nan]}, ValueError, "x0 holds NaN or infinite values; start from a finite point"),
        ({"x0": ["a"]}, TypeError, "x0 must be a 1-D array or a sequence of real numbers; got dtype <U1"),
        ({"x0": "abc"}, TypeError, "x0 must be a 1-D array or a sequence of real numbers, not a str"),
        ({"x0": np.zeros(2, np.float16)}, TypeError, "x0 has dtype float16; use float32 or float64"),
        ({"x0": np.zeros(2, np.complex64)}, TypeError, "x0 must hold real numbers; got dtype complex64"),
        ({"args": 1.0}, TypeError, "args=1.0 must be a tuple of extra arguments of fun, not a float"),
        ({"batched": 1}, TypeError, "batched=1 must be True or False, not a int"),
        ({"maximize": "no"}, TypeError, "maximize='no' must be True or False, not a str"),
        ({"sigma0": 0.0}, ValueError, "sigma0=0.0 must be a finite number > 0"),
        ({"population_size": 7}, ValueError, "population_size=7 must be even when antithetic=True"),
        ({"population_size": 1.5}, TypeError, "population_size=1.5 must be an integer ≥ 2, not a float"),
        ({"maxiter": 0}, ValueError, "maxiter=0 must be an integer ≥ 1"),
        ({"maxfev": 20}, ValueError, "maxfev=20 leaves no room for one generation of population_size=20 and"),
        ({"ftarget": math.inf}, ValueError, "ftarget=inf must be a finite number"),
        ({"ftol": -1.0}, ValueError, "ftol=-1.0 must be a finite number ≥ 0"),
        ({"patience": 0}, ValueError, "patience=0 must be an integer ≥ 1"),
        ({"callback": "print"}, TypeError, "callback='print' must be callable, not a str"),
        ({"seed": -1}, ValueError, "seed=-1 must be an integer in [0, 18446744073709551615]"),
        ({"options": ["sigma"]}, TypeError, "options=['sigma'] must be a mapping of EGGROLL settings, not a list"),
        ({"options": {"seed": 1}}, ValueError, "options sets 'seed', which is an argument of minimize: pass seed="),
        ({"options": {"sigmas": 1}}, ValueError, "options has the unknown key 'sigmas'; the EGGROLL settings it"),
        ({"options": {"sigma": 0.1}, "sigma0": 0.1}, ValueError, "sigma0 and options['sigma'] both set σ; pass one"),
        ({"options": {"shaping": "ranks"}}, ValueError, "shaping='ranks' must be one of"),
    ],
)
def test_bad_arguments_are_refused_before_fun_is_called(kwargs, error, message):
    called = []
    arguments = {"fun": lambda x: called.append(x) or 0.0, "x0": np.zeros(10), **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        egg.minimize(arguments.pop("fun"), arguments.pop("x0"), **arguments)
    assert not called


@pytest.mark.parametrize(
    ("fun", "batched", "error", "message"),
    [
        (lambda x: "1", False, TypeError, "fun must return one real number per point; for member 0 it returned '1'"),
        (lambda x: np.ones(1), False, TypeError, "for member 0 it returned array([1.])"),
        (lambda x: True, False, TypeError, "for member 0 it returned True"),
        (lambda X: np.ones((X.shape[0], 1)), True, ValueError, "fun returned shape (20, 1) for X of shape (20, 10)"),
        (lambda X: np.ones(3), True, ValueError, "with batched=True it must return (20,), one value per row"),
    ],
)
def test_what_fun_returns_is_checked_with_the_member_named(fun, batched, error, message):
    with pytest.raises(error, match=re.escape(message)):
        egg.minimize(fun, np.zeros(10), batched=batched)


def test_the_result_of_a_torch_run_is_a_tensor_close_to_the_numpy_run():
    torch = pytest.importorskip("torch")
    result = egg.minimize(lambda x: float(torch.sum((x - 1.0) ** 2)), torch.zeros(4, dtype=torch.float64), maxiter=50)
    reference = egg.minimize(lambda x: float(np.sum((x - 1.0) ** 2)), np.zeros(4), maxiter=50)
    assert isinstance(result.x, torch.Tensor)
    np.testing.assert_allclose(np_of(result.x), reference.x, rtol=1e-6)  # normals agree to a few ulp
