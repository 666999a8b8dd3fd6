"""The one door to the array API: every other module gets its namespace and helpers from here.

Re-exports what array-api-compat provides (`array_namespace`, `device`, `is_*`) and adds the few helpers
the standard lacks. Public functions infer `xp` from their inputs; private ones receive `xp` explicitly.
"""

from __future__ import annotations

import math
import sys
from importlib import import_module
from typing import Any

import numpy as np
from array_api_compat import (
    array_namespace,
    device,
    is_array_api_obj,
    is_array_api_strict_namespace,
    is_cupy_array,
    is_cupy_namespace,
    is_jax_array,
    is_jax_namespace,
    is_numpy_array,
    is_numpy_namespace,
    is_torch_array,
    is_torch_namespace,
)

__all__ = [
    "BACKENDS",
    "array_namespace",
    "as_namespace_array",
    "backend_namespace",
    "detached",
    "device",
    "dtype_name",
    "fori_loop",
    "has_dtype",
    "index_dtype",
    "is_array_api_obj",
    "is_array_api_strict_namespace",
    "is_cupy_namespace",
    "is_floating_dtype",
    "is_jax_array",
    "is_jax_namespace",
    "is_numpy_namespace",
    "is_torch_namespace",
    "is_traced",
    "namespace_and_device",
    "prod",
    "searchsorted",
    "sum_of_squares",
    "to_numpy",
]

Array = Any


def has_dtype(xp, dtype_name: str, dev) -> bool:
    """Whether namespace `xp` offers the dtype named `dtype_name` on device `dev`.

    JAX without x64 and array-api-strict's `no_x64` device lack 64-bit types; asking the namespace is the
    only reliable test (JAX silently narrows a requested uint64 to uint32).
    """
    info = getattr(xp, "__array_namespace_info__", None)
    if info is None:
        return hasattr(xp, dtype_name)
    try:
        return dtype_name in info().dtypes(device=dev)
    except TypeError:
        return dtype_name in info().dtypes()


def dtype_name(dtype) -> str:
    """A dtype's short name in every library: 'float32', not 'torch.float32' or 'array_api_strict.float32'
    (NumPy understands its own dtypes and JAX's; others go by their printed name)."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


def index_dtype(xp, dev):
    """The namespace's default index dtype on `dev` (int64, or int32 where 64-bit integers are missing)."""
    return xp.__array_namespace_info__().default_dtypes(device=dev)["indexing"]


def is_floating_dtype(xp, dtype) -> bool:
    """Whether `dtype` is a real floating-point dtype of `xp`; a dtype the namespace does not know (ml_dtypes'
    bfloat16 on NumPy or CuPy) is not."""
    try:
        return xp.isdtype(dtype, "real floating")
    except TypeError:
        return False


def namespace_and_device(arrays: dict[str, Array]):
    """The single namespace and device of a mapping of arrays, or a ValueError naming the odd ones out."""
    names = list(arrays)
    namespaces = {}
    for name in names:
        value = arrays[name]
        if not is_array_api_obj(value):
            raise TypeError(
                f"leaf {name!r} is a {type(value).__name__}, not an array; pass arrays of one array library "
                "(for example numpy.asarray(value, dtype=numpy.float32))"
            )
        namespaces.setdefault(array_namespace(value), []).append(name)
    if len(namespaces) > 1:
        groups = "; ".join(f"{xp.__name__}: {', '.join(map(repr, group))}" for xp, group in namespaces.items())
        raise ValueError(f"params come from more than one array library ({groups}); convert them to one")
    xp = next(iter(namespaces))
    devices = {}
    for name in names:
        devices.setdefault(str(device(arrays[name])), []).append(name)
    if len(devices) > 1:
        groups = "; ".join(f"{dev}: {', '.join(map(repr, group))}" for dev, group in devices.items())
        raise ValueError(f"params live on more than one device ({groups}); move them to one device")
    return xp, device(arrays[names[0]])


def is_traced(x) -> bool:
    """Whether x is a JAX tracer: a value inside jax.jit or lax.scan, with no concrete value to read."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.core.Tracer)


def fori_loop(count: int, body, carry, unroll: int = 1):
    """carry ← body(j, carry) for j = 0 … count − 1 as one JAX loop (lax.fori_loop, `unroll` iterations per
    step; for traced values, whose loop XLA compiles once and whose carry it stores between steps)."""
    return sys.modules["jax"].lax.fori_loop(0, count, body, carry, unroll=unroll)


def detached(x):
    """`x` cut from PyTorch's autograd graph where it is a tensor that requires grad (ES needs no graph, and
    one would hold every generation's activations); any other array as it is."""
    if is_torch_array(x) and x.requires_grad:
        return x.detach()
    return x


