"""One Ray replica: the strategy, the fitness function and a copy of the strategy state on the replica's own
backend and device (NumPy on the host, CuPy on the GPU Ray assigned it, JAX or PyTorch on their default
device). It tells the fitness the driver sends, evaluates its members with the batched forward pass on that
device, and returns their fitness (and, when asked, a fingerprint of its params, or the whole state).

Whether two copies of a state that were told the same fitness agree bit for bit depends on how their library
rounds: `rounding_class` names it (library, device kind), so that the driver knows whose params to compare
with whose.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from .._array_api import (
    backend_namespace,
    has_dtype,
    is_cupy_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)
from ..strategy import EGGROLL, EggrollState
from .evaluators import evaluate_members, host_tree, map_arrays, params_fingerprint
from .packing import PackedSigns, fitness_to_tell

__all__ = ["REPLICA_BACKENDS", "Replica", "on_backend", "rounding_class"]

REPLICA_BACKENDS = ("numpy", "cupy", "jax", "torch")


def rounding_class(xp, dev) -> str:
    """The library and device kind that decide how a computation rounds: "numpy", "cupy:<GPU name>",
    "jax:<platform>:<device kind>", "torch:<device type>[:<GPU name>]"; another library by its name."""
    if is_numpy_namespace(xp):
        return "numpy"
    if is_cupy_namespace(xp):
        import cupy

        return f"cupy:{cupy.cuda.runtime.getDeviceProperties(dev.id)['name'].decode()}"
    if is_jax_namespace(xp):
        return f"jax:{dev.platform}:{dev.device_kind}"
    if is_torch_namespace(xp):
        import torch

        return f"torch:cuda:{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else f"torch:{dev.type}"
    return getattr(xp, "__name__", str(xp))


def on_backend(tree, xp, dev):
    """A host tree (`evaluators.map_arrays`'s kinds, of NumPy arrays) with every array moved to `xp` on
    `dev`; a ValueError names a dtype the device lacks (JAX without x64 has no float64), never a narrowing."""

    def move(host: np.ndarray):
        if not has_dtype(xp, host.dtype.name, dev):
            raise ValueError(
                f"the state holds {host.dtype.name} arrays, which {xp.__name__} lacks on {dev}; use float32 "
                "params (or, for JAX, enable x64 with JAX_ENABLE_X64=1 on every node)"
            )
        return xp.asarray(host, device=dev)

    return map_arrays(tree, move)


class Replica:
    """A Ray actor's state: (es, fitness) and the strategy state on `backend` (a name of REPLICA_BACKENDS);
    `shares_device`: other replicas compute on the same GPU (JAX then allocates GPU memory as it needs it)."""

    def __init__(self, es: EGGROLL, fitness: Callable, backend: str, shares_device: bool = False):
        if backend == "jax" and shares_device:  # XLA would otherwise take 75 % of the GPU for itself
            os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        self.es, self.fitness = es, fitness
        self.xp, self.device = backend_namespace(backend)
        self.state: EggrollState | None = None

    def ready(self) -> tuple[str, str]:
        """(rounding class, the widest float this device has): what the driver needs to know of it."""
        widest = "float64" if has_dtype(self.xp, "float64", self.device) else "float32"
        return rounding_class(self.xp, self.device), widest

    def load(self, host_state: EggrollState, replay: tuple = ()) -> None:
        """Hold `host_state` on this backend, then tell each told fitness of `replay` in order."""
        self.state = EggrollState(*on_backend(tuple(host_state), self.xp, self.device))
        for told in replay:
            self.state, _ = self.es.tell(self.state, self.es.ask(self.state), fitness_to_tell(self.es, told))

    def _advance(self, generation: int, told: np.ndarray | PackedSigns | None) -> None:
        """Tell the previous generation's fitness if given; then the state must be at `generation`."""
        if told is not None:
            self.state, _ = self.es.tell(self.state, self.es.ask(self.state), fitness_to_tell(self.es, told))
        if self.state is None or self.state.generation != generation:
            held = None if self.state is None else self.state.generation
            raise RuntimeError(f"replica holds generation {held}, asked for {generation}: driver bookkeeping bug")

    def evaluate(self, generation: int, told, members: range, want_fingerprint: bool):
        """Tell `told` if given, then evaluate `members` of generation t: (their fitness, fingerprint or None)."""
        self._advance(generation, told)
        fingerprint = params_fingerprint(self.state.params) if want_fingerprint else None
        return evaluate_members(self.es, self.state, members, self.fitness), fingerprint

    def fingerprint(self, generation: int, told) -> str:
        """Tell `told` if given, then return the SHA-256 of the params."""
        self._advance(generation, told)
        return params_fingerprint(self.state.params)

    def host_state(self, generation: int, told) -> EggrollState:
        """Tell `told` if given, then return the state as host NumPy arrays."""
        self._advance(generation, told)
        return EggrollState(*host_tree(tuple(self.state)))

    def run(self, fn: Callable, *args):
        """fn(*args) in this replica's process (`RayEvaluator.run_on_replica`)."""
        return fn(*args)
