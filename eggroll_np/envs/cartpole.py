"""CartPole-v1 (Barto, Sutton & Anderson 1983): a pole hinged on a cart pushed left or right with a fixed force,
explicit Euler steps of τ = 0.02 s. State (x, ẋ, θ, θ̇); action 0 pushes left, 1 right."""

from __future__ import annotations

import math

from ._base import DiscreteEnv

__all__ = ["CartPole"]

GRAVITY = 9.8
MASS_CART = 1.0
MASS_POLE = 0.1
TOTAL_MASS = MASS_POLE + MASS_CART
HALF_LENGTH = 0.5  # l: half the pole's length
POLE_MOMENT = MASS_POLE * HALF_LENGTH  # m_p·l
FORCE = 10.0
TAU = 0.02
X_THRESHOLD = 2.4
THETA_THRESHOLD = 12 * 2 * math.pi / 360  # 12° in radians


class CartPole(DiscreteEnv):
    """CartPole-v1 batched: state and observation (x, ẋ, θ, θ̇), action 0 (push left) or 1 (push right)."""

    name = "CartPole-v1"
    observation_size = 4
    max_steps = 500
    n_actions = 2
    reset_box = ((-0.05, 0.05),) * 4

    def transition(self, state, action, rng=None, *, check=True):
        """One Euler step: with F = ±10 and t = (F + m_p l θ̇² sin θ)/M,
        θ̈ = (g sin θ − t cos θ) / (l (4/3 − m_p cos² θ / M)),  ẍ = t − m_p l θ̈ cos θ / M,
        then x += τ ẋ, ẋ += τ ẍ, θ += τ θ̇, θ̇ += τ θ̈ (each from the old values)."""
        xp = self.xp
        action = self._action(state, action, check)
        x, x_dot, theta, theta_dot = self._columns(state)
        force = FORCE * (2 * xp.astype(action, self.dtype) - 1)
        cos, sin = xp.cos(theta), xp.sin(theta)
        temp = (force + POLE_MOMENT * theta_dot**2 * sin) / TOTAL_MASS
        theta_acc = (GRAVITY * sin - cos * temp) / (HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / TOTAL_MASS))
        x_acc = temp - POLE_MOMENT * theta_acc * cos / TOTAL_MASS
        return self._stack(x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc)

    def reward(self, state, action, next_state, rng=None):
        """1 for every step, the terminating one included."""
        self._action(state, action)
        return self.xp.ones((self._members(next_state),), dtype=self.dtype, device=self.device)

    def terminal(self, state, rng=None):
        """|x| > 2.4 or |θ| > 12°."""
        x, _, theta, _ = self._columns(state)
        return (x < -X_THRESHOLD) | (x > X_THRESHOLD) | (theta < -THETA_THRESHOLD) | (theta > THETA_THRESHOLD)
