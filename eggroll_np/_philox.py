"""The portable generator: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011) written in array-API integer operations, so the bits are identical on every backend.

A draw is a pure function of a key and a counter. The package uses

    key     = derive_key(seed, epoch, stream_id)                 (64 bits, from (seed, noise epoch, leaf id))
    counter = (block, direction, stream_id, epoch mod 2³²)       (four 32-bit words)

so any direction of any leaf in any noise epoch can be rebuilt alone, anywhere, from a few integers. The
stream id and epoch also sit in the counter, so two streams stay distinct even if their derived keys collide.

Element e of a direction's stream comes from block e // L, lane e % L, with L elements per 128-bit block:
L = 4 for float32 uniforms and normals and for Rademacher signs, L = 2 for float64.

- uniform, float32: u = top24(w)·2⁻²⁴ + 2⁻²⁵; float64: u = top53(w₀, w₁)·2⁻⁵³ + 2⁻⁵⁴. Never 0 (the top
  value rounds to 1, harmless for Box–Muller: u₁ = 1 gives z = 0).
- normal: Box–Muller, z = √(−2 ln u₁)·(cos 2πu₂, sin 2πu₂). Equal across backends to a few ulp.
- rademacher: ±1 from the top bit of a word.

Wrapping uint32 arithmetic is never needed: the Philox key schedule is computed on Python integers, and the
32×32→64-bit products use uint64 where the backend has it or an exact 16-bit split where it does not
(JAX without x64, array-api-strict's `no_x64` device). Both paths are tested to give identical bits. A word
is a uint32, or on PyTorch (whose uint32 has no +, >> or <<) an int64 holding the same value in [0, 2³²):
`word_dtype`; the split then masks its one shift that could carry past bit 31.

This module trusts its arguments: `eggroll_np.random` checks them before calling it, and the backend fast
paths (`_random_numpy`, `_random_cupy`, `_random_jax`) build on it. It imports nothing from either.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

from ._array_api import array_namespace, dtype_name, fori_loop, has_dtype, is_torch_namespace, is_traced

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
_ROUNDS = 10
_MASK32 = 0xFFFFFFFF
_KEY_DOMAIN = 0x6567676B  # "eggk": separates key derivation from noise draws


def key_schedule(k0: int, k1: int) -> list[tuple[int, int]]:
    """Philox key schedule: round j uses (k₀ + j·W₀, k₁ + j·W₁) mod 2³²."""
    return [((k0 + j * PHILOX_W0) & _MASK32, (k1 + j * PHILOX_W1) & _MASK32) for j in range(_ROUNDS)]


def philox4x32_10_int(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Philox4x32-10 on Python integers (host side: key derivation and reference)."""
    x0, x1, x2, x3 = counter
    for k0, k1 in key_schedule(*key):
        p0 = PHILOX_M0 * x0
        p1 = PHILOX_M1 * x2
        x0, x1, x2, x3 = (p1 >> 32) ^ x1 ^ k0, p1 & _MASK32, (p0 >> 32) ^ x3 ^ k1, p0 & _MASK32
    return x0, x1, x2, x3


def word_dtype(xp):
    """The dtype of a 32-bit word: uint32, or int64 on PyTorch (values in [0, 2³²) either way)."""
    return xp.int64 if is_torch_namespace(xp) else xp.uint32


def _mulhilo_wide(xp, x, multiplier: int, dev):
    """(hi, lo) words of the 64-bit product x·M, through uint64."""
    p = xp.astype(x, xp.uint64) * xp.asarray([multiplier], dtype=xp.uint64, device=dev)
    hi = xp.astype(p >> 32, xp.uint32)
    lo = xp.astype(p & xp.asarray([_MASK32], dtype=xp.uint64, device=dev), xp.uint32)
    return hi, lo


def _mulhilo_split(xp, x, multiplier: int, dev):
    """(hi, lo) words of the 64-bit product x·M from exact 16×16-bit partial products (no 64-bit types).

    With x = xₕ·2¹⁶ + xₗ and M = Mₕ·2¹⁶ + Mₗ: mid = (xₗMₗ >> 16) + low16(xₗMₕ) + low16(xₕMₗ) < 3·2¹⁶,
    hi = xₕMₕ + (xₗMₕ >> 16) + (xₕMₗ >> 16) + (mid >> 16), lo = (mid << 16) | low16(xₗMₗ).
    """
    m_hi = xp.asarray([multiplier >> 16], dtype=x.dtype, device=dev)
    m_lo = xp.asarray([multiplier & 0xFFFF], dtype=x.dtype, device=dev)
    x_hi = x >> 16
    x_lo = x & 0xFFFF
    ll = x_lo * m_lo
    lh = x_lo * m_hi
    hl = x_hi * m_lo
    mid = (ll >> 16) + (lh & 0xFFFF) + (hl & 0xFFFF)
    hi = x_hi * m_hi + (lh >> 16) + (hl >> 16) + (mid >> 16)
    lo = (mid << 16) | (ll & 0xFFFF)
    return hi, lo if x.dtype == xp.uint32 else lo & _MASK32


