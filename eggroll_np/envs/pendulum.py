"""Pendulum-v1: swing a pendulum up and hold it upright with a bounded torque, semi-implicit Euler steps of
0.05 s. State (θ, θ̇) with θ = 0 upright (θ itself is not wrapped, as in Gymnasium); action (u,), u ∈ [−2, 2]."""

from __future__ import annotations

import math

from ._base import ContinuousEnv

__all__ = ["Pendulum"]

GRAVITY = 10.0
MASS = 1.0
LENGTH = 1.0
DT = 0.05
MAX_SPEED = 8.0
MAX_TORQUE = 2.0


class Pendulum(ContinuousEnv):
    """Pendulum-v1 batched: state (θ, θ̇), observation (cos θ, sin θ, θ̇), action (u,) clipped to [−2, 2]."""

    name = "Pendulum-v1"
    observation_size = 3
    max_steps = 200
    action_low = -MAX_TORQUE
    action_high = MAX_TORQUE
    reset_box = ((-math.pi, math.pi), (-1.0, 1.0))

    def transition(self, state, action, rng=None, *, check=True):
        """θ̇' = clip(θ̇ + (3g/(2l) sin θ + 3/(m l²) u)·dt, ±8), θ' = θ + θ̇'·dt, with u clipped to ±2.
        (`check` is there for the protocol: a continuous action has no values to refuse.)"""
        u = self._action(state, action)
        theta, theta_dot = self._columns(state)
        theta_acc = 3 * GRAVITY / (2 * LENGTH) * self.xp.sin(theta) + 3.0 / (MASS * LENGTH**2) * u
        new_theta_dot = self.xp.clip(theta_dot + theta_acc * DT, -MAX_SPEED, MAX_SPEED)
        return self._stack(theta + new_theta_dot * DT, new_theta_dot)

    def observation(self, state, rng=None):
        """(cos θ, sin θ, θ̇)."""
        theta, theta_dot = self._columns(state)
        return self._stack(self.xp.cos(theta), self.xp.sin(theta), theta_dot)

    def reward(self, state, action, next_state, rng=None):
        """−(ψ² + 0.1 θ̇² + 0.001 u²) from the state before the step, ψ = ((θ + π) mod 2π) − π, u clipped."""
        u = self._action(state, action)
        theta, theta_dot = self._columns(state)
        psi = (theta + math.pi) % (2 * math.pi) - math.pi
        return -(psi**2 + 0.1 * theta_dot**2 + 0.001 * u**2)

    def terminal(self, state, rng=None):
        """Never: an episode ends only at the time limit."""
        return self.xp.zeros((self._members(state),), dtype=self.xp.bool, device=self.device)
