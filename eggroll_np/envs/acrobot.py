"""Acrobot-v1 (Sutton 1996; the dynamics of Sutton & Barto's book): two links hanging from a pivot, a torque of
−1, 0 or +1 on the joint between them, one RK4 step of 0.2 s (no torque noise, Gymnasium's default). State
(θ₁, θ₂, θ̇₁, θ̇₂), θ₁ = 0 hanging down, θ₂ relative to the first link; action 0, 1, 2 is torque a − 1."""

from __future__ import annotations

import math

from ._base import DiscreteEnv

__all__ = ["Acrobot"]

DT = 0.2
GRAVITY = 9.8
L1 = 1.0  # length of link 1
M1 = M2 = 1.0  # link masses
LC1 = LC2 = 0.5  # positions of the links' centres of mass
I1 = I2 = 1.0  # moments of inertia
MAX_VEL_1 = 4 * math.pi
MAX_VEL_2 = 9 * math.pi


def _wrap(xp, angle):
    """The angle shifted by whole turns into [−π, π], as Gymnasium's loop (subtract 2π while above π, add 2π
    while below −π) shifts it: by k = ⌈(θ − π)/2π⌉ turns above, ⌈(−π − θ)/2π⌉ below, none inside."""
    turn = 2 * math.pi
    above = xp.where(angle > math.pi, xp.ceil((angle - math.pi) / turn), xp.zeros_like(angle))
    below = xp.where(angle < -math.pi, xp.ceil((-math.pi - angle) / turn), xp.zeros_like(angle))
    return angle - above * turn + below * turn


class Acrobot(DiscreteEnv):
    """Acrobot-v1 batched: state (θ₁, θ₂, θ̇₁, θ̇₂), observation (cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂),
    action 0, 1 or 2 (torque −1, 0 or +1)."""

    name = "Acrobot-v1"
    observation_size = 6
    max_steps = 500
    n_actions = 3
    reset_box = ((-0.1, 0.1),) * 4

    def _derivative(self, state, torque):
        """ds/dt = (θ̇₁, θ̇₂, θ̈₁, θ̈₂), the book's equations:
        d₁ = m₁l_c1² + m₂(l₁² + l_c2² + 2l₁l_c2 cos θ₂) + I₁ + I₂,  d₂ = m₂(l_c2² + l₁l_c2 cos θ₂) + I₂,
        φ₂ = m₂l_c2 g cos(θ₁ + θ₂ − π/2),
        φ₁ = −m₂l₁l_c2 θ̇₂² sin θ₂ − 2m₂l₁l_c2 θ̇₂θ̇₁ sin θ₂ + (m₁l_c1 + m₂l₁) g cos(θ₁ − π/2) + φ₂,
        θ̈₂ = (a + d₂φ₁/d₁ − m₂l₁l_c2 θ̇₁² sin θ₂ − φ₂) / (m₂l_c2² + I₂ − d₂²/d₁),  θ̈₁ = −(d₂θ̈₂ + φ₁)/d₁."""
        xp = self.xp
        theta1, theta2, dtheta1, dtheta2 = (state[:, i] for i in range(4))
        cos2, sin2 = xp.cos(theta2), xp.sin(theta2)
        d1 = M1 * LC1**2 + M2 * (L1**2 + LC2**2 + 2 * L1 * LC2 * cos2) + I1 + I2
        d2 = M2 * (LC2**2 + L1 * LC2 * cos2) + I2
        phi2 = M2 * LC2 * GRAVITY * xp.cos(theta1 + theta2 - math.pi / 2.0)
        phi1 = (
            -M2 * L1 * LC2 * dtheta2**2 * sin2
            - 2 * M2 * L1 * LC2 * dtheta2 * dtheta1 * sin2
            + (M1 * LC1 + M2 * L1) * GRAVITY * xp.cos(theta1 - math.pi / 2)
            + phi2
        )
        ddtheta2 = (torque + d2 / d1 * phi1 - M2 * L1 * LC2 * dtheta1**2 * sin2 - phi2) / (
            M2 * LC2**2 + I2 - d2**2 / d1
        )
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return self._stack(dtheta1, dtheta2, ddtheta1, ddtheta2)

    def transition(self, state, action, rng=None, *, check=True):
        """One RK4 step of h = 0.2 s at constant torque a − 1: k₁ = f(s), k₂ = f(s + h/2·k₁),
        k₃ = f(s + h/2·k₂), k₄ = f(s + h·k₃), s' = s + h/6·(k₁ + 2k₂ + 2k₃ + k₄); then θ₁, θ₂ wrapped into
        [−π, π] and θ̇₁, θ̇₂ clipped to ±4π, ±9π."""
        xp = self.xp
        action = self._action(state, action, check)
        torque = xp.astype(action, self.dtype) - 1
        k1 = self._derivative(state, torque)
        k2 = self._derivative(state + DT / 2.0 * k1, torque)
        k3 = self._derivative(state + DT / 2.0 * k2, torque)
        k4 = self._derivative(state + DT * k3, torque)
        theta1, theta2, dtheta1, dtheta2 = self._columns(state + DT / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4))
        return self._stack(
            _wrap(xp, theta1),
            _wrap(xp, theta2),
            xp.clip(dtheta1, -MAX_VEL_1, MAX_VEL_1),
            xp.clip(dtheta2, -MAX_VEL_2, MAX_VEL_2),
        )

    def observation(self, state, rng=None):
        """(cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂)."""
        xp = self.xp
        theta1, theta2, dtheta1, dtheta2 = self._columns(state)
        return self._stack(xp.cos(theta1), xp.sin(theta1), xp.cos(theta2), xp.sin(theta2), dtheta1, dtheta2)

    def reward(self, state, action, next_state, rng=None):
        """−1 for every step, 0 for the one that reaches a terminal state."""
        self._action(state, action)
        return self.xp.astype(self.terminal(next_state), self.dtype) - 1

    def terminal(self, state, rng=None):
        """The tip above the bar: −cos θ₁ − cos(θ₁ + θ₂) > 1."""
        theta1, theta2, _, _ = self._columns(state)
        return -self.xp.cos(theta1) - self.xp.cos(theta2 + theta1) > 1.0