def _philox_rounds(xp, counter, round_keys, dev, wide: bool):
    """Ten Philox rounds on word arrays (at least 1-D); round_keys is a (10, 2) word array.

    Traced by JAX, the rounds run as a loop of two rounds a step (`_array_api.fori_loop`), whose carry XLA
    must store: fully unrolled, XLA fuses the chain of rounds into each consumer and recomputes it per use,
    exponentially in the rounds (one draw of 4096 normals took half a second instead of 0.1 ms), and
    optimization barriers between the rounds did not survive inside lax.scan (a compiled digits generation
    ran 30× slower there). Two rounds a step rather than one: large draws 1.4× faster, fused at most 2 deep."""
    mulhilo = _mulhilo_wide if wide else _mulhilo_split

    def one_round(j, words):
        x0, x1, x2, x3 = words
        hi0, lo0 = mulhilo(xp, x0, PHILOX_M0, dev)
        hi1, lo1 = mulhilo(xp, x2, PHILOX_M1, dev)
        return hi1 ^ x1 ^ round_keys[j, 0:1], lo1, hi0 ^ x3 ^ round_keys[j, 1:2], lo0

    if any(is_traced(x) for x in (*counter, round_keys)):
        return fori_loop(_ROUNDS, one_round, tuple(xp.broadcast_arrays(*counter)), unroll=2)
    words = tuple(counter)
    for j in range(_ROUNDS):
        words = one_round(j, words)
    return words


def _wide(xp, dev, wide: bool | None) -> bool:
    """The uint64 multiply where asked, or by default where the backend has uint64 arithmetic (not PyTorch)."""
    if wide is None:
        return has_dtype(xp, "uint64", dev) and not is_torch_namespace(xp)
    return wide


def philox4x32_10(xp, counter, key: tuple[int, int], dev, *, wide: bool | None = None):
    """Philox4x32-10 on word arrays (`word_dtype`): four counter words (broadcastable arrays) → four words.

    `wide` picks the 32×32→64 multiply: True through uint64, False through the 16-bit split; None chooses
    uint64 when `xp` has it on `dev`.
    """
    round_keys = xp.asarray(key_schedule(*key), dtype=word_dtype(xp), device=dev)
    return _philox_rounds(xp, counter, round_keys, dev, _wide(xp, dev, wide))


class StreamKey(NamedTuple):
    """Everything that names one random stream: the Philox key and the two constant counter words."""

    key: tuple[int, int]
    stream_id: int
    epoch: int


def stream_id(name: str) -> int:
    """Stable 32-bit id of a leaf name (FNV-1a over its UTF-8 bytes): equal in every process and platform."""
    h = 0x811C9DC5
    for byte in name.encode("utf-8"):
        h = ((h ^ byte) * 0x01000193) & _MASK32
    return h


def derive_key(seed: int, epoch: int, stream: int) -> StreamKey:
    """Key for (seed, noise epoch, stream id): Philox4x32-10 of (stream, epoch_lo, epoch_hi, domain) under
    the key (seed_lo, seed_hi), first two words. `seed` and `epoch` are integers in [0, 2⁶⁴); `epoch` may be
    a traced JAX integer (inside jax.jit or lax.scan), and the key is then made of traced words."""
    if is_traced(epoch):
        return _derive_traced_key(seed, epoch, stream)
    epoch = operator.index(epoch)  # a 0-d integer array (a state that came out of jax.jit) as its value
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed={seed} must be an integer in [0, 2**64)")
    if not 0 <= epoch < 2**64:
        raise ValueError(f"noise epoch {epoch} must be an integer in [0, 2**64)")
    words = philox4x32_10_int(
        (stream & _MASK32, epoch & _MASK32, epoch >> 32, _KEY_DOMAIN), (seed & _MASK32, seed >> 32)
    )
    return StreamKey(key=(words[0], words[1]), stream_id=stream & _MASK32, epoch=epoch & _MASK32)


def _derive_traced_key(seed: int, epoch, stream: int) -> StreamKey:
    """`derive_key` with a traced epoch: the same Philox rounds on JAX uint32 words (the same bits)."""
    jnp = array_namespace(epoch)
    epoch = jnp.reshape(epoch, (1,))
    if jnp.iinfo(epoch.dtype).bits > 32:
        low, high = jnp.astype(epoch & _MASK32, jnp.uint32), jnp.astype(epoch >> 32, jnp.uint32)
    else:  # JAX without x64: an int32 epoch, below 2³¹
        low, high = jnp.astype(epoch, jnp.uint32), jnp.zeros((1,), dtype=jnp.uint32)
    word = [jnp.asarray([stream & _MASK32], dtype=jnp.uint32), low]
    counter = (*word, high, jnp.asarray([_KEY_DOMAIN], dtype=jnp.uint32))
    words = philox4x32_10(jnp, counter, (seed & _MASK32, seed >> 32), None, wide=False)
    return StreamKey(key=(words[0], words[1]), stream_id=stream & _MASK32, epoch=word[1])


