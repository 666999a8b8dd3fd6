"""The batched classic-control environments: step for step Gymnasium's, initial states from the counter
generator, and clear errors for bad actions."""

import itertools
import math

import gymnasium
import hypothesis
import jax
import numpy as np
import pytest
from helpers import get_backend, np_of
from hypothesis import given
from hypothesis import strategies as st

from eggroll_np.envs import ENVS, ContinuousEnv, DiscreteEnv, EpisodeKey

NP = get_backend("numpy").xp
PI = math.pi
CARTPOLE_THETA = 12 * 2 * PI / 360

# Per state column: (low, high, values worth drawing often: the edges, the thresholds, rest). The boxes are
# Gymnasium's observation spaces, with CartPole's unbounded velocities kept to a physical ±3.
STATE_BOXES = {
    "CartPole-v1": [
        (-4.8, 4.8, -2.4, 2.4),
        (-3.0, 3.0, 0.0),
        (-0.418, 0.418, -CARTPOLE_THETA, CARTPOLE_THETA),
        (-3.0, 3.0, 0.0),
    ],
    "Pendulum-v1": [(-2 * PI, 2 * PI, -PI, PI, np.nextafter(PI, 0.0), 0.0), (-8.0, 8.0, 0.0)],
    "Acrobot-v1": [(-PI, PI, 0.0), (-PI, PI, 0.0), (-4 * PI, 4 * PI, 0.0), (-9 * PI, 9 * PI, 0.0)],
    "MountainCarContinuous-v0": [(-1.2, 0.6, 0.45, np.nextafter(0.45, 0.0), -1.19), (-0.07, 0.07, 0.0)],
    "MountainCar-v0": [(-1.2, 0.6, 0.5, np.nextafter(0.5, 0.0), -1.19), (-0.07, 0.07, 0.0)],
}
# Gymnasium's reset ranges, per state column.
RESET_BOXES = {
    "CartPole-v1": [(-0.05, 0.05)] * 4,
    "Pendulum-v1": [(-PI, PI), (-1.0, 1.0)],
    "Acrobot-v1": [(-0.1, 0.1)] * 4,
    "MountainCarContinuous-v0": [(-0.6, -0.4), (0.0, 0.0)],
    "MountainCar-v0": [(-0.6, -0.4), (0.0, 0.0)],
}
# The safety factor on a rounding-error bound: measured errors stay below 7 times the bound (see `_tolerance`).
SAFETY = 32


def _column(low, high, *special):
    return st.one_of(st.floats(low, high), st.floats(low, high), st.sampled_from([low, high, *special]))


def _actions(cls):
    if issubclass(cls, DiscreteEnv):
        return st.integers(0, cls.n_actions - 1)
    # beyond the bounds too, to test the clipping
    return _column(3 * cls.action_low, 3 * cls.action_high, cls.action_low, cls.action_high, 0.0)


@st.composite
def batches(draw, name, max_members=8):
    """(states (N, k), actions (N,)) as float64 NumPy arrays, N in [1, max_members]."""
    n = draw(st.integers(1, max_members))
    row = st.tuples(*(_column(*column) for column in STATE_BOXES[name]))
    states = np.array(draw(st.lists(row, min_size=n, max_size=n)), dtype=np.float64)
    return states, np.array(draw(st.lists(_actions(ENVS[name]), min_size=n, max_size=n)), dtype=np.float64)


_GYM = {}


def gymnasium_step(name, states, actions):
    """Gymnasium's step from each row, one member at a time: (next states float64, observations, rewards,
    terminations)."""
    if name not in _GYM:
        _GYM[name] = gymnasium.make(name).unwrapped
    env = _GYM[name]
    out = []
    for state, action in zip(states, actions, strict=True):
        env.state = state.copy()
        env.steps_beyond_terminated = None  # CartPole: a fresh episode, no warning for stepping past the end
        act = int(action) if issubclass(ENVS[name], DiscreteEnv) else np.array([action])
        obs, reward, terminated, _, _ = env.step(act)
        out.append((np.asarray(env.state, dtype=np.float64), np.asarray(obs, dtype=np.float64), reward, terminated))
    next_states, observations, rewards, terminations = zip(*out, strict=True)
    return np.stack(next_states), np.stack(observations), np.array(rewards), np.array(terminations)


def _as_arrays(env, states, actions):
    xp = env.xp
    state = xp.asarray(states, dtype=env.dtype)
    if isinstance(env, DiscreteEnv):
        return state, xp.asarray(actions.astype(np.int64))
    return state, xp.asarray(actions[:, None], dtype=env.dtype)


