"""MountainCar-v0 and MountainCarContinuous-v0 (Moore 1990): an under-powered car in a valley, on the curve
y = sin 3x, must rock back and forth to reach the flag on the right hill. State (position, velocity)."""

from __future__ import annotations

from ._base import ContinuousEnv, DiscreteEnv

__all__ = ["MountainCar", "MountainCarContinuous"]

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07
HILL_GRAVITY = 0.0025  # the slope's pull: −0.0025 cos 3x per step
FORCE = 0.001  # MountainCar-v0: the push of one discrete action
POWER = 0.0015  # MountainCarContinuous-v0: the push of a unit action
GOAL = 0.5  # MountainCar-v0
GOAL_CONTINUOUS = 0.45  # MountainCarContinuous-v0


class _MountainCarBase:
    """The dynamics both cars share, after the push changed the velocity."""

    observation_size = 2
    reset_box = ((-0.6, -0.4), (0.0, 0.0))
    goal: float

    def _move(self, position, velocity):
        """v' clipped to ±0.07, x' = clip(x + v', −1.2, 0.6), and v' = 0 where x' is at the left wall and v' < 0."""
        xp = self.xp
        velocity = xp.clip(velocity, -MAX_SPEED, MAX_SPEED)
        position = xp.clip(position + velocity, MIN_POSITION, MAX_POSITION)
        velocity = xp.where((position == MIN_POSITION) & (velocity < 0), xp.zeros_like(velocity), velocity)
        return self._stack(position, velocity)

    def terminal(self, state, rng=None):
        """At the flag: position ≥ goal and velocity ≥ 0."""
        position, velocity = self._columns(state)
        return (position >= self.goal) & (velocity >= 0)


class MountainCar(_MountainCarBase, DiscreteEnv):
    """MountainCar-v0 batched: state and observation (x, v), action 0 (push left), 1 (none) or 2 (push right)."""

    name = "MountainCar-v0"
    max_steps = 200
    n_actions = 3
    goal = GOAL

    def transition(self, state, action, rng=None, *, check=True):
        """v' = v + (a − 1)·0.001 − 0.0025 cos 3x (action 0 pushes left, 1 not at all, 2 right), then `_move`."""
        action = self._action(state, action, check)
        position, velocity = self._columns(state)
        push = (self.xp.astype(action, self.dtype) - 1) * FORCE
        return self._move(position, velocity + (push + self.xp.cos(3 * position) * -HILL_GRAVITY))

    def reward(self, state, action, next_state, rng=None):
        """−1 for every step."""
        self._action(state, action)
        return -self.xp.ones((self._members(next_state),), dtype=self.dtype, device=self.device)


class MountainCarContinuous(_MountainCarBase, ContinuousEnv):
    """MountainCarContinuous-v0 batched: state and observation (x, v), action (a,), the force clipped to
    [−1, 1]."""

    name = "MountainCarContinuous-v0"
    max_steps = 999
    action_low = -1.0
    action_high = 1.0
    goal = GOAL_CONTINUOUS

    def transition(self, state, action, rng=None, *, check=True):
        """v' = v + f·0.0015 − 0.0025 cos 3x with the force f = clip(a, −1, 1), then `_move`. (`check` is there
        for the protocol: a continuous action has no values to refuse.)"""
        force = self._action(state, action)
        position, velocity = self._columns(state)
        return self._move(position, velocity + (force * POWER - HILL_GRAVITY * self.xp.cos(3 * position)))

    def reward(self, state, action, next_state, rng=None):
        """100 at the flag, minus 0.1·a² for the action a as given (Gymnasium charges the unclipped action)."""
        a = self._action(state, action, clip=False)
        return 100.0 * self.xp.astype(self.terminal(next_state), self.dtype) - a**2 * 0.1