def _round_keys(xp, key, dev):
    """The (10, 2) round keys of `key_schedule`: from Python integers, or from traced uint32 words, in whose
    arithmetic (JAX's) + and * wrap modulo 2³² as the schedule asks."""
    if isinstance(key[0], int):
        return xp.asarray(key_schedule(*key), dtype=word_dtype(xp), device=dev)
    offsets = xp.asarray([[j * PHILOX_W0 & _MASK32, j * PHILOX_W1 & _MASK32] for j in range(_ROUNDS)], dtype=xp.uint32)
    return xp.stack([key[0], key[1]], axis=-1) + offsets  # (1, 2) + (10, 2), modulo 2³²


def stream_arrays(xp, stream: StreamKey, directions: range, dev):
    """A draw's integer inputs as word arrays: round keys (10, 2), constant counter words (2,) and the
    first direction (1,); with them, `philox_words` is a pure array function."""
    word = word_dtype(xp)
    stream_id = xp.asarray([stream.stream_id], dtype=word, device=dev)
    epoch = xp.asarray([stream.epoch], dtype=word, device=dev) if isinstance(stream.epoch, int) else stream.epoch
    return (
        _round_keys(xp, stream.key, dev),
        xp.concat([stream_id, epoch]),
        xp.asarray([directions.start], dtype=word, device=dev),
    )


def philox_words(xp, round_keys, constants, start, n_directions: int, n_blocks: int, dev, wide: bool):
    """Philox words of counters (block, start + d, stream id, epoch) for d < n_directions, block < n_blocks,
    from the `stream_arrays` (array operations only, so a JIT can trace it)."""
    word = start.dtype
    block = xp.reshape(xp.arange(n_blocks, dtype=word, device=dev), (1, n_blocks))
    direction = xp.reshape(xp.arange(n_directions, dtype=word, device=dev), (n_directions, 1)) + start
    zeros = xp.zeros((n_directions, n_blocks), dtype=word, device=dev)
    counter = (block + zeros, direction + zeros, constants[0:1], constants[1:2])
    return _philox_rounds(xp, counter, round_keys, dev, wide)


def random_bits(xp, stream: StreamKey, directions: range, n_blocks: int, dev, *, wide: bool | None = None):
    """The four Philox output words for blocks 0..n_blocks-1 of each direction, each of shape (D, n_blocks)."""
    arrays = stream_arrays(xp, stream, directions, dev)
    return philox_words(xp, *arrays, len(directions), n_blocks, dev, _wide(xp, dev, wide))


def _uniform_lanes(xp, words, dtype):
    """Uniforms in (0, 1] from the four words: four float32 per block, or two float64 per block."""
    if dtype == xp.float32:
        return [xp.astype(w >> 8, xp.float32) * 2.0**-24 + 2.0**-25 for w in words]
    w0, w1, w2, w3 = words
    return [
        (xp.astype(hi >> 5, xp.float64) * 2.0**26 + xp.astype(lo >> 6, xp.float64)) * 2.0**-53 + 2.0**-54
        for hi, lo in ((w0, w1), (w2, w3))
    ]


def _normal_lanes(xp, words, dtype):
    """Box–Muller on consecutive uniform pairs: z = √(−2 ln u₁)·(cos 2πu₂, sin 2πu₂)."""
    u = _uniform_lanes(xp, words, dtype)
    lanes = []
    for u1, u2 in zip(u[0::2], u[1::2], strict=True):
        radius = xp.sqrt(-2.0 * xp.log(u1))
        angle = (2.0 * math.pi) * u2
        lanes += [radius * xp.cos(angle), radius * xp.sin(angle)]
    return lanes


def _rademacher_lanes(xp, words, dtype):
    """±1 from each word's top bit: +1 where it is 0, −1 where it is 1."""
    return [1.0 - 2.0 * xp.astype(w >> 31, dtype) for w in words]


_LANES = {"uniform": _uniform_lanes, "normal": _normal_lanes, "rademacher": _rademacher_lanes}
KINDS = tuple(_LANES)


def lanes_per_block(kind: str, dtype) -> int:
    """L, the elements of `kind` one 128-bit block gives: 2 for float64 uniforms and normals, else 4."""
    return 2 if kind != "rademacher" and dtype_name(dtype) == "float64" else 4


def elements(xp, kind: str, words, n: int, dtype):
    """(D, n) draws of `kind` from the four (D, n_blocks) words: element e = block e // L, lane e % L."""
    stacked = xp.stack(_LANES[kind](xp, words, dtype), axis=-1)
    d, n_blocks, n_lanes = stacked.shape
    return xp.reshape(stacked, (d, n_blocks * n_lanes))[:, :n]


def draw_portable(xp, kind: str, stream: StreamKey, directions: range, n: int, *, dtype, dev, wide=None):
    """(D, n) draws of `kind` in array-API operations only; row d is direction directions[d] of the stream,
    from blocks 0..⌈n / L⌉ − 1."""
    arrays = stream_arrays(xp, stream, directions, dev)
    n_blocks = -(-n // lanes_per_block(kind, dtype))
    words = philox_words(xp, *arrays, len(directions), n_blocks, dev, _wide(xp, dev, wide))
    return elements(xp, kind, words, n, dtype)
