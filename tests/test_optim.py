"""Optimizers against float64 reference implementations, step by step, on every backend."""

import math

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, np_of

from eggroll_np import optim, schedules

backends = pytest.mark.parametrize("name", ALL_BACKENDS)
STEPS = 12


def _gradients(seed=0):
    rng = np.random.default_rng(seed)
    return [{"w": rng.standard_normal((4, 3)), "b": rng.standard_normal(3) * 1e-3} for _ in range(STEPS)]


def _reference_sgd(lr, momentum, nesterov):
    velocity = {}

    def step(g, t, params):
        out = {}
        for k, gk in g.items():
            if momentum:
                velocity[k] = momentum * velocity.get(k, 0.0) + gk
                out[k] = lr(t) * (gk + momentum * velocity[k] if nesterov else velocity[k])
            else:
                out[k] = lr(t) * gk
        return out

    return step


def _reference_adam(lr, b1, b2, eps, weight_decay):
    mu, nu, count = {}, {}, [0]

    def step(g, t, params):
        count[0] += 1
        out = {}
        for k, gk in g.items():
            mu[k] = b1 * mu.get(k, 0.0) + (1 - b1) * gk
            nu[k] = b2 * nu.get(k, 0.0) + (1 - b2) * gk**2
            m_hat = mu[k] / (1 - b1 ** count[0])
            v_hat = nu[k] / (1 - b2 ** count[0])
            out[k] = lr(t) * (m_hat / (np.sqrt(v_hat) + eps) - weight_decay * params[k])
        return out

    return step


CASES = {
    "sgd": (lambda: optim.sgd(0.1), lambda: _reference_sgd(lambda t: 0.1, 0.0, False)),
    "sgd_momentum": (lambda: optim.sgd(0.05, momentum=0.9), lambda: _reference_sgd(lambda t: 0.05, 0.9, False)),
    "sgd_nesterov": (
        lambda: optim.sgd(schedules.linear(0.1, 0.01, 10), momentum=0.8, nesterov=True),
        lambda: _reference_sgd(lambda t: 0.1 + (0.01 - 0.1) * min(t, 10) / 10, 0.8, True),
    ),
    "adam": (lambda: optim.adam(1e-2), lambda: _reference_adam(lambda t: 1e-2, 0.9, 0.999, 1e-8, 0.0)),
    "adam_schedule": (
        lambda: optim.adam(schedules.exponential(3e-2, 0.9), b1=0.5, b2=0.9, eps=1e-6),
        lambda: _reference_adam(lambda t: 3e-2 * 0.9**t, 0.5, 0.9, 1e-6, 0.0),
    ),
    "adamw": (
        lambda: optim.adamw(1e-2, weight_decay=0.1),
        lambda: _reference_adam(lambda t: 1e-2, 0.9, 0.999, 1e-8, 0.1),
    ),
}


@backends
@pytest.mark.parametrize("case", list(CASES))
def test_optimizer_matches_a_float64_reference_step_by_step(name, case):
    """Each step of a float32 run (float64 where available) stays within a rounding bound of the float64
    reference applied to the same params: relative 1e-4 for float32 (Adam divides by √ν, which doubles
    the relative error of g, over 12 accumulated steps), 1e-12 for float64."""
    backend = get_backend(name)
    dtype = backend.float_dtypes[-1]
    rtol = 1e-12 if backend.has_float64 else 1e-4
    make, make_reference = CASES[case]
    opt, reference = make(), make_reference()
    host = {"w": np.linspace(-1, 1, 12).reshape(4, 3), "b": np.array([0.5, -0.5, 2.0])}
    params = {k: backend.asarray(v, dtype=dtype) for k, v in host.items()}
    state = opt.init(params)
    for t, g in enumerate(_gradients()):
        step, state = opt.update({k: backend.asarray(v, dtype=dtype) for k, v in g.items()}, state, t, params)
        expected = reference(g, t, {k: np_of(v) for k, v in params.items()})
        for k in g:
            assert step[k].dtype == dtype
            np.testing.assert_allclose(np_of(step[k]), expected[k], rtol=rtol, atol=rtol * np.abs(expected[k]).max())
        params = {k: params[k] + step[k] for k in params}


def test_optimizer_state_is_a_namedtuple_and_updates_are_pure():
    opt = optim.adam(0.1)
    params = {"w": np.ones(3)}
    state = opt.init(params)
    assert isinstance(state, optim.AdamState) and state.count == 0
    grads = {"w": np.array([1.0, -2.0, 3.0])}
    first, new_state = opt.update(grads, state, 0, params)
    again, _ = opt.update(grads, state, 0, params)
    np.testing.assert_array_equal(first["w"], again["w"])
    assert new_state.count == 1 and state.count == 0
    np.testing.assert_array_equal(state.mu["w"], np.zeros(3))
    np.testing.assert_allclose(first["w"], 0.1 * np.sign(grads["w"]), rtol=1e-6)  # first Adam step is α·sign(g)


def test_a_float_or_schedule_means_plain_sgd():
    for lr in (0.5, schedules.constant(0.5)):
        step, _ = optim.as_optimizer(lr).update({"w": np.array([2.0])}, optim.SGDState({}), 0, None)
        assert step["w"][0] == 1.0
    opt = optim.adam(1.0)
    assert optim.as_optimizer(opt) is opt


def test_bad_hyperparameters_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match=r"momentum=1.0"):
        optim.sgd(0.1, momentum=1.0)
    with pytest.raises(ValueError, match="nesterov=True needs momentum"):
        optim.sgd(0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"b1=1.5"):
        optim.adam(0.1, b1=1.5)
    with pytest.raises(ValueError, match="eps=0"):
        optim.adam(0.1, eps=0)
    with pytest.raises(ValueError, match="weight_decay=-1"):
        optim.adamw(0.1, weight_decay=-1)
    with pytest.raises(ValueError, match=r"learning_rate='0.1' must be a non-negative finite number"):
        optim.sgd("0.1")
    with pytest.raises(ValueError, match=r"learning_rate=-0.1 must be a non-negative"):
        optim.adam(-0.1)
    assert optim.sgd(np.float32(0.5)).update({"w": np.ones(1)}, optim.SGDState({}), 0)[0]["w"][0] == 0.5
    with pytest.raises(ValueError, match="needs the current params"):
        opt = optim.adamw(0.1)
        opt.update({"w": np.ones(2)}, opt.init({"w": np.ones(2)}), 0, None)


def test_schedules_follow_their_formulas():
    assert schedules.constant(0.3)(100) == 0.3
    lin = schedules.linear(1.0, 0.0, 4)
    assert [lin(t) for t in (0, 2, 4, 9)] == [1.0, 0.5, 0.0, 0.0]
    cos = schedules.cosine(2.0, 10, final_fraction=0.1)
    assert cos(0) == pytest.approx(2.0) and cos(10) == pytest.approx(0.2) and cos(50) == pytest.approx(0.2)
    assert cos(5) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    exp = schedules.exponential(1.0, 0.5, steps=2, floor=0.1)
    assert exp(2) == 0.5 and exp(3) == pytest.approx(0.5 * math.sqrt(0.5)) and exp(100) == 0.1
    custom = schedules.as_schedule(lambda t: 1.0 / (t + 1), "sigma")
    assert custom(3) == 0.25
    with pytest.raises(ValueError, match="steps=0"):
        schedules.linear(1.0, 0.0, 0)
    with pytest.raises(ValueError, match="decay"):
        schedules.exponential(1.0, 0.0)
    with pytest.raises(TypeError, match="sigma must be a float or a callable"):
        schedules.as_schedule("0.1", "sigma")
