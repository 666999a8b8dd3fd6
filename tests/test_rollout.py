"""The rollout: returns counted until each member's first termination or truncation, equal to Gymnasium's own
episodes, the same on every backend, and O(N · state_size) memory per step."""

import tracemalloc

import numpy as np
import pytest
from helpers import BACKEND_NAMES, get_backend, np_of

import eggroll_np as egg
from eggroll_np import envs
from eggroll_np.envs.rollout import argmax_actions, continuous_policy, discrete_policy, rollout
from eggroll_np.models import MLP

gymnasium = pytest.importorskip("gymnasium")


def test_returns_equal_gymnasiums_episodes_from_the_same_initial_states():
    env = envs.CartPole(np, dtype=np.float64)
    key = envs.EpisodeKey(3, 7, range(12))
    result = rollout(env, lambda ops, obs: (obs[:, 2] > 0).astype(np.int32), None, key, steps=45)
    single = gymnasium.make("CartPole-v1").unwrapped
    expected = []
    for start in env.initial(key):
        single.reset(seed=0)
        single.state = start.copy()
        total, terminated = 0, False
        while not terminated and total < 45:
            _, reward, terminated, _, _ = single.step(int(single.state[2] > 0))
            total += reward
        expected.append(total)
    np.testing.assert_array_equal(result.returns, expected)
    np.testing.assert_array_equal(result.lengths, expected)
    assert len(set(expected)) > 1 and max(expected) == 45  # some fail, some are truncated


def test_truncation_and_an_early_exit_change_no_return():
    env = envs.Acrobot(np, dtype=np.float64)
    key = envs.EpisodeKey(0, 0, range(6))
    policy = lambda ops, obs: np.where(obs[:, 5] > 0, 2, 0).astype(np.int32)  # noqa: E731 (torque with θ̇₂)
    every_step = rollout(env, policy, None, key, exit_check_every=1)
    never = rollout(env, policy, None, key, exit_check_every=None)
    np.testing.assert_array_equal(every_step.returns, never.returns)
    assert never.returns.max() > -500  # the pumping policy reaches the goal
    short = rollout(env, policy, None, key, steps=5)
    np.testing.assert_array_equal(short.returns, [-5.0] * 6)
    np.testing.assert_array_equal(short.lengths, [5] * 6)


def _fixed_policy(env):
    """A policy of the observations alone (no model): bang-bang on a velocity or an angle, a linear torque."""
    xp, name = env.xp, env.name

    def policy(ops, obs):
        if name == "CartPole-v1":
            return xp.astype(obs[:, 2] > 0, xp.int32)
        if name in ("Acrobot-v1", "MountainCar-v0"):
            return 2 * xp.astype(obs[:, 5 if name == "Acrobot-v1" else 1] > 0, xp.int32)
        if name == "Pendulum-v1":
            return xp.reshape(-2.0 * obs[:, 1] - 0.5 * obs[:, 2], (-1, 1))
        return xp.reshape(2 * xp.astype(obs[:, 1] > 0, env.dtype) - 1, (-1, 1))

    return policy


@pytest.mark.parametrize("name", list(envs.ENVS))
def test_a_fixed_seed_rollout_gives_the_same_returns_on_numpy_and_strict_and_the_same_states_on_jax(name):
    """float32. array-api-strict runs NumPy's kernels: the same returns, bit for bit, on both its devices. JAX
    and PyTorch compute sin and cos with their own kernels, a few ulp apart; the states of the first 50 steps
    agree within 1e-4 (values of magnitude ≤ 9π after 50 steps of rounding each ≲ 1e-6 relative), though a
    chaotic system (Acrobot) later turns such differences into other returns."""
    returns, states = {}, {}
    for backend in BACKEND_NAMES:
        b = get_backend(backend)
        env = envs.ENVS[name](b.xp, device=b.device)
        key = envs.EpisodeKey(1, 2, range(64))
        returns[backend] = np_of(rollout(env, _fixed_policy(env), None, key).returns)
        states[backend] = np_of(rollout(env, _fixed_policy(env), None, key, steps=50, record=True).observations)
    reference = returns["numpy"]
    assert len(np.unique(reference)) > 1
    for backend in ("strict", "strict_no_x64"):
        np.testing.assert_array_equal(returns[backend], reference, err_msg=backend)
    for backend in set(BACKEND_NAMES) - {"numpy", "strict", "strict_no_x64"}:  # JAX and PyTorch: own kernels
        np.testing.assert_allclose(states[backend], states["numpy"], atol=1e-4, err_msg=backend)


