"""Classic-control tasks on the package's own array-API environments (`eggroll_np.envs`): an MLP policy evolved
by EGGROLL, one environment per member, the whole rollout on the backend (`envs.rollout`).

Policy: y = MLP(obs / scale) with `--layers` hidden layers of `--hidden` tanh units (scale: a fixed per-task
constant that brings the observations to about [−1, 1]); a discrete action is argmax y, a continuous one
low + (high − low)(tanh y + 1)/2. The output weights start at zero, so the mean policy starts neutral (the
first action, or the middle of the action box) and each member's first choices come from its perturbation.

Fitness of member i: the mean return of its own `--episodes` episodes (1 but for Pendulum's 4), from the initial
states the counter generator gives (seed, generation, ·) for its direction k(i) (`envs.EpisodeKey`): the two members
of an antithetic pair start from the same states (common random numbers: their fitness difference measures their
perturbation, not their luck of the draw), and a member's episode does not depend on which slice of the population
evaluates it, so fitness is a pure function of (params, generation, config). Rewards count until the first
termination or truncation at `--max-steps` (the env's TimeLimit by default).

Evaluation: the mean parameters on `--eval-episodes` episodes (20) from EpisodeKey(0, 2⁶⁴ − 1, ...), an
episode index no training generation reaches, so every evaluation of every run faces the same initial states.
"""

from __future__ import annotations

from typing import ClassVar

from .. import envs
from .._array_api import device, is_cupy_namespace, is_jax_namespace, to_numpy
from .._checks import integer
from ..envs.rollout import continuous_policy, discrete_policy, rollout
from ..models import MLP
from ..ops import MeanOps
from . import Option

__all__ = ["AcrobotTask", "ControlTask", "MountainCarTask", "PendulumTask", "control_options"]

EVALUATION_KEY = (0, 2**64 - 1)  # (seed, episode) of every evaluation
DEVICE_EXIT_CHECK = 25  # steps between the rollout's checks for its end on CuPy and JAX


def control_options(env_class, hidden: int, layers: int, episodes: int = 1) -> tuple[Option, ...]:
    """The options every control task shares, with its own defaults."""
    return (
        Option("hidden", int, hidden, "hidden units per layer of the policy MLP"),
        Option("layers", int, layers, "hidden layers of the policy MLP"),
        Option("episodes", int, episodes, "episodes per member each generation; its fitness is their mean return"),
        Option("eval_episodes", int, 20, "episodes of each evaluation of the mean params"),
        Option("max_steps", int, env_class.max_steps, "steps after which an episode is truncated"),
    )


class _ScaledPolicy:
    """The MLP applied to obs / scale."""

    def __init__(self, model, scale):
        self.model, self.scale = model, scale

    def apply(self, ops, observations, *, shared: bool = True):
        xp = ops.xp
        scale = xp.asarray(self.scale, dtype=observations.dtype, device=device(observations))
        return self.model.apply(ops, observations / scale, shared=shared)


