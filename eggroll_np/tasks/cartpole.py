"""CartPole-v1: an MLP policy evolved by EGGROLL, one environment per member, all stepped together.

Policy: logits = MLP(obs) on the 4 observations (cart position, cart velocity, pole angle, pole angular
velocity), action = argmax(logits) (0 pushes left, 1 right): deterministic, so a return depends only on the
parameters and the episode's initial state.

Fitness of member i: the return of its own episode, Rᵢ = Σₜ rₜ = the number of steps until the first
termination (the pole tilts past 12° or the cart leaves [−2.4, 2.4]) or truncation at --max-steps, so an
integer in [1, max_steps]. By default the episodes run on `eggroll_np.envs.CartPole` on the run's backend
(`tasks.control`: initial states from (seed, generation, member)); with --env gymnasium they run in one
Gymnasium `CartPoleVectorEnv` on the host, reset from one seed drawn from (seed, generation), the whole
population's actions coming from one batched forward pass either way. Fitness is a pure function of
(params, generation, config).

Evaluation: the mean parameters θ on --eval-episodes episodes (20 by default) from fixed initial states that
depend on neither the generation nor the run's seed, so every evaluation of every run faces the same initial
states, which no training generation shares.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .. import envs
from .._array_api import to_numpy
from .._checks import choice
from ..ops import MeanOps
from . import Option
from .control import ControlTask, control_options

__all__ = ["CartPoleTask", "episode_returns", "make_cartpole"]

# Distinct entropy words keep the training seeds (seed, generation, _TRAIN) apart from the evaluation's.
_TRAIN, _EVAL = 0x6361_7274, 0x6576_616C


def make_cartpole(num_envs: int, max_steps: int):
    """Gymnasium's native vectorized CartPole-v1 (`CartPoleVectorEnv`): `num_envs` environments stepped with
    one NumPy array of actions, each truncated after `max_steps` steps."""
    try:
        import gymnasium
    except ImportError:
        raise ImportError("the cartpole task needs Gymnasium: pip install 'eggroll-np[examples]'") from None
    return gymnasium.make_vec(
        "CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point", max_episode_steps=max_steps
    )


def episode_returns(env, policy, seed: int) -> np.ndarray:
    """The return of every environment's first episode after `env.reset(seed=seed)`, float64 (num_envs,).

    policy: observations (num_envs, 4) → actions (num_envs,) as NumPy integers. The vector env resets an
    environment on the step after its episode ends (Gymnasium's next-step autoreset) and goes on stepping
    it, so rewards count only until each environment's first termination or truncation, and stepping stops
    once every episode has ended (at the latest at the env's truncation limit).
    """
    obs, _ = env.reset(seed=seed)
    returns = np.zeros(env.num_envs)
    done = np.zeros(env.num_envs, dtype=bool)
    while not done.all():
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        returns += np.where(done, 0.0, reward)
        done |= terminated | truncated
    return returns


def _reset_seed(*entropy: int) -> int:
    """A reset seed in [0, 2⁶⁴) drawn from the integers `entropy` by NumPy's SeedSequence (no global state)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, dtype=np.uint64)[0])


class CartPoleTask(ControlTask):
    """CartPole-v1 on `eggroll_np.envs.CartPole` (the default, any backend), or with --env gymnasium on
    Gymnasium's own `CartPoleVectorEnv` (NumPy on the host, reset from seeds drawn from (seed, generation))."""

    env_class = envs.CartPole
    observation_scale = (1.0, 1.0, 1.0, 1.0)
    summary = "MLP policy on CartPole-v1, one environment per member (goal: return 500)"
    metric_goal = 500.0
    defaults: ClassVar[dict] = dict(population_size=128, sigma=0.2, learning_rate=0.1, generations=80, eval_every=10)
    options = (
        *control_options(envs.CartPole, hidden=16, layers=1),
        Option("env", str, "native", "native (eggroll_np.envs, on the backend) or gymnasium (CartPoleVectorEnv)"),
    )

    @staticmethod
    def whole_population(config: dict) -> str | None:
        """--env gymnasium steps the whole population's environments in one call."""
        return (
            "cartpole --env gymnasium steps one environment per member in one call"
            if config["env"] == "gymnasium"
            else None
        )

    def __init__(self, config: dict, xp, device, dtype):
        super().__init__(config, xp, device, dtype)
        self.gymnasium = choice("env", config["env"], ("native", "gymnasium")) == "gymnasium"
        if self.gymnasium:
            self.train_env = make_cartpole(config["population_size"], self.steps)
            self.eval_env = make_cartpole(self.episodes, self.steps)

    def _gymnasium_policy(self, ops):
        """obs (n, 4) NumPy → the policy's actions as NumPy int32 (n,)."""
        xp = self.xp

        def act(obs):
            return to_numpy(self.policy(ops, xp.asarray(obs, dtype=self.dtype, device=self.device)))

        return act

    def fitness(self, pop, generation: int):
        """Rᵢ of every member: its own episode (Gymnasium: the N environments reset from (seed, generation))."""
        if not self.gymnasium:
            return super().fitness(pop, generation)
        n = self.train_env.num_envs
        if len(pop) != n:
            raise ValueError(f"--env gymnasium steps one environment per member, population_size={n}; got {len(pop)}")
        seed = _reset_seed(self.seed, generation, _TRAIN)
        returns = episode_returns(self.train_env, self._gymnasium_policy(pop), seed)
        return self.xp.asarray(returns, dtype=self.dtype, device=self.device)

    def evaluate(self, params) -> dict:
        if not self.gymnasium:
            return super().evaluate(params)
        returns = episode_returns(self.eval_env, self._gymnasium_policy(MeanOps(params)), _reset_seed(_EVAL))
        return {"mean_return": float(np.mean(returns)), "min_return": float(np.min(returns))}
