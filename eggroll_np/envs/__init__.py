"""Gymnasium's classic-control environments batched over a leading member axis N, in array-API operations only,
so one class runs on NumPy, CuPy, JAX and array-api-strict alike.

Each follows Gymnasium's functional protocol (`FuncEnv`): the environment holds constants, the state is an
array passed in and returned, and nothing is mutated.

    env = CartPole(xp, dtype=xp.float32, device=dev)
    state = env.initial(EpisodeKey(seed, episode, range(N)))    # (N, state_size)
    obs = env.observation(state)                                # (N, observation_size)
    next_state = env.transition(state, action)                  # action: (N,) integers, or (N, 1) floats
    r = env.reward(state, action, next_state)                   # (N,), Gymnasium's reward for that step
    done = env.terminal(next_state)                             # (N,) bool

The state's columns are Gymnasium's `env.unwrapped.state`, in its order. The EpisodeKey(seed, episode, members)
names the rows: member j's initial state is drawn from the counter generator's stream (seed, episode,
stream_id(env.name)), direction j, and mapped onto Gymnasium's reset box, so it depends on (seed, episode, j)
and the dtype only (float32 and float64 draw different bits), whichever range it is drawn in and on every
backend. Transitions are deterministic: the `rng` of the other methods is accepted for the protocol and unused.

Actions. A discrete env (`n_actions`) takes an integer array (N,); a value outside [0, n_actions) is an error,
never wrapped around: `transition(..., check=True)` (the default) reads the values back to the host to check
them, and a caller whose actions are valid by construction (an argmax) passes `check=False`, which a JAX
trace requires. A continuous env (`action_size` = 1, `action_low`, `action_high`) takes a floating array
(N, 1) (not (N,), which would broadcast against (N, 1) silently elsewhere), cast to the env's dtype and
clipped to the bounds as Gymnasium clips it. Shapes and dtypes are always checked; integer actions for a
continuous env and floating ones for a discrete env are a TypeError.

The episode ends at `terminal` or after `max_steps` steps (Gymnasium's TimeLimit); `ENVS` maps each
Gymnasium id to its class.
"""

from ._base import ContinuousEnv, DiscreteEnv, Env, EpisodeKey
from .acrobot import Acrobot
from .cartpole import CartPole
from .mountain_car import MountainCar, MountainCarContinuous
from .pendulum import Pendulum

ENVS = {env.name: env for env in (CartPole, Pendulum, Acrobot, MountainCarContinuous, MountainCar)}

__all__ = [
    "ENVS",
    "Acrobot",
    "CartPole",
    "ContinuousEnv",
    "DiscreteEnv",
    "Env",
    "EpisodeKey",
    "MountainCar",
    "MountainCarContinuous",
    "Pendulum",
]
