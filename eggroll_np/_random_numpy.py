"""NumPy fast path of `random`: the same Philox4x32-10 words and the same float conversions, computed in
cache-sized chunks with in-place ufuncs on uint64 words, so no temporaries leave the CPU cache.

Bits are identical to the portable path; normals agree to a few ulp (tests/test_random.py compares them).
"""

from __future__ import annotations

import math

import numpy as np

from ._philox import PHILOX_M0, PHILOX_M1, StreamKey, key_schedule, lanes_per_block

__all__ = ["draw_numpy"]

_CHUNK_BLOCKS = 8192  # 8192 blocks · 10 uint64 buffers = 640 KiB of scratch: stays in L2
_M0 = np.uint64(PHILOX_M0)
_M1 = np.uint64(PHILOX_M1)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)


class _Scratch:
    """Reusable uint64 buffers for one chunk of Philox: words x, next words y, products p."""

    def __init__(self, size: int):
        self.x = [np.empty(size, np.uint64) for _ in range(4)]
        self.y = [np.empty(size, np.uint64) for _ in range(4)]
        self.p = [np.empty(size, np.uint64) for _ in range(2)]


def _philox_chunk(x, y, p, key: tuple[int, int]):
    """Ten Philox rounds in place on four uint64 word buffers holding 32-bit values; returns the output words.

    Round: (x₀, x₁, x₂, x₃) ← (hi(M₁x₂) ⊕ x₁ ⊕ k₀, lo(M₁x₂), hi(M₀x₀) ⊕ x₃ ⊕ k₁, lo(M₀x₀)).
    """
    for k0, k1 in key_schedule(*key):
        np.multiply(x[0], _M0, out=p[0])
        np.multiply(x[2], _M1, out=p[1])
        np.right_shift(p[1], _SHIFT32, out=y[0])
        np.bitwise_xor(y[0], x[1], out=y[0])
        np.bitwise_xor(y[0], np.uint64(k0), out=y[0])
        np.bitwise_and(p[1], _LOW32, out=y[1])
        np.right_shift(p[0], _SHIFT32, out=y[2])
        np.bitwise_xor(y[2], x[3], out=y[2])
        np.bitwise_xor(y[2], np.uint64(k1), out=y[2])
        np.bitwise_and(p[0], _LOW32, out=y[3])
        x, y = y, x
    return x


def _uniform24(word, out):
    """out = top24(w)·2⁻²⁴ + 2⁻²⁵ (float32)."""
    np.right_shift(word, np.uint64(8), out=word)
    np.copyto(out, word, casting="unsafe")
    out *= np.float32(2.0**-24)
    out += np.float32(2.0**-25)


def _uniform53(hi, lo, out):
    """out = top53(hi, lo)·2⁻⁵³ + 2⁻⁵⁴ (float64)."""
    np.right_shift(hi, np.uint64(5), out=hi)
    np.right_shift(lo, np.uint64(6), out=lo)
    np.left_shift(hi, np.uint64(26), out=hi)
    np.bitwise_or(hi, lo, out=hi)
    np.copyto(out, hi, casting="unsafe")
    out *= 2.0**-53
    out += 2.0**-54


def _uniform_lanes(words, dtype):
    """Contiguous per-lane uniforms: four float32 lanes, or two float64 lanes."""
    if dtype == np.float32:
        lanes = np.empty((4, words[0].shape[0]), np.float32)
        for lane in range(4):
            _uniform24(words[lane], lanes[lane])
    else:
        lanes = np.empty((2, words[0].shape[0]), np.float64)
        _uniform53(words[0], words[1], lanes[0])
        _uniform53(words[2], words[3], lanes[1])
    return lanes


def _fill_uniform(words, out):
    out[...] = _uniform_lanes(words, out.dtype).T


def _fill_normal(words, out):
    """Box–Muller on consecutive lane pairs: z = √(−2 ln u₁)·(cos 2πu₂, sin 2πu₂)."""
    u = _uniform_lanes(words, out.dtype)
    for first in range(0, out.shape[1], 2):
        radius, angle = u[first], u[first + 1]
        np.log(radius, out=radius)
        radius *= -2.0
        np.sqrt(radius, out=radius)
        angle *= 2.0 * math.pi
        cos, sin = np.cos(angle), np.sin(angle)
        np.multiply(cos, radius, out=out[:, first])
        np.multiply(sin, radius, out=out[:, first + 1])


def _fill_rademacher(words, out):
    """±1 from each word's top bit."""
    for lane in range(4):
        np.right_shift(words[lane], np.uint64(31), out=words[lane])
        np.copyto(out[:, lane], words[lane], casting="unsafe")
    out *= -2.0
    out += 1.0


_FILL = {"uniform": _fill_uniform, "normal": _fill_normal, "rademacher": _fill_rademacher}


def _counter_chunks(directions: range, n_blocks: int):
    """Yield (rows, block words, direction words) covering the (D, n_blocks) grid in chunks of whole rows
    (short rows) or of one row's slice (long rows), so no integer division is needed."""
    d0 = directions.start
    if n_blocks <= _CHUNK_BLOCKS:
        rows_per_chunk = _CHUNK_BLOCKS // n_blocks
        blocks = np.tile(np.arange(n_blocks, dtype=np.uint64), rows_per_chunk)
        for row in range(0, len(directions), rows_per_chunk):
            rows = range(row, min(row + rows_per_chunk, len(directions)))
            size = len(rows) * n_blocks
            yield (
                slice(rows.start * n_blocks, rows.stop * n_blocks),
                blocks[:size],
                np.repeat(np.arange(d0 + rows.start, d0 + rows.stop, dtype=np.uint64), n_blocks),
            )
        return
    for row in range(len(directions)):
        for b0 in range(0, n_blocks, _CHUNK_BLOCKS):
            b1 = min(n_blocks, b0 + _CHUNK_BLOCKS)
            yield (
                slice(row * n_blocks + b0, row * n_blocks + b1),
                np.arange(b0, b1, dtype=np.uint64),
                np.uint64(d0 + row),
            )


def draw_numpy(kind: str, stream: StreamKey, directions: range, n: int, *, dtype, dev) -> np.ndarray:
    """(D, n) draws of `kind` ('uniform', 'normal', 'rademacher'), L elements per Philox block: the rows
    of blocks 0..⌈n / L⌉ − 1, in chunks. `dev` is the CPU, NumPy's only device."""
    lanes = lanes_per_block(kind, dtype)
    n_blocks = -(-n // lanes)
    if len(directions) * n_blocks == 0:
        return np.empty((len(directions), n), dtype=dtype)
    out = np.empty((len(directions) * n_blocks, lanes), dtype=dtype)
    scratch = _Scratch(min(_CHUNK_BLOCKS, out.shape[0]))
    fill = _FILL[kind]
    for rows, block, direction in _counter_chunks(directions, n_blocks):
        size = rows.stop - rows.start
        x = [buf[:size] for buf in scratch.x]
        x[0][...] = block
        x[1][...] = direction
        x[2][...] = stream.stream_id
        x[3][...] = stream.epoch
        words = _philox_chunk(x, [buf[:size] for buf in scratch.y], [buf[:size] for buf in scratch.p], stream.key)
        fill(words, out[rows])
    flat = np.reshape(out, (len(directions), n_blocks * lanes))
    return flat if n_blocks * lanes == n else np.ascontiguousarray(flat[:, :n])