def ours(env, states, actions):
    """(next state, observation, reward) side by side, (N, state_size + observation_size + 1) float64, and the
    terminations."""
    state, action = _as_arrays(env, states, actions)
    next_state = env.transition(state, action)
    values = [next_state, env.observation(next_state), env.reward(state, action, next_state)[:, None]]
    return np.concatenate([np_of(v) for v in values], axis=1), np_of(env.terminal(next_state))


def difference(name, x, y):
    """|x − y| of `ours` layouts, Acrobot's angles compared modulo 2π (π and −π are one angle)."""
    d = np.abs(x - y)
    if name == "Acrobot-v1":
        d[:, :2] = np.abs(np.remainder(d[:, :2] + PI, 2 * PI) - PI)
    return d


def _tolerance(name, states, actions, eps):
    """A bound on |ours − exact| for arithmetic with unit roundoff ~eps: SAFETY·(s + eps·(1 + |ours|)).

    Rounding each operation of a step to eps relative error moves the result about as much as moving the
    inputs of the step by eps relative: s = max over the 2ᵏ sign patterns σ of |f(x·(1 + eps·σ)) − f(x)|, the
    step's response (float64 `ours`) to such a move, the exact bound for its linearization. The rest is the
    rounding of the result itself. For Acrobot at |θ̇₂| near 9π, s is ~10⁴ eps: RK4's stages reach velocities
    of hundreds of rad/s there, whose squares enter the accelerations. Measured float32 errors stay below 7×
    the bound (50 000 random steps per env against the float64 step), hence SAFETY = 32.
    """
    env = ENVS[name](NP, dtype=NP.float64)
    base, _ = ours(env, states, actions)
    response = np.zeros_like(base)
    for signs in itertools.product((-1.0, 1.0), repeat=states.shape[1]):
        moved, _ = ours(env, states * (1 + eps * np.array(signs)), actions)
        response = np.maximum(response, difference(name, moved, base))
    return SAFETY * (response + eps * (1 + np.abs(base)))


def reference(name, states, actions):
    """Gymnasium's step in `ours` layout, the terminations, and how far Gymnasium's own roundings may put it
    from the exact step: it returns observations as float32, and stores MountainCarContinuous's state as
    float32 (½ ulp: 2⁻²⁴ relative)."""
    next_states, observations, rewards, terminations = gymnasium_step(name, states, actions)
    values = np.concatenate([next_states, observations, rewards[:, None]], axis=1)
    rounded = np.zeros_like(values)
    rounded[:, next_states.shape[1] : -1] = 1
    if name == "MountainCarContinuous-v0":
        rounded[:, : next_states.shape[1]] = 1
    return values, terminations, 2.0**-24 * np.abs(values) * rounded


def near_threshold(name, next_states, tol):
    """Members whose next state lies within `tol` (N,) of a threshold where the step is discontinuous: a
    termination boundary, or MountainCar's left wall (reaching it zeroes the velocity)."""
    if name == "CartPole-v1":
        x, theta = next_states[:, 0], next_states[:, 2]
        return (np.abs(np.abs(x) - 2.4) < tol) | (np.abs(np.abs(theta) - CARTPOLE_THETA) < tol)
    if name == "Acrobot-v1":
        height = -np.cos(next_states[:, 0]) - np.cos(next_states[:, 0] + next_states[:, 1])
        return np.abs(height - 1.0) < tol
    if name.startswith("MountainCar"):
        goal = 0.45 if name == "MountainCarContinuous-v0" else 0.5
        position, velocity = next_states[:, 0], next_states[:, 1]
        at_goal = (np.abs(position - goal) < tol) & (velocity > -tol)
        stopping = (np.abs(velocity) < tol) & (position > goal - tol)
        return at_goal | stopping | (np.abs(position + 1.2) < tol)
    return np.zeros(len(next_states), dtype=bool)


def assert_matches_gymnasium(name, states, actions, dtype):
    """Our step (next state, observation, reward, termination) is Gymnasium's, within the roundings of
    `dtype` and of Gymnasium's float32 outputs; the terminations are equal."""
    eps = float(np.finfo(dtype).eps)
    expected, terminations, rounded = reference(name, states, actions)
    got, terminal = ours(ENVS[name](NP, dtype=getattr(NP, dtype.__name__)), states, actions)
    tol = _tolerance(name, states, actions, eps) + rounded
    excess = difference(name, got, expected) - tol
    assert (excess <= 0).all(), f"{name} {dtype.__name__}: worst excess {excess.max():.3g} at {np.argmax(excess)}"
    np.testing.assert_array_equal(terminal, terminations)
    if name == "Acrobot-v1":  # `difference` compares them modulo 2π; wrapped by whole turns, to within rounding
        assert (np.abs(got[:, :2]) <= PI * (1 + 4 * eps)).all()


