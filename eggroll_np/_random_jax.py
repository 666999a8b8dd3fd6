"""JAX fast path of `random`: the portable draw compiled by `jax.jit`, with the key, stream words and first
direction as traced inputs, so a new generation or leaf reuses the compiled kernels. Same operations as
the portable path, so the same bits.

Two kernels, the Philox words and their conversion; traced, the rounds run as a loop
(`_philox._philox_rounds`), so XLA computes each word once.
"""

from __future__ import annotations

from functools import lru_cache

from ._array_api import dtype_name, has_dtype
from ._philox import StreamKey, elements, lanes_per_block, philox_words, stream_arrays

__all__ = ["draw_jax"]


@lru_cache(maxsize=256)
def _compiled_bits(n_directions: int, n_blocks: int, wide: bool):
    import jax
    import jax.numpy as jnp

    return jax.jit(
        lambda round_keys, constants, start: philox_words(
            jnp, round_keys, constants, start, n_directions, n_blocks, None, wide
        )
    )


@lru_cache(maxsize=256)
def _compiled_lanes(kind: str, n: int, dtype: str):
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda words: elements(jnp, kind, words, n, getattr(jnp, dtype)))


def draw_jax(kind: str, stream: StreamKey, directions: range, n: int, *, dtype, dev):
    """(D, n) draws of `kind` on JAX from blocks 0..⌈n / L⌉ − 1, through the compiled kernels for this shape."""
    import jax.numpy as jnp

    arrays = stream_arrays(jnp, stream, directions, dev)
    n_blocks = -(-n // lanes_per_block(kind, dtype))
    words = _compiled_bits(len(directions), n_blocks, has_dtype(jnp, "uint64", dev))(*arrays)
    return _compiled_lanes(kind, n, dtype_name(dtype))(words)
