"""What every environment shares: the episode key, the dtype, the initial draw, and the checks of states and
actions (shapes and dtypes always, discrete action values on request)."""

from __future__ import annotations

import sys
from typing import NamedTuple

from .. import random
from .._array_api import dtype_name, has_dtype
from .._checks import boolean, integer

__all__ = ["ContinuousEnv", "DiscreteEnv", "Env", "EpisodeKey"]


class EpisodeKey(NamedTuple):
    """The `rng` of `initial`: the episode `episode` of a run seeded `seed`, for the members in `members`
    (a range with step 1 inside [0, 2³²)); member j's initial state depends on (seed, episode, j) only."""

    seed: int
    episode: int
    members: range


def _is_kind(xp, dtype, kind: str) -> bool:
    """Whether `dtype` is of `kind` ('integral', 'real floating') in `xp`; a foreign dtype is of none."""
    try:
        return xp.isdtype(dtype, kind)
    except TypeError:
        return False


def _is_traced(x) -> bool:
    """Whether `x` is a JAX tracer (looked up only where JAX is already imported)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


class Env:
    """An environment batched over a leading member axis N: a state is an (N, state_size) array of `dtype`.

    Subclasses set `name`, `observation_size`, `max_steps` and `reset_box`, Gymnasium's reset range (low, high)
    of each state column (which gives `state_size`), and define `transition`, `reward` and `terminal`.
    """

    name: str
    state_size: int
    observation_size: int
    max_steps: int
    reset_box: tuple[tuple[float, float], ...]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if hasattr(cls, "reset_box"):
            cls.state_size = len(cls.reset_box)

    def __init__(self, xp, *, dtype=None, device=None):
        dtype = xp.float32 if dtype is None else dtype
        if dtype not in (xp.float32, xp.float64):
            raise TypeError(f"{self.name}: dtype={dtype!r} must be float32 or float64 of {xp.__name__}")
        device = xp.__array_namespace_info__().default_device() if device is None else device
        if not has_dtype(xp, dtype_name(dtype), device):
            raise ValueError(
                f"{self.name}: {xp.__name__} has no {dtype_name(dtype)} on device {device!r}; use float32 "
                "(or, on JAX, enable 64-bit types: jax.config.update('jax_enable_x64', True))"
            )
        self.xp, self.dtype, self.device = xp, dtype, device
        low, high = zip(*self.reset_box, strict=True)
        self._low = xp.asarray(low, dtype=dtype, device=device)
        self._width = xp.asarray(high, dtype=dtype, device=device) - self._low

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.xp.__name__}, dtype={dtype_name(self.dtype)}, device={self.device!r})"

    def initial(self, rng: EpisodeKey):
        """(N, state_size) initial states, N = len(rng.members): s = low + (high − low)·u, u ∈ (0, 1] the
        counter generator's uniforms of stream (seed, episode, stream_id(name)), row j from member j alone."""
        if not isinstance(rng, EpisodeKey):
            raise TypeError(f"{self.name}: rng={rng!r} must be an EpisodeKey(seed, episode, members)")
        seed = integer("seed", rng.seed, minimum=0, maximum=2**64 - 1)
        episode = integer("episode", rng.episode, minimum=0, maximum=2**64 - 1)
        members = rng.members
        if not isinstance(members, range) or members.step != 1 or members.start < 0 or members.stop > 2**32:
            raise ValueError(f"{self.name}: members={members!r} must be a range with step 1 inside [0, 2**32)")
        stream = random.derive_key(seed, episode, random.stream_id(self.name))
        u = random.uniform(self.xp, stream, members, self.state_size, dtype=self.dtype, dev=self.device)
        return self._low + self._width * u

    def observation(self, state, rng=None):
        """The observation (N, observation_size) of each member: the state itself."""
        self._members(state)
        return state

    def _members(self, state) -> int:
        """N of a state, after checking that it is an (N, state_size) array of the env's dtype."""
        shape = getattr(state, "shape", None)
        if shape is None or len(shape) != 2 or shape[1] != self.state_size:
            raise ValueError(f"{self.name}: state of shape {shape} must be (N, {self.state_size})")
        if state.dtype != self.dtype:
            raise TypeError(
                f"{self.name}: state of dtype {dtype_name(state.dtype)} must be {dtype_name(self.dtype)}, "
                "the env's dtype"
            )
        return shape[0]

    def _columns(self, state):
        """The state's columns, each an (N,) array."""
        self._members(state)
        return tuple(state[:, i] for i in range(self.state_size))

    def _stack(self, *columns):
        """An (N, k) array from k columns."""
        return self.xp.stack(columns, axis=-1)


class DiscreteEnv(Env):
    """An environment whose actions are integers in [0, n_actions), an array of shape (N,) of any integer dtype."""

    n_actions: int

    def _action(self, state, action, check: bool = False):
        """The checked action (N,): shape and dtype always; with `check`, the values too (one host read)."""
        n = self._members(state)
        shape = getattr(action, "shape", None)
        if shape != (n,):
            raise ValueError(f"{self.name}: action of shape {shape} must be (N,) = ({n},), one integer per member")
        if not _is_kind(self.xp, action.dtype, "integral"):
            raise TypeError(
                f"{self.name}: action of dtype {dtype_name(action.dtype)} must be an integer dtype, for example "
                "xp.astype(xp.argmax(logits, axis=-1), xp.int32)"
            )
        if boolean("check", check):
            if _is_traced(action):
                raise TypeError(
                    f"{self.name}: check=True reads the action values, which JAX is tracing; pass check=False "
                    "where the actions are in range by construction (an argmax over n_actions logits)"
                )
            if bool(self.xp.any((action < 0) | (action >= self.n_actions))):
                low, high = int(self.xp.min(action)), int(self.xp.max(action))
                raise ValueError(
                    f"{self.name}: actions must be integers in [0, {self.n_actions}); got values in [{low}, {high}]"
                )
        return action


class ContinuousEnv(Env):
    """An environment whose actions are real numbers, an array of shape (N, action_size) of any floating dtype
    (cast to the env's dtype); values outside [action_low, action_high] are clipped, as Gymnasium clips them."""

    action_size = 1
    action_low: float
    action_high: float

    def _action(self, state, action, *, clip: bool = True):
        """The action's column (N,) in the env's dtype, clipped to [action_low, action_high] with `clip`."""
        n = self._members(state)
        shape = getattr(action, "shape", None)
        if shape != (n, self.action_size):
            raise ValueError(
                f"{self.name}: action of shape {shape} must be (N, {self.action_size}) = ({n}, {self.action_size}); "
                f"reshape an (N,) array with xp.reshape(action, ({n}, {self.action_size}))"
            )
        if not _is_kind(self.xp, action.dtype, "real floating"):
            raise TypeError(
                f"{self.name}: action of dtype {dtype_name(action.dtype)} must be a floating dtype, for example "
                f"xp.astype(action, xp.{dtype_name(self.dtype)})"
            )
        column = self.xp.astype(action[:, 0], self.dtype)
        return self.xp.clip(column, self.action_low, self.action_high) if clip else column
