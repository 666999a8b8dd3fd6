"""Gymnasium's CartPole-v1: an MLP policy evolved by EGGROLL, one environment per member, all stepped together.

Policy: logits = MLP(obs) on the 4 observations (cart position, cart velocity, pole angle, pole angular
velocity), action = argmax(logits) (0 pushes left, 1 right): deterministic, so a return depends only on the
parameters and the episode's initial state.

Fitness of member i: the return of its own episode, Rᵢ = Σₜ rₜ = the number of steps until the first
termination (the pole tilts past 12° or the cart leaves [−2.4, 2.4]) or truncation at --max-steps, so an
integer in [1, max_steps]. The N episodes run in one Gymnasium `CartPoleVectorEnv` (N environments stepped
with one array of actions), the whole population's actions coming from one batched forward pass
(`MLP.apply(pop, obs, shared=False)`, obs (N, 4) one row per member). The environments reset from one seed
drawn from (seed, generation), so fitness is a pure function of (params, generation, config).

Evaluation: the mean parameters θ on --eval-episodes episodes (20 by default) from a fixed reset seed that
depends on neither the generation nor the run's seed, so every evaluation of every run faces the same initial
states, which no training generation shares.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._array_api import to_numpy
from .._checks import integer
from ..models import MLP
from ..ops import MeanOps
from . import Option

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


class CartPoleTask:
    summary = "MLP policy on Gymnasium's CartPole-v1, one environment per member (goal: return 500)"
    metric = "mean_return"
    metric_goal = 500.0
    defaults: ClassVar[dict] = dict(population_size=128, sigma=0.2, learning_rate=0.1, generations=80, eval_every=10)
    options = (
        Option("hidden", int, 16, "hidden units of the policy MLP (4 -> hidden -> 2)"),
        Option("eval_episodes", int, 20, "episodes of each evaluation of the mean params"),
        Option("max_steps", int, 500, "steps after which an episode is truncated"),
    )

    def __init__(self, config: dict, xp, device, dtype):
        hidden, episodes, steps = (integer(key, config[key], 1) for key in ("hidden", "eval_episodes", "max_steps"))
        self.xp, self.device, self.dtype = xp, device, dtype
        self.seed = config["seed"]
        self.model = MLP((4, hidden, 2), activation="tanh")
        self.train_env = make_cartpole(config["population_size"], steps)
        self.eval_env = make_cartpole(episodes, steps)

    def init_params(self, seed: int) -> dict:
        """The MLP's init (LeCun normal, biases 0) with the output weights at zero: the mean policy starts with
        tied logits (argmax: always push left) and each member's first choices come from its own perturbation,
        rather than every member inheriting one random bias that σ-sized perturbations cannot flip."""
        params = self.model.init(self.xp, dtype=self.dtype, device=self.device, seed=seed)
        output = f"{self.model.name}.{len(self.model.sizes) - 2}.w"
        return {**params, output: self.xp.zeros_like(params[output])}

    def _policy(self, ops, shared: bool):
        """obs (n, 4) NumPy → the actions of `ops` (a population or MeanOps) as NumPy int32 (n,): the argmax
        of the two logits, 1 where logit₁ > logit₀ and 0 on a tie (compared, not `argmax`, whose int64 result
        some devices without 64-bit integers cannot hold)."""
        xp = self.xp

        def act(obs):
            logits = self.model.apply(ops, xp.asarray(obs, dtype=self.dtype, device=self.device), shared=shared)
            return to_numpy(xp.astype(logits[..., 1] > logits[..., 0], xp.int32))

        return act

    def fitness(self, pop, generation: int):
        """Rᵢ of every member: its own episode, the N environments reset from seed (seed, generation)."""
        n = self.train_env.num_envs
        if len(pop) != n:
            raise ValueError(f"this task steps one environment per member, population_size={n}; got {len(pop)}")
        returns = episode_returns(self.train_env, self._policy(pop, False), _reset_seed(self.seed, generation, _TRAIN))
        return self.xp.asarray(returns, dtype=self.dtype, device=self.device)

    def evaluate(self, params) -> dict:
        returns = episode_returns(self.eval_env, self._policy(MeanOps(params), True), _reset_seed(_EVAL))
        return {"mean_return": float(np.mean(returns)), "min_return": float(np.min(returns))}
