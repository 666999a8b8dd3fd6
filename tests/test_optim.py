"""Optimizers against float64 reference implementations, step by step, on every backend."""

import math
import pickle
import re
from typing import NamedTuple

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, np_of

import eggroll_np as egg
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


def test_a_number_or_schedule_means_plain_sgd():
    for lr in (0.5, np.float32(0.5), schedules.constant(0.5)):
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
    with pytest.raises(TypeError, match=r"learning_rate='0.1' must be a finite number ≥ 0, not a str"):
        optim.sgd("0.1")
    with pytest.raises(
        ValueError, match=r"learning_rate=-0.1 must be a finite number ≥ 0, or a schedule; .*maximize=False"
    ):
        optim.adam(-0.1)
    assert optim.sgd(np.float32(0.5)).update({"w": np.ones(1)}, optim.SGDState({}), 0)[0]["w"][0] == 0.5
    with pytest.raises(ValueError, match="needs the current params"):
        opt = optim.adamw(0.1)
        opt.update({"w": np.ones(2)}, opt.init({"w": np.ones(2)}), 0, None)


@pytest.mark.parametrize(
    ("factory", "kwargs", "error", "message"),
    [
        (optim.sgd, {"learning_rate": math.nan}, ValueError, "learning_rate=nan must be a finite number ≥ 0"),
        (optim.sgd, {"learning_rate": math.inf}, ValueError, "learning_rate=inf must be a finite number ≥ 0"),
        (optim.sgd, {"learning_rate": True}, TypeError, "learning_rate=True must be a finite number ≥ 0, not a bool"),
        (optim.sgd, {"learning_rate": None}, TypeError, "learning_rate=None must be a finite number ≥ 0"),
        (optim.sgd, {"momentum": "0.5"}, TypeError, "momentum='0.5' must be a finite number in [0, 1), not a str"),
        (optim.sgd, {"momentum": -0.1}, ValueError, "momentum=-0.1 must be a finite number in [0, 1)"),
        (optim.sgd, {"momentum": math.nan}, ValueError, "momentum=nan must be a finite number in [0, 1)"),
        (optim.sgd, {"momentum": 0.5, "nesterov": "yes"}, TypeError, "nesterov='yes' must be True or False, not a str"),
        (optim.sgd, {"momentum": 0.5, "nesterov": 1}, TypeError, "nesterov=1 must be True or False, not a int"),
        (optim.adam, {"b1": 1.0}, ValueError, "b1=1.0 must be a finite number in [0, 1)"),
        (optim.adam, {"b1": "0.9"}, TypeError, "b1='0.9' must be a finite number in [0, 1), not a str"),
        (optim.adam, {"b2": math.nan}, ValueError, "b2=nan must be a finite number in [0, 1)"),
        (optim.adam, {"b2": -0.5}, ValueError, "b2=-0.5 must be a finite number in [0, 1)"),
        (optim.adam, {"eps": math.inf}, ValueError, "eps=inf must be a finite number > 0"),
        (optim.adam, {"eps": -1e-8}, ValueError, "eps=-1e-08 must be a finite number > 0"),
        (optim.adam, {"eps": None}, TypeError, "eps=None must be a finite number > 0, not a NoneType"),
        (optim.adamw, {"weight_decay": math.nan}, ValueError, "weight_decay=nan must be a finite number ≥ 0"),
        (optim.adamw, {"weight_decay": False}, TypeError, "weight_decay=False must be a finite number ≥ 0, not a bool"),
    ],
)
def test_each_setting_is_checked_with_the_one_wording(factory, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        factory(**{"learning_rate": 0.1, **kwargs})


def test_numpy_scalars_are_accepted_as_settings_and_stored_as_python_floats():
    params, grads = {"w": np.ones(2)}, {"w": np.array([1.0, -1.0])}
    opt = optim.adam(np.float64(0.1), b1=np.float32(0.5), b2=np.float64(0.9), eps=np.float32(1e-6))
    assert type(opt.update.keywords["b1"]) is float and opt.update.keywords["b1"] == float(np.float32(0.5))
    step, _ = opt.update(grads, opt.init(params), 0, params)
    np.testing.assert_allclose(step["w"], 0.1 * grads["w"] / (1 + 1e-6), rtol=1e-6)
    sgd = optim.sgd(np.int64(1), momentum=np.float32(0.5), nesterov=np.bool_(True))
    assert sgd.update.keywords["momentum"] == 0.5 and sgd.update.keywords["nesterov"] is True
    assert sgd.update(grads, sgd.init(params), 0)[0]["w"][0] == 1.5


def _rate_turning_bad(bad, at=3):
    return lambda t: 0.1 if t < at else bad


@pytest.mark.parametrize(
    ("bad", "error", "shown"),
    [
        (math.nan, ValueError, "nan"),
        (math.inf, ValueError, "inf"),
        (-1, ValueError, "-1.0"),
        ("0.1", TypeError, "'0.1'"),
    ],
)
@pytest.mark.parametrize(
    "make",
    [lambda lr: optim.sgd(lr), lambda lr: optim.sgd(lr, momentum=0.9), optim.adam, optim.adamw],
    ids=["sgd", "momentum", "adam", "adamw"],
)
def test_a_learning_rate_schedule_turning_bad_fails_update_at_that_generation(make, bad, error, shown):
    opt = make(_rate_turning_bad(bad))
    params, grads = {"w": np.ones(3)}, {"w": np.array([1.0, -2.0, 3.0])}
    state = opt.init(params)
    for t in range(3):
        _, state = opt.update(grads, state, t, params)
    kept = pickle.dumps(state)
    with pytest.raises(error, match=re.escape(f"learning rate at generation 3 is {shown}; ")):
        opt.update(grads, state, 3, params)
    assert pickle.dumps(state) == kept


def test_a_learning_rate_that_turns_nan_stops_tell_and_leaves_the_state_as_it_was():
    es = egg.EGGROLL(population_size=4, optimizer=egg.optim.adam(lambda t: 0.1 if t < 1 else float("nan")))
    state = es.init({"w": np.zeros(3), "b": np.ones(2)})
    state, _ = es.tell(state, es.ask(state), np.arange(4.0))
    assert state.generation == 1 and state.opt_state.count == 1
    params = {name: value.copy() for name, value in state.params.items()}
    mu = {name: value.copy() for name, value in state.opt_state.mu.items()}
    nu = {name: value.copy() for name, value in state.opt_state.nu.items()}
    pop = es.ask(state)
    with pytest.raises(
        ValueError, match=re.escape("learning rate at generation 1 is nan; it must be a finite number ≥ 0")
    ):
        es.tell(state, pop, np.arange(4.0))
    assert state.generation == 1 and state.opt_state.count == 1
    for kept, now in ((params, state.params), (mu, state.opt_state.mu), (nu, state.opt_state.nu)):
        assert kept.keys() == now.keys()
        for name in kept:
            np.testing.assert_array_equal(now[name], kept[name])


def test_the_registries_name_every_optimizer_and_every_state_type():
    assert optim.OPTIMIZERS == {
        "adam": optim.adam,
        "adamw": optim.adamw,
        "sgd": optim.sgd,
        "integer": optim.integer_step,
    }
    assert optim.STATE_TYPES == (optim.SGDState, optim.AdamState, optim.IntegerStepState)
    assert type(optim.integer_step().init({"w": np.ones((2, 2), np.int8)})) in optim.STATE_TYPES
    params = {"w": np.ones(2)}
    for name, factory in FLOAT_OPTIMIZERS.items():
        opt = factory(learning_rate=0.1)
        assert isinstance(opt, optim.Optimizer), name
        assert type(opt.init(params)) in optim.STATE_TYPES, name
    assert optim.OPTIMIZERS["sgd"](learning_rate=0.1, momentum=0.9).init(params).velocity.keys() == {"w"}
    assert optim.OPTIMIZERS["adamw"](learning_rate=0.1, weight_decay=0.5).update.keywords["weight_decay"] == 0.5


FLOAT_OPTIMIZERS = {name: factory for name, factory in optim.OPTIMIZERS.items() if name != "integer"}


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_optimizers_pickle_and_step_the_same_after_a_round_trip(name):
    if name == "integer":
        opt = optim.integer_step(schedules.cosine(0.5, 10))
        params = {"w": np.array([[-127, 3], [0, 127]], np.int8)}
    else:
        opt = optim.OPTIMIZERS[name](learning_rate=schedules.cosine(0.1, 10))
        params = {"w": np.linspace(-1, 1, 4)}
    again = pickle.loads(pickle.dumps(opt))
    grads = {"w": np.reshape(np.array([0.5, -1.0, 2.0, 0.0], np.float32), params["w"].shape)}
    step, _ = opt.update(grads, opt.init(params), 2, params)
    step_again, _ = again.update(grads, again.init(params), 2, params)
    np.testing.assert_array_equal(step_again["w"], step["w"])


class _GradientTransformation(NamedTuple):
    """The shape of an optax GradientTransformation."""

    init: object
    update: object


ACCEPTED = " must be an eggroll_np.optim.Optimizer, a learning rate (number) or a schedule, not a "


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (_GradientTransformation(lambda p: None, lambda g, s, p=None: (g, s)), ACCEPTED + "_GradientTransformation; "),
        ("0.1", "optimizer='0.1'" + ACCEPTED + "str"),
        (None, "optimizer=None" + ACCEPTED + "NoneType"),
        ([0.1], "optimizer=[0.1]" + ACCEPTED + "list"),
    ],
    ids=["optax-like", "str", "None", "list"],
)
def test_as_optimizer_refuses_anything_else_saying_what_it_accepts(value, message):
    with pytest.raises(TypeError, match=re.escape(message)) as raised:
        optim.as_optimizer(value)
    assert ("wrap it as egg.optim.from_optax(transformation)" in str(raised.value)) == isinstance(
        value, _GradientTransformation
    )
    if value is not None:  # None is the strategy's default optimizer
        with pytest.raises(TypeError, match=re.escape(message)):
            egg.EGGROLL(population_size=4, optimizer=value)


