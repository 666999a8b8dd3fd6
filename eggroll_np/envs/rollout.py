"""A rollout: N members of an environment stepped together for up to T steps, each with its own policy output,
returning every member's return as one array.

    returns = rollout(env, policy, pop, EpisodeKey(seed, generation, range(N))).returns      # (N,)
    returns = rollout(env, policy, pop, initial_states).returns                              # (N, k) states
    returns = rollout(env, policy, MeanOps(params), EpisodeKey(seed, 0, range(20))).returns  # 20 episodes of θ

policy(ops, observations) → actions is written once against the model ops: observations (N, observation_size)
hold one row per member (or per episode for MeanOps), so a model applies them with `shared=False`, which
MeanOps accepts and ignores. `discrete_policy(model)` and `continuous_policy(model, low, high)` wrap a model's
outputs into actions; `episodes=E` runs E episodes of every member at once.

Member i collects rewards until its first termination (rᵢ,ₜ counts while aliveᵢ,ₜ; aliveᵢ,ₜ₊₁ = aliveᵢ,ₜ ∧
¬terminal(sᵢ,ₜ₊₁)) or truncation after T steps (`steps`, by default the env's `max_steps`, Gymnasium's
TimeLimit), so Rᵢ = Σₜ aliveᵢ,ₜ rᵢ,ₜ. A member that has ended keeps its last state before the end (stepping it
on would only drift towards overflow), so every step works on O(N · state_size) memory; only `record=True` keeps the
(T, N, observation_size) observations. Nothing is read back to the host inside the loop except
`check_actions` (one read per step: the env checks discrete actions are in range) and the early exit every
`exit_check_every` steps (one read: stop once every member has ended); both are the caller's choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .._array_api import device
from .._checks import boolean, function, integer
from ._base import DiscreteEnv, Env, EpisodeKey

__all__ = ["Rollout", "argmax_actions", "continuous_policy", "discrete_policy", "rollout"]


class Rollout(NamedTuple):
    """What a rollout returns: `returns` (N,) Rᵢ, `lengths` (N,) int32 steps until each member ended (T for a
    member truncated), and with record=True the `observations` (T', N, observation_size) it acted on (T' the
    steps run), else None."""

    returns: Any
    lengths: Any
    observations: Any = None


def argmax_actions(xp, logits):
    """The index of each row's largest logit, the first on a tie, as int32 (...,): comparisons only, not
    `argmax`, whose int64 result some devices without 64-bit integers cannot hold."""
    best = logits[..., 0]
    index = xp.zeros(best.shape, dtype=xp.int32, device=device(logits))
    for a in range(1, logits.shape[-1]):
        better = logits[..., a] > best
        best = xp.where(better, logits[..., a], best)
        index = xp.where(better, xp.full_like(index, a), index)
    return index


def discrete_policy(model) -> Callable:
    """policy(ops, obs) = argmax of `model.apply(ops, obs, shared=False)` (one logit per action)."""

    def policy(ops, observations):
        return argmax_actions(ops.xp, model.apply(ops, observations, shared=False))

    return policy


def continuous_policy(model, low: float, high: float) -> Callable:
    """policy(ops, obs) = the model's outputs y mapped onto the action box: low + (high − low)(tanh y + 1)/2."""

    def policy(ops, observations):
        y = ops.xp.tanh(model.apply(ops, observations, shared=False))
        return low + (high - low) * (y + 1) / 2

    return policy


def rollout(
    env: Env,
    policy: Callable,
    ops,
    start,
    *,
    steps: int | None = None,
    check_actions: bool = True,
    exit_check_every: int | None = 50,
    record: bool = False,
    episodes: int = 1,
) -> Rollout:
    """Roll out N members of `env` for up to `steps` steps (module docstring) from `start`: an EpisodeKey (the
    states `env.initial(start)`, N = len(start.members)) or an (N, state_size) array of initial states. ops: a
    Population of N members or MeanOps; policy(ops, observations) → actions as the env takes them.
    check_actions=False skips the env's per-step host read of discrete action values, for actions valid by
    construction (an argmax); exit_check_every=None never reads back inside the loop.

    episodes E > 1 runs E episodes of each member at once: the N·E rows of the states are member j's in rows
    jE … jE + E − 1, the policy sees observations (N, E, observation_size) (per member, as `shared=False`
    expects) and returns actions (N, E, ...), and the returns are per row, (N·E,)."""
    if not isinstance(env, Env):
        raise TypeError(f"env must be an eggroll_np.envs environment, for example envs.CartPole(xp); got {env!r}")
    policy = function("policy", policy)
    steps = env.max_steps if steps is None else integer("steps", steps, 1)
    check_actions, record = boolean("check_actions", check_actions), boolean("record", record)
    if exit_check_every is not None:
        exit_check_every = integer("exit_check_every", exit_check_every, 1)
    xp = env.xp
    state = env.initial(start) if isinstance(start, EpisodeKey) else start
    n = env._members(state)
    episodes = integer("episodes", episodes, 1)
    if n % episodes:
        raise ValueError(f"{n} initial states cannot hold episodes={episodes} per member: pass N·episodes states")
    if hasattr(ops, "layout") and len(ops) * episodes != n:
        raise ValueError(
            f"a rollout of {n} states, {episodes} per member, needs a population of {n // episodes}; got {len(ops)}"
        )
    if episodes > 1:
        act = policy

        def policy(ops, observation):
            grouped = xp.reshape(observation, (n // episodes, episodes, observation.shape[-1]))
            actions = act(ops, grouped)
            return xp.reshape(actions, (n, *actions.shape[2:]))

    returns = xp.zeros((n,), dtype=env.dtype, device=env.device)
    lengths = xp.zeros((n,), dtype=xp.int32, device=env.device)
    alive = xp.ones((n,), dtype=xp.bool, device=env.device)
    observations = []
    for t in range(steps):
        observation = env.observation(state)
        if record:
            observations.append(observation)
        action = policy(ops, observation)
        if isinstance(env, DiscreteEnv):
            next_state = env.transition(state, action, check=check_actions)
        else:
            next_state = env.transition(state, action)
        reward = env.reward(state, action, next_state)
        returns = returns + xp.where(alive, reward, xp.zeros_like(reward))
        lengths = lengths + xp.astype(alive, xp.int32)
        alive = alive & ~env.terminal(next_state)
        state = xp.where(alive[:, None], next_state, state)
        if exit_check_every is not None and (t + 1) % exit_check_every == 0 and not bool(xp.any(alive)):
            break
    return Rollout(returns, lengths, xp.stack(observations, axis=0) if record else None)