@pytest.mark.parametrize("name", ENVS)
@hypothesis.settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_float64_steps_are_gymnasiums(name, data):
    """Same operations in the same order: the step agrees with Gymnasium's to a few float64 ulp (NumPy's
    vectorized sin and cos may differ from its scalar ones by an ulp), amplified by the step's conditioning."""
    states, actions = data.draw(batches(name))
    assert_matches_gymnasium(name, states, actions, np.float64)


@pytest.mark.parametrize("name", ENVS)
@hypothesis.settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_float32_steps_are_gymnasiums_within_float32_rounding(name, data):
    """From float32 states and actions, our float32 step against Gymnasium's float64 one. Members whose next
    state lies within the float32 tolerance of a threshold are left out: there float32 rounding alone may
    decide the termination (or MountainCar's stop at the wall), which is no fault of the step."""
    states, actions = data.draw(batches(name))
    states, actions = states.astype(np.float32).astype(np.float64), actions.astype(np.float32).astype(np.float64)
    next_states = gymnasium_step(name, states, actions)[0]
    state_tol = _tolerance(name, states, actions, float(np.finfo(np.float32).eps))[:, : states.shape[1]]
    keep = ~near_threshold(name, next_states, 4 * state_tol.max(axis=1))
    hypothesis.assume(keep.any())
    assert_matches_gymnasium(name, states[keep], actions[keep], np.float32)


EDGES = {
    "CartPole-v1": (
        [[2.4, 0.0, 0.0, 0.0], [-2.4, -0.1, 0.0, 0.0], [0.0, 0.0, CARTPOLE_THETA, 0.0], [0.0, 0.0, -0.2, -1.0]],
        [0, 1, 1, 0],
    ),
    "Pendulum-v1": ([[PI, 8.0], [-PI, -8.0], [np.nextafter(PI, 4.0), 0.0], [0.0, 0.0]], [2.0, -5.0, 1e9, -2.0]),
    "Acrobot-v1": ([[PI, PI, 4 * PI, 9 * PI], [-PI, -PI, -4 * PI, -9 * PI], [PI, 0.0, 0.0, 0.0]], [2, 0, 1]),
    # the last car stops exactly at the flag: v = 0.0025 cos 3x cancels the slope's pull
    "MountainCarContinuous-v0": (
        [[-1.2, -0.07], [-1.19, -0.07], [0.449, 0.07], [0.45, 0.0025 * math.cos(3 * 0.45)]],
        [-1.0, 5.0, 1.0, 0.0],
    ),
    "MountainCar-v0": ([[-1.2, -0.07], [-1.19, -0.07], [0.499, 0.07], [0.5, 0.0025 * math.cos(3 * 0.5)]], [0, 1, 2, 1]),
}


@pytest.mark.parametrize("name", ENVS)
def test_float64_edges_are_gymnasiums(name):
    """Next states exactly on a threshold or the left wall, velocities at their bounds, angles at ±π.
    (In float32 the thresholds themselves round, so there these are the draws the float32 test leaves out.)"""
    states, actions = EDGES[name]
    assert_matches_gymnasium(name, np.array(states), np.array(actions, dtype=np.float64), np.float64)


@pytest.mark.parametrize("name", ENVS)
def test_constants_are_gymnasiums(name):
    cls, spec = ENVS[name], gymnasium.spec(name)
    env = gymnasium.make(name).unwrapped
    assert (cls.name, cls.max_steps) == (spec.id, spec.max_episode_steps)
    assert (cls.observation_size,) == env.observation_space.shape
    assert cls.state_size == len(RESET_BOXES[name])
    if issubclass(cls, DiscreteEnv):
        assert cls.n_actions == env.action_space.n
    else:
        space = env.action_space
        assert (cls.action_size,) == space.shape
        assert (cls.action_low, cls.action_high) == (float(space.low[0]), float(space.high[0]))