def test_a_population_rollout_is_bit_identical_on_numpy_and_strict():
    """The same MLP population on both (JAX's float32 matrix products round differently, and CartPole, an
    unstable system, turns a flipped decision into another return: equality there would be luck)."""
    model = MLP((4, 8, 2), activation="tanh")
    results = []
    for backend in ("numpy", "strict"):
        b = get_backend(backend)
        es = egg.EGGROLL(population_size=16, sigma=0.5, seed=1)
        pop = es.ask(es.init(model.init(b.xp, seed=0, device=b.device)))
        env = envs.CartPole(b.xp, device=b.device)
        results.append(np_of(rollout(env, discrete_policy(model), pop, envs.EpisodeKey(5, 2, range(16))).returns))
    np.testing.assert_array_equal(results[1], results[0])
    assert len(np.unique(results[0])) > 1


def _peak_bytes(call) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_rollout_holds_one_step_of_state_unless_it_records():
    env, n = envs.Pendulum(np), 2000
    key = envs.EpisodeKey(0, 0, range(n))
    policy = lambda ops, obs: np.zeros((obs.shape[0], 1), np.float32)  # noqa: E731
    short = _peak_bytes(lambda: rollout(env, policy, None, key, steps=20))
    long = _peak_bytes(lambda: rollout(env, policy, None, key, steps=200))
    recorded = _peak_bytes(lambda: rollout(env, policy, None, key, steps=200, record=True))
    trajectory = 200 * n * env.observation_size * 4  # float32 observations of every step
    assert long < short + trajectory / 10  # ten times the steps, no growth beyond a tenth of a trajectory
    assert recorded > trajectory
    result = rollout(env, policy, None, key, steps=3, record=True)
    assert result.observations.shape == (3, n, 3)


def test_invalid_discrete_actions_are_an_error_unless_unchecked():
    env = envs.CartPole(np)
    key = envs.EpisodeKey(0, 0, range(4))
    with pytest.raises(ValueError, match=r"integers in \[0, 2\)"):
        rollout(env, lambda ops, obs: np.full(obs.shape[0], 2, np.int32), None, key)
    with pytest.raises(ValueError, match="a rollout of 4 states, 1 per member, needs a population of 4; got 6"):
        es = egg.EGGROLL(population_size=6, sigma=0.1)
        model = MLP((4, 2))
        rollout(env, discrete_policy(model), es.ask(es.init(model.init(np))), key)


def test_argmax_actions_take_the_first_largest_logit():
    logits = np.asarray([[0.0, 1.0, 1.0], [2.0, 2.0, 0.0], [-1.0, -3.0, -0.5]], np.float32)
    np.testing.assert_array_equal(argmax_actions(np, logits), np.argmax(logits, axis=-1))
    assert argmax_actions(np, logits).dtype == np.int32


def test_continuous_policy_maps_the_outputs_onto_the_action_box():
    model = MLP((3, 1))
    params = {"layers.0.w": np.asarray([[100.0, -100.0, 0.0]], np.float32), "layers.0.b": np.zeros(1, np.float32)}
    obs = np.asarray([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    actions = continuous_policy(model, -2.0, 2.0)(egg.MeanOps(params), obs)
    np.testing.assert_allclose(actions[:, 0], [2.0, -2.0, 0.0], atol=1e-6)


def test_several_episodes_per_member_equal_one_rollout_per_member_and_row():
    """episodes=E: member j's policy acts on rows jE … jE + E − 1; each row's return is what a rollout of that
    member alone from that row's state gives."""
    model = MLP((3, 8, 1), activation="tanh")
    es = egg.EGGROLL(population_size=4, sigma=0.5, seed=3)
    pop = es.ask(es.init(model.init(np, seed=0)))
    env = envs.Pendulum(np)
    states = env.initial(envs.EpisodeKey(0, 1, range(12)))
    policy = continuous_policy(model, -2.0, 2.0)
    together = rollout(env, policy, pop, states, steps=30, episodes=3).returns
    assert together.shape == (12,)
    for j in range(4):
        member = egg.MeanOps(pop.member(j))
        alone = rollout(env, policy, member, states[3 * j : 3 * j + 3], steps=30).returns
        np.testing.assert_allclose(together[3 * j : 3 * j + 3], alone, rtol=1e-4)  # W + σab formed vs low rank
    with pytest.raises(ValueError, match="6 states, 3 per member, needs a population of 2; got 4"):
        rollout(env, policy, pop, states[:6], episodes=3)
    with pytest.raises(ValueError, match="cannot hold episodes=5"):
        rollout(env, policy, pop, states, episodes=5)