class ControlTask:
    """An MLP policy on one `eggroll_np.envs` environment (module docstring). Subclasses set `env_class`,
    `observation_scale`, `summary`, `metric_goal`, `defaults` and `options`."""

    env_class: ClassVar[type]
    observation_scale: ClassVar[tuple[float, ...]]
    metric = "mean_return"

    def __init__(self, config: dict, xp, device, dtype):
        hidden, layers = integer("hidden", config["hidden"], 1), integer("layers", config["layers"], 1)
        self.episodes = integer("eval_episodes", config["eval_episodes"], 1)
        self.per_member = integer("episodes", config["episodes"], 1)
        self.steps = integer("max_steps", config["max_steps"], 1)
        self.xp, self.device, self.dtype, self.seed = xp, device, dtype, config["seed"]
        self.env = self.env_class(xp, dtype=dtype, device=device)
        discrete = isinstance(self.env, envs.DiscreteEnv)
        outputs = self.env.n_actions if discrete else self.env.action_size
        self.model = MLP((self.env.observation_size, *[hidden] * layers, outputs), activation="tanh")
        scaled = _ScaledPolicy(self.model, self.observation_scale)
        if discrete:
            self.policy = discrete_policy(scaled)
        else:
            self.policy = continuous_policy(scaled, self.env.action_low, self.env.action_high)

    def init_params(self, seed: int) -> dict:
        """The MLP's init (LeCun normal, biases 0) with the output weights at zero (module docstring)."""
        params = self.model.init(self.xp, dtype=self.dtype, device=self.device, seed=seed)
        output = f"{self.model.name}.{len(self.model.sizes) - 2}.w"
        return {**params, output: self.xp.zeros_like(params[output])}

    def _returns(self, ops, start, episodes: int = 1):
        """The rollout's returns; it stops once every member has ended, checked every step on the host and
        every `DEVICE_EXIT_CHECK` steps on a device, where each check is a read back."""
        every = DEVICE_EXIT_CHECK if is_cupy_namespace(self.xp) or is_jax_namespace(self.xp) else 1
        result = rollout(
            self.env, self.policy, ops, start, steps=self.steps, check_actions=False, exit_check_every=every,
            episodes=episodes,
        )  # fmt: skip
        return result.returns

    def fitness(self, pop, generation: int):
        """Rᵢ of every member: the mean return of its E = `--episodes` episodes, from the initial states
        E·k(i) … E·k(i) + E − 1 of EpisodeKey(seed, generation, ...), shared by the pair's two members."""
        xp, per_member, n = self.xp, self.per_member, len(pop)
        first, last = pop.direction(0), pop.direction(n - 1)
        key = envs.EpisodeKey(self.seed, generation, range(per_member * first, per_member * (last + 1)))
        row = xp.arange(n * per_member, dtype=xp.int32, device=self.device)  # member row // E, episode row % E
        direction = (pop.offset + row // per_member) // pop.layout.per_direction
        states = xp.take(self.env.initial(key), per_member * (direction - first) + row % per_member, axis=0)
        returns = self._returns(pop, states, per_member)
        return xp.mean(xp.reshape(returns, (len(pop), per_member)), axis=1)

    def evaluate(self, params) -> dict:
        returns = to_numpy(self._returns(MeanOps(params), envs.EpisodeKey(*EVALUATION_KEY, range(self.episodes))))
        return {"mean_return": float(returns.mean()), "min_return": float(returns.min())}


class PendulumTask(ControlTask):
    env_class = envs.Pendulum
    observation_scale = (1.0, 1.0, 8.0)
    summary = "MLP policy on Pendulum-v1 (array-API env), one environment per member (goal: return ≥ −200)"
    metric_goal = -200.0
    # The sign of each antithetic pair's difference: both members start from the same states, so the
    # difference measures the perturbation; ranks over all members mostly rank the initial states (about −800
    # after 1500 generations with centered_rank). Four episodes per member and σ 0.05, lr 0.1 reach −200 on
    # seeds 0, 1 and 2 (one episode: −243, −249, −260; docs/envs.md has the sweep).
    defaults: ClassVar[dict] = dict(
        population_size=256, sigma=0.05, learning_rate=0.1, shaping="sign", generations=500, eval_every=25
    )
    options = control_options(envs.Pendulum, hidden=32, layers=2, episodes=4)


class AcrobotTask(ControlTask):
    env_class = envs.Acrobot
    observation_scale = (1.0, 1.0, 1.0, 1.0, 12.6, 28.3)
    summary = "MLP policy on Acrobot-v1 (array-API env), one environment per member (goal: return ≥ −100)"
    metric_goal = -100.0
    defaults: ClassVar[dict] = dict(population_size=256, sigma=0.5, learning_rate=0.1, generations=100, eval_every=10)
    options = control_options(envs.Acrobot, hidden=32, layers=1)


class MountainCarTask(ControlTask):
    env_class = envs.MountainCarContinuous
    observation_scale = (1.2, 0.07)
    summary = "MLP policy on MountainCarContinuous-v0 (array-API env), one env per member (goal: return ≥ 90)"
    metric_goal = 90.0
    defaults: ClassVar[dict] = dict(population_size=256, sigma=0.5, learning_rate=0.05, generations=100, eval_every=10)
    options = control_options(envs.MountainCarContinuous, hidden=16, layers=1)