# --- initial states ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ENVS)
def test_initial_states_lie_in_gymnasiums_reset_ranges(name, dtype):
    env = ENVS[name](NP, dtype=getattr(NP, dtype))
    states = np_of(env.initial(EpisodeKey(seed=7, episode=3, members=range(2000))))
    low, high = np.array(RESET_BOXES[name]).T
    assert states.shape == (2000, env.state_size)
    assert ((low <= states) & (states <= high)).all()
    spread = high - low
    assert (states.max(axis=0) - states.min(axis=0) >= 0.99 * spread).all()  # fills the whole range


@pytest.mark.parametrize("name", ENVS)
def test_a_members_initial_state_depends_only_on_seed_episode_and_member(name):
    env = ENVS[name](NP)
    whole = np_of(env.initial(EpisodeKey(5, 2, range(8))))
    np.testing.assert_array_equal(np_of(env.initial(EpisodeKey(5, 2, range(5, 8)))), whole[5:])
    for other in (EpisodeKey(5, 3, range(8)), EpisodeKey(6, 2, range(8))):
        assert (np_of(env.initial(other)) != whole)[:, 0].all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ENVS)
def test_initial_states_are_equal_on_numpy_array_api_strict_and_jax(name, dtype):
    key = EpisodeKey(11, 4, range(3, 40))
    expected = np_of(ENVS[name](NP, dtype=getattr(NP, dtype)).initial(key))
    names = ["strict", "jax"] if dtype == "float32" else ["strict"]  # JAX runs without x64 here
    for backend in map(get_backend, names):
        env = ENVS[name](backend.xp, dtype=getattr(backend.xp, dtype), device=backend.device)
        np.testing.assert_array_equal(np_of(env.initial(key)), expected, err_msg=backend.name)


def _episode_actions(env, n, t):
    """A fixed action per member and step: the discrete actions in turn, or torques across ±3 bounds."""
    xp, j = env.xp, np.arange(n)
    if isinstance(env, DiscreteEnv):
        return xp.asarray((j + t) % env.n_actions, dtype=xp.int32, device=env.device)
    values = env.action_high * 3 * np.sin(j + 0.7 * t)[:, None]
    return xp.asarray(values, dtype=env.dtype, device=env.device)


@pytest.mark.parametrize("name", ENVS)
def test_twenty_steps_agree_across_backends(backend, name):
    """The same episodes on every backend (float32): equal to NumPy to a few ulp (the backends' sin and cos
    may differ by an ulp, and twenty steps from small initial states amplify that little)."""

    def run(xp, device):
        env = ENVS[name](xp, device=device)
        state = env.initial(EpisodeKey(1, 0, range(16)))
        for t in range(20):
            action = _episode_actions(env, 16, t)
            state = env.transition(state, action)
        return np_of(state), np_of(env.terminal(state)), np_of(env.reward(state, action, state))

    expected = run(NP, "cpu")
    got = run(backend.xp, backend.device)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ENVS)
def test_a_jitted_step_without_checks_is_the_eager_step(name):
    xp = get_backend("jax").xp
    env = ENVS[name](xp)
    state = env.initial(EpisodeKey(2, 0, range(6)))
    action = _episode_actions(env, 6, 0)
    step = jax.jit(lambda s, a: env.transition(s, a, check=False))
    np.testing.assert_allclose(np_of(step(state, action)), np_of(env.transition(state, action)), rtol=1e-6)


# --- bad input --------------------------------------------------------------------------------------------


def _state_and_action(name, n=3):
    env = ENVS[name](NP)
    return env, env.initial(EpisodeKey(0, 0, range(n))), _episode_actions(env, n, 0)


@pytest.mark.parametrize("name", ENVS)
def test_an_action_of_the_wrong_shape_is_refused(name):
    env, state, action = _state_and_action(name)
    wrong = [NP.reshape(action, (3, 1)), action[:2]] if isinstance(env, DiscreteEnv) else [action[:, 0], action[:2]]
    for bad in wrong:
        expected = rf"{name}: action of shape \({', '.join(map(str, bad.shape))},?\) must be \(N,"
        with pytest.raises(ValueError, match=expected):
            env.transition(state, bad)
        with pytest.raises(ValueError, match=expected):
            env.reward(state, bad, state)


@pytest.mark.parametrize("name", ENVS)
def test_an_action_of_the_wrong_dtype_is_refused(name):
    env, state, action = _state_and_action(name)
    if isinstance(env, DiscreteEnv):
        bad, expected = NP.astype(action, NP.float32), "must be an integer dtype"
    else:
        bad, expected = NP.astype(action, NP.int64), "must be a floating dtype"
    with pytest.raises(TypeError, match=f"{name}: action of dtype {bad.dtype} {expected}"):
        env.transition(state, bad)