def test_from_optax_takes_the_steps_of_this_packages_own_optimizers():
    """The same gradients, step after step, give the same steps to float32 rounding (a few ulp per operation;
    Adam's ratio m̂ / (√v̂ + ε) keeps them relative)."""
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(0)
    params = {"w": jnp.ones((3, 4), dtype=jnp.float32), "b": jnp.zeros((3,), dtype=jnp.float32)}
    gradients = [
        {k: jnp.asarray(rng.standard_normal(v.shape), dtype=jnp.float32) for k, v in params.items()} for _ in range(5)
    ]
    for ours, theirs in [(optim.adam(0.05), optax.adam(0.05)), (optim.sgd(0.1, momentum=0.9), optax.sgd(0.1, 0.9))]:
        wrapped = optim.from_optax(theirs)
        state_ours, state_theirs = ours.init(params), wrapped.init(params)
        for generation, grads in enumerate(gradients):
            expected, state_ours = ours.update(grads, state_ours, generation, params)
            got, state_theirs = wrapped.update(grads, state_theirs, generation, params)
            for name in params:
                np.testing.assert_allclose(np_of(got[name]), np_of(expected[name]), rtol=1e-5, atol=1e-7)
        assert np.all(np.sign(np_of(got["w"])) == np.sign(np_of(expected["w"])))


