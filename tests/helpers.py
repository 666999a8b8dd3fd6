"""Backends the tests run on, and shared helpers (see conftest.py for the list)."""

from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from typing import Any, NamedTuple

import array_api_strict
import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import random
from eggroll_np._array_api import backend_namespace, to_numpy


class Backend(NamedTuple):
    name: str
    xp: Any
    device: Any

    @property
    def has_float64(self) -> bool:
        return "float64" in self.xp.__array_namespace_info__().dtypes(device=self.device)

    @property
    def float_dtypes(self) -> list:
        return [self.xp.float32, self.xp.float64] if self.has_float64 else [self.xp.float32]

    def asarray(self, value, dtype=None):
        """A host value (NumPy array, list, scalar) as an array of this backend (float64 → float32 where
        the device has no float64)."""
        host = np.asarray(value)
        if dtype is None and host.dtype == np.float64 and not self.has_float64:
            dtype = self.xp.float32
        return self.xp.asarray(host, dtype=dtype, device=self.device)


@functools.cache
def cuda_unavailable() -> str | None:
    """Why the `gpu` tests cannot run here (CuPy missing, or no CUDA device), or None where they can."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # a warning CuPy itself gives on import is no failure of ours
            import cupy
    except ImportError as exc:
        return f"CuPy cannot be imported ({exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises its own CUDA errors where no driver exists
        return f"CuPy finds no CUDA device ({exc})"
    return None if count > 0 else "CuPy finds no CUDA device"


def _make_backend(name: str) -> Backend:
    if name == "strict_no_x64":
        return Backend(name, array_api_strict, array_api_strict.Device("no_x64"))
    if name == "cupy" and cuda_unavailable():
        pytest.skip(cuda_unavailable())
    return Backend(name, *backend_namespace({"strict": "array_api_strict"}.get(name, name)))


BACKEND_NAMES = ["numpy", "strict", "strict_no_x64", "jax", *(["torch"] if importlib.util.find_spec("torch") else [])]
CUPY = pytest.param("cupy", marks=pytest.mark.gpu)
ALL_BACKENDS = [*BACKEND_NAMES, CUPY]
_CACHE: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    if name not in _CACHE:
        _CACHE[name] = _make_backend(name)
    return _CACHE[name]


def np_of(x) -> np.ndarray:
    """Host copy of any array (float arrays as float64 for reference arithmetic)."""
    host = to_numpy(x)
    return host.astype(np.float64) if host.dtype.kind == "f" else host


def ulp_distance(a: np.ndarray, b: np.ndarray, dtype) -> np.ndarray:
    """|a − b| in units of the last place of max(|a|, |b|) at `dtype` (floored at the smallest normal)."""
    finfo = np.finfo(dtype)
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), finfo.tiny)
    return np.abs(a - b) / np.spacing(scale.astype(dtype)).astype(np.float64)


def exact_normals(stream, directions: range, n: int, dtype) -> np.ndarray:
    """The Box–Muller normals of a stream evaluated in float64 on its (bit-identical) uniforms: the exact
    values that every backend's normals approximate. Consecutive uniforms (u₁, u₂) give
    √(−2 ln u₁)·(cos a, sin a) with a = 2π·u₂ rounded to `dtype` as the draws compute it."""
    uniforms = np_of(random.uniform(np, stream, directions, n + n % 2, dtype=dtype, dev="cpu"))
    radius = np.sqrt(-2.0 * np.log(uniforms[:, 0::2]))
    angle = (dtype(2.0 * math.pi) * uniforms[:, 1::2].astype(dtype)).astype(np.float64)
    z = np.empty_like(uniforms)
    z[:, 0::2], z[:, 1::2] = radius * np.cos(angle), radius * np.sin(angle)
    return z[:, :n]


def random_params(backend, shapes: dict, *, seed: int = 0, dtype=None) -> dict:
    """Leaves of the given shapes with standard normal entries (from NumPy, seed `seed`) on `backend`."""
    rng = np.random.default_rng(seed)
    dtype = dtype or backend.xp.float32
    return {name: backend.asarray(rng.standard_normal(shape), dtype=dtype) for name, shape in shapes.items()}


def make_population(
    backend, shapes_or_params: dict, *, population_size: int = 4, seed: int = 0, dtype=None, **settings
):
    """The generation-0 population of an EGGROLL strategy (`settings`: its keyword arguments, sigma 0.3
    unless given) over params given as a dict of arrays, or as a dict of shapes filled by `random_params`."""
    params = shapes_or_params
    if all(isinstance(value, tuple) for value in params.values()):
        params = random_params(backend, params, seed=seed, dtype=dtype)
    es = egg.EGGROLL(population_size=population_size, seed=seed, **{"sigma": 0.3, **settings})
    return es.ask(es.init(params))


def member_magnitudes(pop, i: int) -> dict:
    """Entrywise bound on the terms both paths sum for member i: |θ| + σ|Aₖ||Bₖ|ᵀ/√r for a low-rank leaf
    (it bounds |θᵢ| and the population's rank-r correction alike), |θ| + σ|Eₖ| for a full one."""
    k = i // pop.layout.per_direction  # the row of the noise arrays
    bounds = {}
    for name, theta in pop.params.items():
        noise = pop.noise.get(name)
        if noise is None:
            eps = 0.0
        elif isinstance(noise, egg.noise.LowRankNoise):
            eps = np.abs(np_of(noise.A)[k]) @ np.abs(np_of(noise.B)[k]).T / math.sqrt(pop.rank)
            eps = eps.reshape(theta.shape)
        else:
            eps = np.abs(np_of(noise.E)[k])
        bounds[name] = np.abs(np_of(theta)) + pop.sigma * eps
    return bounds