def test_a_continuous_action_of_another_float_dtype_is_cast():
    env, state, action = _state_and_action("Pendulum-v1")
    np.testing.assert_array_equal(env.transition(state, NP.astype(action, NP.float64)), env.transition(state, action))


@pytest.mark.parametrize("name", [name for name, cls in ENVS.items() if issubclass(cls, DiscreteEnv)])
def test_a_discrete_action_out_of_range_is_an_error_unless_unchecked(name):
    env, state, _ = _state_and_action(name)
    for bad in ([0, -1, 1], [0, env.n_actions, 1]):
        action = NP.asarray(bad, dtype=NP.int32)
        with pytest.raises(ValueError, match=rf"{name}: actions must be integers in \[0, {env.n_actions}\)"):
            env.transition(state, action)
        assert env.transition(state, action, check=False).shape == state.shape  # no read, no error


@pytest.mark.parametrize("name", [name for name, cls in ENVS.items() if issubclass(cls, DiscreteEnv)])
def test_a_checked_step_under_a_jax_trace_says_to_pass_check_false(name):
    env = ENVS[name](get_backend("jax").xp)
    state = env.initial(EpisodeKey(0, 0, range(2)))
    with pytest.raises(TypeError, match="pass check=False"):
        jax.jit(env.transition)(state, _episode_actions(env, 2, 0))


@pytest.mark.parametrize("name", [name for name, cls in ENVS.items() if issubclass(cls, ContinuousEnv)])
@given(data=st.data())
@hypothesis.settings(max_examples=50, deadline=None)
def test_an_out_of_range_continuous_action_steps_as_its_clipped_value(name, data):
    env = ENVS[name](NP, dtype=NP.float64)
    states, actions = data.draw(batches(name))
    state, action = _as_arrays(env, states, actions)
    clipped = NP.clip(action, env.action_low, env.action_high)
    np.testing.assert_array_equal(env.transition(state, action), env.transition(state, clipped))


@pytest.mark.parametrize(
    ("name", "state", "reward"),
    [("Pendulum-v1", [0.0, 0.0], -0.001 * 2.0**2), ("MountainCarContinuous-v0", [-0.5, 0.0], -0.1 * 3.0**2)],
)
def test_pendulum_charges_the_clipped_torque_and_mountain_car_continuous_the_action_as_given(name, state, reward):
    env = ENVS[name](NP, dtype=NP.float64)
    state, action = NP.asarray([state]), NP.asarray([[3.0]])
    assert float(env.reward(state, action, env.transition(state, action))[0]) == pytest.approx(reward, rel=1e-12)


@pytest.mark.parametrize("name", ENVS)
def test_a_state_of_the_wrong_shape_or_dtype_is_refused(name):
    env, state, action = _state_and_action(name)
    with pytest.raises(ValueError, match=rf"{name}: state of shape \(3, {env.state_size + 1}\) must be \(N, "):
        env.transition(NP.concat([state, state[:, :1]], axis=1), action)
    with pytest.raises(ValueError, match=rf"{name}: state of shape \({env.state_size},\)"):
        env.observation(state[0])
    with pytest.raises(TypeError, match=f"{name}: state of dtype float64 must be float32"):
        env.terminal(NP.astype(state, NP.float64))


@pytest.mark.parametrize("name", ENVS)
def test_a_bad_dtype_or_episode_key_for_the_env_is_refused(name):
    cls = ENVS[name]
    for dtype in (NP.int32, NP.float16, "float32"):
        with pytest.raises(TypeError, match=f"{name}: dtype=.* must be float32 or float64"):
            cls(NP, dtype=dtype)
    for backend in map(get_backend, ["jax", "strict_no_x64"]):
        with pytest.raises(ValueError, match=f"{name}: .* has no float64 on device"):
            cls(backend.xp, dtype=backend.xp.float64, device=backend.device)
    env = cls(NP)
    with pytest.raises(TypeError, match="must be an EpisodeKey"):
        env.initial((0, 0, range(3)))
    with pytest.raises(ValueError, match="seed=-1 must be an integer in"):
        env.initial(EpisodeKey(-1, 0, range(3)))
    with pytest.raises(TypeError, match=r"episode=1\.0 must be an integer"):
        env.initial(EpisodeKey(0, 1.0, range(3)))
    with pytest.raises(ValueError, match=r"members=range.* must be a range with step 1"):
        env.initial(EpisodeKey(0, 0, range(0, 6, 2)))