def to_numpy(x) -> np.ndarray:
    """A host NumPy copy of any array (a device transfer: use off the hot path only)."""
    if is_numpy_array(x) or isinstance(x, (list, tuple, int, float)):
        return np.asarray(x)
    if is_cupy_array(x):
        return x.get()
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.from_dlpack(x)


def as_namespace_array(x, xp, dev, dtype=None) -> Array:
    """`x` (an array of any library, a NumPy array, a list or a scalar) as an array of `xp` on `dev`.

    Arrays already of `xp` are passed through (cast to `dtype` if given), so the common case costs nothing.
    Arrays of another library go through the host.
    """
    if is_array_api_obj(x) and array_namespace(x) is xp:
        if dtype is not None and x.dtype != dtype:
            x = xp.astype(x, dtype)
        return x
    host = to_numpy(x)
    if dtype is None and (host.dtype.kind not in "fc" or not has_dtype(xp, host.dtype.name, dev)):
        dtype = xp.float64 if has_dtype(xp, "float64", dev) else xp.float32
    return xp.asarray(host, dtype=dtype, device=dev)


def searchsorted(xp, sorted_values, values, side: str):
    """xp.searchsorted(sorted_values, values, side=side).

    array-api-strict's devices without int64 (`no_x64`) still return int64 indices from index functions and
    then refuse them; there it runs on the default device and returns int32, the device's index dtype.
    """
    dev = device(sorted_values)
    if is_array_api_strict_namespace(xp) and not has_dtype(xp, "int64", dev):
        default = xp.Device("CPU_DEVICE")
        found = xp.searchsorted(sorted_values.to_device(default), values.to_device(default), side=side)
        return xp.astype(found, xp.int32).to_device(dev)
    return xp.searchsorted(sorted_values, values, side=side)


def sum_of_squares(xp, arrays) -> Array:
    """Σ over all arrays of Σ x², as a 0-D array (the square of a global L2 norm)."""
    total = None
    for a in arrays:
        term = xp.sum(a * a)
        total = term if total is None else total + term
    return total


def prod(shape) -> int:
    """Number of elements of a shape tuple."""
    return math.prod(shape)


def _modules(backend: str, needs: str, *names: str) -> list:
    """The modules `names` that a backend needs, or an ImportError saying what to pip install (`needs`)."""
    try:
        return [import_module(name) for name in names]
    except ImportError:
        raise ImportError(f"--backend {backend} needs {needs}") from None


def _numpy_backend():
    import array_api_compat.numpy as xp

    return xp, "cpu"


def _cupy_backend():
    xp, cupy = _modules("cupy", "CuPy: pip install 'eggroll-np[cuda12]' (or [cuda13])", "array_api_compat.cupy", "cupy")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:
        count, reason = 0, f" ({exc})"
    else:
        reason = ""
    if count < 1:
        raise ValueError(f"--backend cupy needs a CUDA device, and CuPy finds none{reason}; use --backend numpy")
    return xp, cupy.cuda.Device()


def _jax_backend():
    xp, jax = _modules("jax", "JAX: pip install 'jax[cpu]' (or a CUDA build)", "jax.numpy", "jax")
    return xp, jax.devices()[0]


def _torch_backend():
    xp, torch = _modules("torch", "PyTorch: pip install torch", "array_api_compat.torch", "torch")
    return xp, torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _array_api_strict_backend():
    (xp,) = _modules("array_api_strict", "array-api-strict: pip install array-api-strict", "array_api_strict")
    return xp, xp.__array_namespace_info__().default_device()


BACKENDS = {
    "numpy": _numpy_backend,
    "cupy": _cupy_backend,
    "jax": _jax_backend,
    "array_api_strict": _array_api_strict_backend,
    "torch": _torch_backend,
}


def backend_namespace(name: str):
    """(xp, device) of a backend named in `BACKENDS`: NumPy on the CPU, CuPy on the current GPU, JAX's
    default device, array-api-strict's default device, PyTorch on its GPU where it has one, else the CPU."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]()