def test_from_optax_runs_a_strategy_on_jax():
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    es = egg.EGGROLL(population_size=8, sigma=0.1, optimizer=optim.from_optax(optax.adam(0.05)), seed=3)
    state = es.init({"w": jnp.ones((3, 4), dtype=jnp.float32)})
    x = jnp.ones((2, 4), dtype=jnp.float32)
    loss = []
    for _ in range(30):
        pop = es.ask(state)
        fitness = -jnp.sum((pop.linear("w", x) - 0.5) ** 2, axis=(1, 2))
        loss.append(float(jnp.sum((x @ state.params["w"].T - 0.5) ** 2)))
        state, _ = es.tell(state, pop, fitness)
    assert loss[-1] < 0.5 * loss[0]  # it climbs: optax descends on −g


def test_from_optax_refuses_non_jax_leaves_and_non_transformations():
    optax = pytest.importorskip("optax")
    es = egg.EGGROLL(population_size=4, optimizer=optim.from_optax(optax.adam(0.1)))
    with pytest.raises(TypeError, match="from_optax runs optax on JAX leaves only; leaf 'w' is a ndarray"):
        es.init({"w": np.ones((2, 2), np.float32)})
    with pytest.raises(TypeError, match="from_optax needs an optax GradientTransformation"):
        optim.from_optax(optim.adam(0.1))


