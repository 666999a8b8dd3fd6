"""Counter-based random numbers, bit-identical on every backend: Philox4x32-10 in array-API integer
operations (the generator and its formulas: `eggroll_np._philox`, whose public names this module re-exports).

    stream = derive_key(seed, epoch, stream_id("layer.0.weight"))       # one leaf in one noise epoch
    z = normal(xp, stream, range(k0, k1), n, dtype=xp.float32, dev=dev)  # (k1 − k0, n): directions k0..k1−1

Row d of a draw is direction directions[d], and element e of a row depends only on (stream, direction, e),
so one direction, or a prefix of one, can be rebuilt alone anywhere from a few integers.

- uniform: (0, 1], float32 top24(w)·2⁻²⁴ + 2⁻²⁵, float64 top53(w₀, w₁)·2⁻⁵³ + 2⁻⁵⁴ (never 0).
- normal: Box–Muller, z = √(−2 ln u₁)·(cos 2πu₂, sin 2πu₂); equal across backends to a few ulp.
- rademacher: ±1 from the top bit of a word.

`draw` checks its arguments once, then takes the namespace's fast path (NumPy: chunked in-place ufuncs,
`_random_numpy`; CuPy: one fused CUDA kernel, `_random_cupy`; JAX: two compiled kernels, `_random_jax`), or
the portable array-API path on any other namespace; all give the same bits. A draw with n = 0 or an empty
range of directions is an empty (D, n) array.
"""

from __future__ import annotations

import importlib

from . import _philox
from ._array_api import is_cupy_namespace, is_jax_namespace, is_numpy_namespace
from ._checks import choice, integer
from ._philox import (
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_W0,
    PHILOX_W1,
    StreamKey,
    derive_key,
    philox4x32_10,
    philox4x32_10_int,
    stream_id,
)

__all__ = [
    "PHILOX_M0",
    "PHILOX_M1",
    "PHILOX_W0",
    "PHILOX_W1",
    "StreamKey",
    "derive_key",
    "draw",
    "draw_portable",
    "normal",
    "philox4x32_10",
    "philox4x32_10_int",
    "rademacher",
    "random_bits",
    "stream_arrays",
    "stream_id",
    "uniform",
]

# Namespace predicate → (module, function) of its fast path; each takes (kind, stream, directions, n, *,
# dtype, dev) with checked arguments and is imported on first use (a NumPy run never loads CuPy's kernels).
_FAST_PATHS = (
    (is_numpy_namespace, "._random_numpy", "draw_numpy"),
    (is_cupy_namespace, "._random_cupy", "draw_cupy"),
    (is_jax_namespace, "._random_jax", "draw_jax"),
)


def _check_directions(directions) -> None:
    expected = "a range with step 1 inside [0, 2**32)"
    if not isinstance(directions, range):
        raise TypeError(f"directions={directions!r} must be {expected}, not a {type(directions).__name__}")
    if directions.step != 1 or not 0 <= directions.start < 2**32 or directions.stop > 2**32:
        raise ValueError(f"directions={directions!r} must be {expected}")


def _check_draw(xp, kind, directions, n, dtype) -> int:
    """The checks of every draw (kind, directions, dtype, n); returns n as an int."""
    choice("kind", kind, _philox.KINDS)
    _check_directions(directions)
    if dtype not in (xp.float32, xp.float64):
        raise TypeError(f"dtype={dtype!r} must be float32 or float64 of {xp.__name__}")
    return integer("n", n, minimum=0)


def draw(xp, kind: str, stream: StreamKey, directions: range, n: int, *, dtype, dev):
    """(D, n) draws of `kind` ('uniform', 'normal' or 'rademacher') of `dtype` (float32 or float64) on `dev`:
    row d is direction directions[d] of the stream, element e comes from block e // L, lane e % L.

    TypeError: `directions` is not a range, `dtype` not float32 or float64, `kind` or `n` of a wrong type.
    ValueError: an unknown `kind`, `directions` with a step other than 1 or outside [0, 2³²), `n` < 0.
    """
    n = _check_draw(xp, kind, directions, n, dtype)
    for is_backend, module, name in _FAST_PATHS:
        if is_backend(xp):
            fast_path = getattr(importlib.import_module(module, __package__), name)
            return fast_path(kind, stream, directions, n, dtype=dtype, dev=dev)
    return _philox.draw_portable(xp, kind, stream, directions, n, dtype=dtype, dev=dev)


def draw_portable(xp, kind: str, stream: StreamKey, directions: range, n: int, *, dtype, dev, wide=None):
    """`draw` in array-API operations only, on any namespace, with the same checks; `wide` as in
    `philox4x32_10`."""
    n = _check_draw(xp, kind, directions, n, dtype)
    return _philox.draw_portable(xp, kind, stream, directions, n, dtype=dtype, dev=dev, wide=wide)


def random_bits(xp, stream: StreamKey, directions: range, n_blocks: int, dev, *, wide: bool | None = None):
    """The four Philox output words of counters (block b, direction d, stream id, epoch) for b < n_blocks and
    d in `directions`, each a word array (`_philox.word_dtype`: uint32, int64 on PyTorch) of shape (D, n_blocks)."""
    _check_directions(directions)
    n_blocks = integer("n_blocks", n_blocks, minimum=0)
    return _philox.random_bits(xp, stream, directions, n_blocks, dev, wide=wide)


def stream_arrays(xp, stream: StreamKey, directions: range, dev):
    """A draw's integer inputs as word arrays (`_philox.word_dtype`): round keys (10, 2), constant counter
    words (2,) and the first direction (1,), so that the rest of a draw is a pure array function (traceable
    by a JIT)."""
    _check_directions(directions)
    return _philox.stream_arrays(xp, stream, directions, dev)


def uniform(xp, stream: StreamKey, directions: range, n: int, *, dtype, dev):
    """(D, n) uniforms in (0, 1]: float32 top24(w)·2⁻²⁴ + 2⁻²⁵, float64 top53(w₀, w₁)·2⁻⁵³ + 2⁻⁵⁴ (never 0;
    the ½-ulp offset rounds to exactly 1 at the very top)."""
    return draw(xp, "uniform", stream, directions, n, dtype=dtype, dev=dev)


def normal(xp, stream: StreamKey, directions: range, n: int, *, dtype, dev):
    """(D, n) standard normals by Box–Muller: z = √(−2 ln u₁)·(cos 2πu₂, sin 2πu₂)."""
    return draw(xp, "normal", stream, directions, n, dtype=dtype, dev=dev)


def rademacher(xp, stream: StreamKey, directions: range, n: int, *, dtype, dev):
    """(D, n) Rademacher signs ±1 from the top bit of each word."""
    return draw(xp, "rademacher", stream, directions, n, dtype=dtype, dev=dev)