def test_a_checkpoint_of_an_optax_state_is_refused_before_anything_is_written(tmp_path):
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    es = egg.EGGROLL(population_size=4, optimizer=optim.from_optax(optax.adam(0.1)))
    state = es.init({"w": jnp.ones((2, 2), dtype=jnp.float32)})
    with pytest.raises(TypeError, match=r"cannot checkpoint a tuple at opt_state; .*from_optax keeps optax's own"):
        egg.checkpoint.save(tmp_path / "run.npz", state)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("optimizer", "text"),
    [
        (optim.adam(0.01), "adam(learning_rate=0.01)"),
        (optim.adam(0.01, b1=0.8, eps=1e-6), "adam(learning_rate=0.01, b1=0.8, eps=1e-06)"),
        (optim.adamw(0.02), "adamw(learning_rate=0.02)"),
        (optim.adamw(0.02, weight_decay=0.1), "adamw(learning_rate=0.02, weight_decay=0.1)"),
        (optim.sgd(0.1), "sgd(learning_rate=0.1)"),
        (optim.sgd(0.1, momentum=0.9, nesterov=True), "sgd(learning_rate=0.1, momentum=0.9, nesterov=True)"),
        (optim.sgd(schedules.cosine(0.1, 50)), "sgd(learning_rate=cosine(init=0.1, steps=50, final_fraction=0.0))"),
        (optim.integer_step(), "integer_step()"),
        (optim.integer_step(0.5), "integer_step(fraction=0.5)"),
        (egg.optim.as_optimizer(0.3), "sgd(learning_rate=0.3)"),
    ],
)
def test_an_optimizer_prints_as_the_factory_call_that_builds_it_again(optimizer, text):
    assert repr(optimizer) == text
    rebuilt = eval(text, {**vars(optim), "cosine": schedules.cosine})
    assert repr(rebuilt) == text
    params = {"w": np.array([0.5, -1.0], dtype=np.float32)}
    grads = {"w": np.array([2.0, -3.0], dtype=np.float32)}
    if "integer" in text:
        params, grads = {"w": np.array([3, -4], dtype=np.int8)}, {"w": np.array([5, -7], dtype=np.int32)}
    steps = [opt.update(grads, opt.init(params), 0, params)[0]["w"] for opt in (optimizer, rebuilt)]
    np.testing.assert_array_equal(*steps)


def test_an_optimizer_of_other_functions_prints_their_names():
    def init(params):
        return ()

    assert repr(optim.Optimizer(init, optim.sgd(0.1).update.func)) == (
        "Optimizer(init=test_an_optimizer_of_other_functions_prints_their_names.<locals>.init, update=_sgd_update)"
    )
